//! Watch: a chunked stream of newline-delimited `WatchEvent`s
//! (`ADDED`/`MODIFIED`/`DELETED`/`BOOKMARK`/`ERROR`).
//!
//! `resourceVersion` unset or "0" first sends the current state as ADDED
//! events; `N` streams changes after N; a compacted N yields an ERROR event
//! with a 410 Expired Status. Selectors apply per event: an object that
//! stops matching is sent as DELETED, one that starts matching as ADDED.
//! The producer task ends when the client disconnects, on `timeoutSeconds`,
//! or when the store stream ends, and then frees the store watcher.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::errors::{ApiError, ApiResult};
use super::handlers::{Ctx, objects as handler_objects, output};
use super::kinds::Resource;
use super::negotiate::{self, Output};
use super::ops::{self, ListOpts};
use super::selectors::field::FieldTerm;
use super::selectors::{FieldSelector, Filter};
use super::table::{self, IncludeObject};
use super::{ApiState, objects};
use crate::store::{Event, EventKind, EventStream, Revision, StoreError};

/// What a watch event carries and how it is rendered.
struct Renderer {
    res: std::sync::Arc<Resource>,
    out: Output,
    include: IncludeObject,
}

impl Renderer {
    fn line(&self, ty: &str, obj: &Value) -> Bytes {
        let converted = match ty {
            "BOOKMARK" | "ERROR" => None,
            _ => table::convert_one(&self.res, self.out, self.include, obj),
        };
        event_line(ty, converted.as_ref().unwrap_or(obj))
    }

    fn bookmark(&self, rev: Revision, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.res.info.kind, "apiVersion": self.res.info.api_version(), "metadata": meta});
        self.line("BOOKMARK", &obj)
    }
}

/// One newline-terminated watch event, `{"type":...,"object":...}`,
/// serialized straight from `object` (no copy of it).
fn event_line(ty: &str, object: &Value) -> Bytes {
    #[derive(serde::Serialize)]
    struct WatchEvent<'a> {
        #[serde(rename = "type")]
        ty: &'a str,
        object: &'a Value,
    }
    let mut line = serde_json::to_vec(&WatchEvent { ty, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// The error event for a failed watch.
fn error_line(err: &ApiError) -> Bytes {
    event_line("ERROR", &err.status_body())
}

/// Classifies a store event against the filter (Kubernetes' watch filtering).
pub fn classify(
    res: &Resource,
    filter: &Filter,
    ev: &Event,
) -> ApiResult<Option<(&'static str, Value)>> {
    let obj = objects::decode(res, &ev.kv)?;
    let new_match = filter.matches(res, &obj);
    Ok(match ev.kind {
        EventKind::Delete => new_match.then_some(("DELETED", obj)),
        EventKind::Put => {
            let old_match = match &ev.prev {
                // Without selectors the old object matched too: no decode.
                Some(_) if filter.is_empty() => true,
                Some(p) => filter.matches(res, &objects::decode(res, p)?),
                None => false,
            };
            put_event_type(ev.prev.is_some() && old_match, new_match).map(|ty| (ty, obj))
        }
    })
}

/// The watch event a put is to a filtered watcher: whether the old and the
/// new object pass the filter.
fn put_event_type(old_match: bool, new_match: bool) -> Option<&'static str> {
    match (old_match, new_match) {
        (true, true) => Some("MODIFIED"),
        (false, true) => Some("ADDED"),
        (true, false) => Some("DELETED"),
        (false, false) => None,
    }
}

/// Serves a watch request.
pub async fn serve(ctx: &Ctx) -> ApiResult<Response> {
    let out = match output(ctx)? {
        Output::Yaml => Output::Json,
        o => o,
    };
    let mut filter = handler_objects::filter(ctx)?;
    if let Some(name) = ctx.path.name.clone() {
        let mut fields = filter.fields.terms.clone();
        fields.push(FieldTerm {
            field: "metadata.name".into(),
            value: name,
            negated: false,
        });
        filter.fields = FieldSelector { terms: fields };
    }
    let include = IncludeObject::parse(ctx.query.get("includeObject"))?;
    let rv = ctx.query.resource_version()?;
    let bookmarks = ctx.query.bool("allowWatchBookmarks")?;
    let send_initial = match ctx.query.get("sendInitialEvents") {
        None => None,
        Some(_) => Some(ctx.query.bool("sendInitialEvents")?),
    };
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        _ => ctx.state.config().default_watch_timeout,
    };
    let state = ctx.state.clone();
    let res = ctx.res.clone();
    let prefix = objects::key(&res, ctx.ns(), None);
    let initial_events = send_initial.unwrap_or(matches!(rv, None | Some(0)));
    let (initial, after) = if initial_events {
        let l = ops::list(
            &state,
            &res,
            ctx.ns(),
            &ListOpts {
                filter: filter.clone(),
                ..Default::default()
            },
        )
        .await?;
        (l.items, l.revision)
    } else {
        if let Some(n) = rv.filter(|n| *n > state.store().current_revision()) {
            ops::read::wait_for_revision(&state, n).await?;
        }
        let after = rv.unwrap_or(0);
        let after = if after == 0 {
            state.store().current_revision()
        } else {
            after
        };
        (Vec::new(), after)
    };
    let renderer = Renderer {
        res: res.clone(),
        out,
        include,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    match state.store().watch(&prefix, after).await {
        Ok(stream) => {
            let guard = state
                .metrics()
                .watch_started(&res.info.group, &res.info.plural);
            let job = WatchJob {
                state: state.clone(),
                renderer,
                filter,
                initial,
                after,
                stream,
                tx,
                timeout,
                bookmarks,
                initial_end_bookmark: send_initial == Some(true) && bookmarks,
            };
            tokio::spawn(async move {
                job.run().await;
                drop(guard);
            });
        }
        Err(e @ (StoreError::Expired { .. } | StoreError::FutureRevision { .. })) => {
            let err = ApiError::from(e);
            let _ = tx.try_send(error_line(&err));
        }
        Err(e) => return Err(e.into()),
    }
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<Bytes, Infallible>));
    let mut resp = (StatusCode::OK, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&negotiate::content_type(out)) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

struct WatchJob {
    state: ApiState,
    renderer: Renderer,
    filter: Filter,
    initial: Vec<Value>,
    after: Revision,
    stream: EventStream,
    tx: mpsc::Sender<Bytes>,
    timeout: Duration,
    bookmarks: bool,
    initial_end_bookmark: bool,
}

impl WatchJob {
    /// The event for a watch without selectors in plain JSON, spliced from
    /// the stored bytes (no decode and re-encode of the object).
    fn spliced_line(&self, ev: &Event) -> Option<Bytes> {
        if !self.filter.is_empty() || self.renderer.out != Output::Json {
            return None;
        }
        // Without selectors every object matches.
        let ty = match ev.kind {
            EventKind::Delete => "DELETED",
            EventKind::Put => put_event_type(ev.prev.is_some(), true)?,
        };
        let object = objects::stored_json(&self.renderer.res, &ev.kv.value, ev.kv.mod_revision)?;
        let mut line = Vec::with_capacity(object.len() + 32);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(ty.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(&object);
        line.extend_from_slice(b"}\n");
        Some(Bytes::from(line))
    }

    async fn run(mut self) {
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        for obj in std::mem::take(&mut self.initial) {
            if self
                .tx
                .send(self.renderer.line("ADDED", &obj))
                .await
                .is_err()
            {
                return;
            }
        }
        let mut last = self.after;
        if self.initial_end_bookmark
            && self
                .tx
                .send(self.renderer.bookmark(last, true))
                .await
                .is_err()
        {
            return;
        }
        let period = self.state.config().bookmark_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = &mut deadline => return,
                _ = ticker.tick(), if self.bookmarks => {
                    if self.tx.send(self.renderer.bookmark(last, false)).await.is_err() {
                        return;
                    }
                }
                ev = self.stream.next() => match ev {
                    None => return,
                    Some(Err(e)) => {
                        let _ = self.tx.send(error_line(&ApiError::from(e))).await;
                        return;
                    }
                    Some(Ok(ev)) => {
                        last = ev.revision;
                        if let Some(line) = self.spliced_line(&ev) {
                            if self.tx.send(line).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        match classify(&self.renderer.res, &self.filter, &ev) {
                            Ok(Some((ty, obj))) => {
                                if self.tx.send(self.renderer.line(ty, &obj)).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                let _ = self.tx.send(error_line(&e)).await;
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::builtin_resources;
    use crate::apiserver::selectors::LabelSelector;
    use crate::store::KeyValue;

    fn kv(labels: Value, rev: i64) -> KeyValue {
        let v = json!({"metadata": {"name": "p", "labels": labels}});
        KeyValue {
            key: "/registry/core/pods/d/p".into(),
            value: Bytes::from(v.to_string()),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    fn ev(kind: EventKind, prev: Option<Value>, new: Value) -> Event {
        Event {
            kind,
            revision: 5,
            kv: kv(new, 5),
            prev: prev.map(|p| kv(p, 4)),
        }
    }

    #[test]
    fn selector_transitions() {
        let pods = builtin_resources()
            .into_iter()
            .find(|r| r.info.plural == "pods")
            .expect("pods");
        let f = Filter {
            labels: LabelSelector::parse("app=web").expect("sel"),
            ..Default::default()
        };
        let ty = |e: Event| classify(&pods, &f, &e).expect("classify").map(|(t, _)| t);
        assert_eq!(
            ty(ev(EventKind::Put, None, json!({"app": "web"}))),
            Some("ADDED")
        );
        assert_eq!(
            ty(ev(
                EventKind::Put,
                Some(json!({"app": "web"})),
                json!({"app": "web", "x": "1"})
            )),
            Some("MODIFIED")
        );
        assert_eq!(
            ty(ev(
                EventKind::Put,
                Some(json!({"app": "web"})),
                json!({"app": "db"})
            )),
            Some("DELETED")
        );
        assert_eq!(
            ty(ev(
                EventKind::Put,
                Some(json!({"app": "db"})),
                json!({"app": "web"})
            )),
            Some("ADDED")
        );
        assert_eq!(
            ty(ev(
                EventKind::Put,
                Some(json!({"app": "db"})),
                json!({"app": "db2"})
            )),
            None
        );
        assert_eq!(
            ty(ev(EventKind::Delete, None, json!({"app": "web"}))),
            Some("DELETED")
        );
        assert_eq!(ty(ev(EventKind::Delete, None, json!({"app": "db"}))), None);
        let (_, obj) = classify(&pods, &f, &ev(EventKind::Put, None, json!({"app": "web"})))
            .expect("c")
            .expect("some");
        assert_eq!(obj["metadata"]["resourceVersion"], "5");
    }
}
