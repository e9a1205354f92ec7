//! SCRATCH STUB of the api-wire interface (replaced when `api-wire` is merged).
#![allow(missing_docs, clippy::all)]
#[derive(Debug, thiserror::Error)]
#[error("protobuf decoding is not implemented yet")]
pub struct ProtobufError;
pub fn decode(_body: &[u8]) -> Result<serde_json::Value, ProtobufError> { Err(ProtobufError) }
