//! The Kubernetes API server: an axum router generic over resource kinds.
//!
//! Start reading at [`resource::ResourceInfo`] (one registry entry per kind).

pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod resource;
pub mod schema;
