//! Backend-independent pieces of the write and read paths: precondition
//! checks that turn a [`WriteOp`] into an [`Event`], undoing newer events to
//! read at a past revision, and paging a key-ordered list.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{Event, EventKind, KeyValue, ListOptions, ListResult, Revision, StoreError};

/// Checks `expected` against the key's current revision.
pub(crate) fn check_expected(
    key: &str,
    current: &KeyValue,
    expected: Option<Revision>,
) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

/// The event a create/update/delete produces, after checking preconditions.
/// `value = None` means delete; `expected = None` on a put with
/// `create = true` means create-if-absent.
pub(crate) fn plan_write(
    key: &str,
    current: Option<&KeyValue>,
    write: &WriteOp,
    revision: Revision,
) -> Result<Event, StoreError> {
    match (write, current) {
        (WriteOp::Create(_), Some(_)) => Err(StoreError::AlreadyExists {
            key: key.to_owned(),
        }),
        (WriteOp::Create(value), None) => Ok(Event {
            kind: EventKind::Put,
            revision,
            kv: KeyValue {
                key: key.to_owned(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        }),
        (WriteOp::Update(..) | WriteOp::Delete(_), None) => Err(StoreError::NotFound {
            key: key.to_owned(),
        }),
        (WriteOp::Update(value, expected), Some(cur)) => {
            check_expected(key, cur, *expected)?;
            Ok(Event {
                kind: EventKind::Put,
                revision,
                kv: KeyValue {
                    key: key.to_owned(),
                    value: value.clone(),
                    create_revision: cur.create_revision,
                    mod_revision: revision,
                },
                prev: Some(cur.clone()),
            })
        }
        (WriteOp::Delete(expected), Some(cur)) => {
            check_expected(key, cur, *expected)?;
            Ok(Event {
                kind: EventKind::Delete,
                revision,
                kv: KeyValue {
                    mod_revision: revision,
                    ..cur.clone()
                },
                prev: Some(cur.clone()),
            })
        }
    }
}

/// One conditional write, as the backends queue and apply it.
#[derive(Clone, Debug)]
pub(crate) enum WriteOp {
    /// Create if absent.
    Create(Bytes),
    /// Replace, optionally only at this mod revision.
    Update(Bytes, Option<Revision>),
    /// Delete, optionally only at this mod revision.
    Delete(Option<Revision>),
}

/// Undoes `events` (newer than the wanted revision, oldest first) on a map
/// holding the current values of the keys under `prefix`.
pub(crate) fn undo_events<'a>(
    items: &mut BTreeMap<String, KeyValue>,
    prefix: &str,
    events: impl DoubleEndedIterator<Item = &'a Event>,
) {
    for event in events.rev() {
        if !event.kv.key.starts_with(prefix) {
            continue;
        }
        match &event.prev {
            Some(prev) => {
                items.insert(prev.key.clone(), prev.clone());
            }
            None => {
                items.remove(&event.kv.key);
            }
        }
    }
}

/// Applies `start_after` and `limit` to key-ordered items.
pub(crate) fn page(
    items: impl Iterator<Item = KeyValue>,
    opts: &ListOptions,
    revision: Revision,
) -> ListResult {
    let mut items = items.filter(|kv| {
        opts.start_after
            .as_deref()
            .is_none_or(|after| kv.key.as_str() > after)
    });
    let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut more = false;
    for kv in items.by_ref() {
        if out.len() == limit {
            more = true;
            break;
        }
        out.push(kv);
    }
    ListResult {
        items: out,
        revision,
        more,
    }
}
