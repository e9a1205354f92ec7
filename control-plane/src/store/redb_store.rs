//! The durable redb backend (in progress).
