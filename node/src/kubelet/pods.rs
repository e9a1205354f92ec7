//! The pod manager: watches pods bound to this node (`fieldSelector=spec.nodeName=<node>`,
//! through kube-runtime's watcher, which relists and backs off by itself) and keeps one
//! [`PodWorker`] per pod UID, forwarding every change to it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;

use super::Kubelet;
use super::worker::{Message, PodWorker};

struct WorkerHandle {
    tx: mpsc::UnboundedSender<Message>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WorkerHandle {
    /// Workers stop with the pod manager (a node agent that is shut down leaves no worker
    /// behind to restart containers).
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Run the pod workers of this node until the task is dropped.
pub async fn run(kubelet: Arc<Kubelet>) {
    let api: Api<Pod> = Api::all(kubelet.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", kubelet.config.node_name));
    // Back off on errors (API server down): a failing watch must not spin.
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut relisted: Option<HashSet<String>> = None;
    while let Some(event) = stream.next().await {
        workers.retain(|_, w| !w.task.is_finished());
        match event {
            Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(seen) = &mut relisted {
                    seen.insert(uid.clone());
                }
                dispatch(&kubelet, &mut workers, uid, pod);
            }
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(worker) = workers.get(&uid) {
                    let _ = worker.tx.send(Message::Removed);
                }
            }
            Ok(watcher::Event::Init) => relisted = Some(HashSet::new()),
            Ok(watcher::Event::InitDone) => {
                // Pods that vanished while we were not watching.
                if let Some(seen) = relisted.take() {
                    for (uid, worker) in &workers {
                        if !seen.contains(uid) {
                            let _ = worker.tx.send(Message::Removed);
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "pod watch failed; retrying"),
        }
    }
}

fn dispatch(
    kubelet: &Arc<Kubelet>,
    workers: &mut HashMap<String, WorkerHandle>,
    uid: String,
    pod: Pod,
) {
    let pod = Arc::new(pod);
    if let Some(worker) = workers.get(&uid) {
        let _ = worker.tx.send(Message::Update(pod));
        return;
    }
    // A pod that is already finished and being deleted by someone else needs no worker
    // unless it is terminating (we must still delete it).
    let (tx, rx) = mpsc::unbounded_channel();
    let worker = PodWorker::new(kubelet.clone(), pod, tx.clone());
    let task = tokio::spawn(worker.run(rx));
    workers.insert(uid, WorkerHandle { tx, task });
}
