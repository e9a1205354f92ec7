//! Static pods: Pod manifests in a directory (`--pod-manifest-path`), rescanned periodically,
//! each reflected as a *mirror pod* in the API (annotation `kubernetes.io/config.mirror`),
//! named `<name>-<node>` and bound to this node, as kubeadm's control plane pods are.
//!
//! Skiff runs a static pod through its mirror: the mirror pod flows through the normal pod
//! watch to a worker. A changed manifest replaces the mirror; a deleted manifest deletes it;
//! a mirror deleted by a user comes back as soon as it is gone (a watch on this node's pods
//! triggers a scan), or at the next scan at the latest. [`desired_mirrors`] is the pure
//! part (manifests → mirror pods).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;

/// Annotation naming the manifest hash on a mirror pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Annotation with the config hash.
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
/// Annotation with the source (`file`).
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";

/// How often to look for this node's Node object before it is registered.
const NODE_POLL: Duration = Duration::from_millis(500);

fn hash(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    format!("{h:016x}")
}

/// Parse manifests (`name → contents`) into the mirror pods this node should have, keyed by
/// `namespace/name`. Invalid manifests are skipped with their error.
pub fn desired_mirrors(
    manifests: &BTreeMap<String, Vec<u8>>,
    node_name: &str,
    node_uid: Option<&str>,
) -> (BTreeMap<String, Pod>, Vec<String>) {
    let mut pods = BTreeMap::new();
    let mut errors = Vec::new();
    for (file, bytes) in manifests {
        let mut pod: Pod = match serde_yaml::from_slice(bytes) {
            Ok(pod) => pod,
            Err(e) => {
                errors.push(format!("{file}: {e}"));
                continue;
            }
        };
        let Some(base) = pod.metadata.name.clone().filter(|n| !n.is_empty()) else {
            errors.push(format!("{file}: pod has no name"));
            continue;
        };
        let h = hash(bytes);
        let name = format!("{base}-{node_name}");
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        pod.metadata.name = Some(name.clone());
        pod.metadata.namespace = Some(namespace.clone());
        pod.metadata.resource_version = None;
        pod.metadata.uid = None;
        let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(MIRROR_ANNOTATION.to_owned(), h.clone());
        annotations.insert(HASH_ANNOTATION.to_owned(), h);
        annotations.insert(SOURCE_ANNOTATION.to_owned(), "file".to_owned());
        if let Some(uid) = node_uid {
            pod.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Node".to_owned(),
                name: node_name.to_owned(),
                uid: uid.to_owned(),
                controller: Some(true),
                ..OwnerReference::default()
            }]);
        }
        let spec = pod.spec.get_or_insert_with(Default::default);
        spec.node_name = Some(node_name.to_owned());
        pod.status = None;
        pods.insert(format!("{namespace}/{name}"), pod);
    }
    (pods, errors)
}

fn read_manifests(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(&path) {
            out.insert(name, bytes);
        }
    }
    out
}

fn mirror_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(MIRROR_ANNOTATION)
        .map(String::as_str)
}

/// Wake the scan loop whenever a mirror pod on this node is finally deleted.
async fn watch_mirror_deletions(client: Client, node_name: String, kick: mpsc::Sender<()>) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Delete(pod)) if mirror_hash(&pod).is_some() => {
                // A full channel already holds a wake-up.
                let _ = kick.try_send(());
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "mirror pod watch failed; retrying"),
        }
    }
}

/// Keep mirror pods in line with the manifests in `dir`, every `every` and whenever a mirror
/// pod is deleted.
pub async fn run(client: Client, node_name: String, dir: std::path::PathBuf, every: Duration) {
    let (kick, mut kicked) = mpsc::channel(1);
    let deletions = tokio::spawn(watch_mirror_deletions(
        client.clone(),
        node_name.clone(),
        kick,
    ));
    let _abort_on_drop = AbortOnDrop(deletions);
    let nodes: Api<Node> = Api::all(client.clone());
    let all_pods: Api<Pod> = Api::all(client.clone());
    loop {
        let node_uid = nodes
            .get_opt(&node_name)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.metadata.uid);
        // As the kubelet: mirror pods are owned by the Node, so wait until it is registered.
        let Some(node_uid) = node_uid else {
            tokio::time::sleep(NODE_POLL.min(every)).await;
            continue;
        };
        let (desired, errors) = desired_mirrors(&read_manifests(&dir), &node_name, Some(&node_uid));
        for error in errors {
            tracing::warn!(%error, "invalid static pod manifest");
        }
        let existing = all_pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node_name}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let mirrors: BTreeMap<String, Pod> = existing
            .into_iter()
            .filter(|p| mirror_hash(p).is_some())
            .map(|p| {
                let key = format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default()
                );
                (key, p)
            })
            .collect();
        for (key, pod) in &desired {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            match mirrors.get(key) {
                Some(current) if mirror_hash(current) == mirror_hash(pod) => {}
                Some(current) => {
                    if current.metadata.deletion_timestamp.is_none() {
                        let name = current.metadata.name.clone().unwrap_or_default();
                        tracing::info!(pod = %key, "static pod manifest changed; replacing mirror pod");
                        let _ = api.delete(&name, &DeleteParams::default()).await;
                    }
                }
                None => match api.create(&PostParams::default(), pod).await {
                    Ok(_) => tracing::info!(pod = %key, "created mirror pod for static pod"),
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(error) => tracing::warn!(pod = %key, %error, "cannot create mirror pod"),
                },
            }
        }
        for (key, pod) in &mirrors {
            if !desired.contains_key(key) && pod.metadata.deletion_timestamp.is_none() {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
                let name = pod.metadata.name.clone().unwrap_or_default();
                tracing::info!(pod = %key, "static pod manifest removed; deleting mirror pod");
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            Some(()) = kicked.recv() => {}
        }
    }
}

/// Stops the deletion watch with the scan loop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_mirror_pods() {
        let manifests = BTreeMap::from([
            (
                "web.yaml".to_owned(),
                b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: app:v1\n".to_vec(),
            ),
            ("broken.yaml".to_owned(), b"kind: [".to_vec()),
        ]);
        let (pods, errors) = desired_mirrors(&manifests, "n1", Some("node-uid"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        let pod = &pods["default/web-n1"];
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("n1")
        );
        let annotations = pod.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations[SOURCE_ANNOTATION], "file");
        assert_eq!(annotations[MIRROR_ANNOTATION], annotations[HASH_ANNOTATION]);
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Node", "node-uid")
        );
        // A changed manifest changes the hash.
        let changed = BTreeMap::from([(
            "web.yaml".to_owned(),
            b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: app:v2\n".to_vec(),
        )]);
        let (again, _) = desired_mirrors(&changed, "n1", None);
        assert_ne!(mirror_hash(&again["default/web-n1"]), mirror_hash(pod));
    }
}
