//! Field sets (in progress).
