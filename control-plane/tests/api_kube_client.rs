//! A real Kubernetes client (kube-rs) driving the router in-process, as the
//! controllers will: typed create/get/list/patch/replace/delete, watch,
//! server-side apply, scale and error mapping.

mod api_common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

fn client(api: &api_common::TestApi) -> kube::Client {
    kube::Client::new(api.router.clone(), "default")
}

#[tokio::test]
async fn typed_crud_through_kube_client() {
    let api = api_common::start().await;
    let c = client(&api);
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let p: Pod = serde_json::from_value(api_common::pod("web")).expect("pod");
    let created = pods
        .create(&PostParams::default(), &p)
        .await
        .expect("create");
    assert_eq!(
        created
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .as_deref(),
        Some("Always")
    );
    let got = pods.get("web").await.expect("get");
    assert_eq!(got.metadata.uid, created.metadata.uid);
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());

    let patched = pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"env": "prod"}}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        patched
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("env"))
            .map(String::as_str),
        Some("prod")
    );

    let err = pods.get("missing").await.expect_err("404");
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
        }
        other => panic!("unexpected {other}"),
    }
    let dup = pods
        .create(&PostParams::default(), &p)
        .await
        .expect_err("409");
    assert!(
        matches!(dup, kube::Error::Api(ref s) if s.reason == "AlreadyExists"),
        "{dup}"
    );

    let deleted = pods
        .delete("web", &DeleteParams::background())
        .await
        .expect("delete");
    assert!(deleted.left().is_some(), "pods answer with the object");
    assert!(pods.get_opt("web").await.expect("get_opt").is_none());

    let nss: Api<Namespace> = Api::all(c);
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .expect("ns list")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"kube-system".to_string()));
}

#[tokio::test]
async fn raw_watch_and_runtime_watcher() {
    let api = api_common::start().await;
    let c = client(&api);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .expect("watch")
        .boxed();
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "w"}, "data": {"a": "1"}})).expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("in time")
        .expect("event")
        .expect("ok");
    match ev {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("w")),
        other => panic!("expected ADDED, got {other:?}"),
    }

    // kube-runtime's watcher: initial list + watch, as controllers use it.
    let applied = watcher(cms.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let mut applied = applied;
    let first = tokio::time::timeout(Duration::from_secs(5), applied.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("obj");
    assert_eq!(first.metadata.name.as_deref(), Some("w"));
    let cm2: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w2"}})).expect("cm");
    cms.create(&PostParams::default(), &cm2)
        .await
        .expect("create");
    let next = tokio::time::timeout(Duration::from_secs(5), applied.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("obj");
    assert_eq!(next.metadata.name.as_deref(), Some("w2"));
}

#[tokio::test]
async fn server_side_apply_and_scale() {
    let api = api_common::start().await;
    let c = client(&api);
    let deploys: Api<Deployment> = Api::default_namespaced(c);
    let d = api_common::deployment("web", 1);
    let ssa = PatchParams::apply("skiff-test").force();
    let applied = deploys
        .patch("web", &ssa, &Patch::Apply(d.clone()))
        .await
        .expect("apply create");
    assert_eq!(applied.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_eq!(
        applied.spec.as_ref().and_then(|s| s.revision_history_limit),
        Some(10)
    );
    let mut d2 = d;
    d2["spec"]["replicas"] = json!(2);
    let again = deploys
        .patch("web", &ssa, &Patch::Apply(d2))
        .await
        .expect("apply update");
    assert_eq!(again.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(again.metadata.generation, Some(2));
    let scale = deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(5));
    let got = deploys.get_scale("web").await.expect("get scale");
    assert_eq!(
        got.status.map(|s| s.selector),
        Some(Some("app=web".to_string()))
    );
    let mut cur = deploys.get("web").await.expect("get");
    cur.metadata.resource_version = Some("1".into());
    let stale = deploys
        .replace("web", &PostParams::default(), &cur)
        .await
        .expect_err("stale");
    assert!(
        matches!(stale, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{stale}"
    );
}

#[tokio::test]
async fn streaming_list_watcher() {
    let api = api_common::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client(&api));
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "s1"}})).expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let cfg = watcher::Config::default().streaming_lists();
    let mut applied = watcher(cms.clone(), cfg).applied_objects().boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), applied.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("obj");
    assert_eq!(first.metadata.name.as_deref(), Some("s1"));
    let cm2: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "s2"}})).expect("cm");
    cms.create(&PostParams::default(), &cm2)
        .await
        .expect("create");
    let next = tokio::time::timeout(Duration::from_secs(5), applied.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("obj");
    assert_eq!(next.metadata.name.as_deref(), Some("s2"));
}

#[tokio::test]
async fn recorder_events_show_up_as_core_events() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let api = api_common::start().await;
    let c = client(&api);
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let p: Pod = serde_json::from_value(api_common::pod("ev")).expect("pod");
    let p = pods
        .create(&PostParams::default(), &p)
        .await
        .expect("create");
    let recorder = Recorder::new(
        c.clone(),
        Reporter {
            controller: "skiff-test".into(),
            instance: Some("node-1".into()),
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Scheduled".into(),
        note: Some("Successfully assigned default/ev to node-1".into()),
        action: "Binding".into(),
        secondary: None,
    };
    let reference = p.object_ref(&());
    recorder.publish(&ev, &reference).await.expect("publish");
    recorder
        .publish(&ev, &reference)
        .await
        .expect("publish again (series)");
    let core: Api<CoreEvent> = Api::default_namespaced(c);
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let fs =
        format!("involvedObject.name=ev,involvedObject.namespace=default,involvedObject.uid={uid}");
    let list = core
        .list(&ListParams::default().fields(&fs))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(
        e.message.as_deref(),
        Some("Successfully assigned default/ev to node-1")
    );
    assert_eq!(e.reporting_component.as_deref(), Some("skiff-test"));
    assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
}
