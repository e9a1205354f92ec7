//! Byte layouts of the redb tables.
//!
//! * `kv` (key → record): `create_rev: i64 LE | mod_rev: i64 LE | value`.
//! * `log` (revision → event): `kind: u8 | key_len: u32 LE | key |` then for a
//!   put `create_rev | value_len: u32 LE | value | prev?`, for a delete just
//!   `prev` (the deleted value is the previous one); `prev?` is `0u8` or
//!   `1u8 | create_rev | mod_rev | value_len | value`.
//!
//! Decoding checks every length, so a damaged record is reported as
//! [`CodecError`] rather than read out of bounds.

use bytes::Bytes;

use super::{Event, EventKind, KeyValue, Revision, StoreError};

/// A stored record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The record ended before a field it announces.
    #[error("truncated {what} record")]
    Truncated {
        /// Which record kind.
        what: &'static str,
    },
    /// An unknown event kind byte.
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    /// A key that is not UTF-8.
    #[error("stored key is not UTF-8")]
    BadKey(#[source] std::str::Utf8Error),
    /// A delete event without the deleted value.
    #[error("delete event at revision {0} has no previous value")]
    DeleteWithoutPrev(Revision),
}

impl From<CodecError> for StoreError {
    fn from(err: CodecError) -> Self {
        StoreError::backend("corrupt store record", err)
    }
}

const PUT: u8 = 1;
const DELETE: u8 = 2;

/// Encodes a current-state record.
pub(crate) fn encode_record(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

/// Decodes a current-state record stored under `key`.
pub(crate) fn decode_record(key: &str, bytes: &[u8]) -> Result<KeyValue, CodecError> {
    let mut r = Reader::new(bytes, "kv");
    let create_revision = r.i64()?;
    let mod_revision = r.i64()?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(r.rest()),
        create_revision,
        mod_revision,
    })
}

/// Encodes a log entry.
pub(crate) fn encode_event(event: &Event) -> Vec<u8> {
    let kv = &event.kv;
    let prev_len = event.prev.as_ref().map_or(0, |p| p.value.len() + 20);
    let mut out = Vec::with_capacity(32 + kv.key.len() + kv.value.len() + prev_len);
    out.push(match event.kind {
        EventKind::Put => PUT,
        EventKind::Delete => DELETE,
    });
    put_bytes(&mut out, kv.key.as_bytes());
    if event.kind == EventKind::Put {
        out.extend_from_slice(&kv.create_revision.to_le_bytes());
        put_bytes(&mut out, &kv.value);
    }
    match &event.prev {
        None => out.push(0),
        Some(prev) => {
            out.push(1);
            out.extend_from_slice(&prev.create_revision.to_le_bytes());
            out.extend_from_slice(&prev.mod_revision.to_le_bytes());
            put_bytes(&mut out, &prev.value);
        }
    }
    out
}

/// Decodes the log entry of `revision`.
pub(crate) fn decode_event(revision: Revision, bytes: &[u8]) -> Result<Event, CodecError> {
    let mut r = Reader::new(bytes, "log");
    let kind = match r.u8()? {
        PUT => EventKind::Put,
        DELETE => EventKind::Delete,
        other => return Err(CodecError::UnknownKind(other)),
    };
    let key = std::str::from_utf8(r.bytes()?)
        .map_err(CodecError::BadKey)?
        .to_owned();
    let put = if kind == EventKind::Put {
        let create_revision = r.i64()?;
        Some(KeyValue {
            key: key.clone(),
            value: Bytes::copy_from_slice(r.bytes()?),
            create_revision,
            mod_revision: revision,
        })
    } else {
        None
    };
    let prev = match r.u8()? {
        0 => None,
        _ => {
            let create_revision = r.i64()?;
            let mod_revision = r.i64()?;
            Some(KeyValue {
                key: key.clone(),
                value: Bytes::copy_from_slice(r.bytes()?),
                create_revision,
                mod_revision,
            })
        }
    };
    let kv = match (put, &prev) {
        (Some(kv), _) => kv,
        (None, Some(prev)) => KeyValue {
            mod_revision: revision,
            ..prev.clone()
        },
        (None, None) => return Err(CodecError::DeleteWithoutPrev(revision)),
    };
    Ok(Event {
        kind,
        revision,
        kv,
        prev,
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are far below 4 GiB (the API server caps requests).
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A bounds-checked cursor over a record.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated { what: self.what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        let len = u32::from_le_bytes(b) as usize;
        self.take(len)
    }

    fn rest(self) -> &'a [u8] {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, c: Revision, m: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from(value.to_owned()),
            create_revision: c,
            mod_revision: m,
        }
    }

    #[test]
    fn records_round_trip() {
        let rec = kv("/a", "hello", 3, 7);
        assert_eq!(decode_record("/a", &encode_record(&rec)).ok(), Some(rec));
        assert!(matches!(
            decode_record("/a", b"short"),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn events_round_trip() {
        let events = [
            Event {
                kind: EventKind::Put,
                revision: 5,
                kv: kv("/k", "new", 5, 5),
                prev: None,
            },
            Event {
                kind: EventKind::Put,
                revision: 9,
                kv: kv("/k", "newer", 5, 9),
                prev: Some(kv("/k", "new", 5, 5)),
            },
            Event {
                kind: EventKind::Delete,
                revision: 12,
                kv: kv("/k", "newer", 5, 12),
                prev: Some(kv("/k", "newer", 5, 9)),
            },
        ];
        for event in events {
            let bytes = encode_event(&event);
            assert_eq!(
                decode_event(event.revision, &bytes).ok(),
                Some(event.clone())
            );
            for cut in 0..bytes.len() {
                assert!(
                    decode_event(event.revision, &bytes[..cut]).is_err(),
                    "cut at {cut}"
                );
            }
        }
        assert!(matches!(
            decode_event(1, &[9]),
            Err(CodecError::UnknownKind(9))
        ));
    }
}
