//! A pod's sandbox across runtimes: one network namespace shared by every runtime the pod
//! uses.
//!
//! The *primary* runtime creates the namespace: Docker when the pod has an OCI container
//! (its pause container holds the namespace, and Docker cannot join one by path), otherwise
//! the pod's only runtime. The kubelet wires that namespace to the node ([`PodNetwork`](crate::network::PodNetwork)),
//! then the other runtimes join it by path (`NetworkMode::Existing`). A `hostNetwork` pod,
//! or any pod on a host-network node, uses the node's namespace and IP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use skiff_runtimes::{NetworkMode, SandboxSpec};

use super::Kubelet;
use super::select::OCI_HANDLER;

/// The sandboxes of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandbox {
    /// Handler that owns the namespace.
    pub primary: String,
    /// Handler → sandbox id.
    pub ids: BTreeMap<String, String>,
    /// The namespace (`None`: host network).
    pub netns: Option<PathBuf>,
    /// The pod IP.
    pub ip: IpAddr,
    /// Whether the pod network was attached (and must be detached).
    pub attached: bool,
}

/// Why a sandbox could not be created (`FailedCreatePodSandBox`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Failed to create pod sandbox: {0}")]
pub struct SandboxError(pub String);

/// The handler that should own the namespace.
pub fn primary(handlers: &BTreeSet<String>) -> Option<String> {
    if handlers.contains(OCI_HANDLER) {
        Some(OCI_HANDLER.to_owned())
    } else {
        handlers.iter().next().cloned()
    }
}

fn spec_for(pod: &Pod, network: NetworkMode) -> SandboxSpec {
    SandboxSpec {
        name: pod.metadata.name.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        network,
        labels: BTreeMap::from([(
            "io.kubernetes.pod.uid".to_owned(),
            pod.metadata.uid.clone().unwrap_or_default(),
        )]),
    }
}

/// Create the pod's sandboxes in every runtime of `handlers` and attach the network.
pub async fn create(
    kubelet: &Kubelet,
    pod: &Pod,
    handlers: &BTreeSet<String>,
) -> Result<PodSandbox, SandboxError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Some(primary) = primary(handlers) else {
        return Err(SandboxError("the pod has no containers".to_owned()));
    };
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
        || !kubelet.network.is_pod_network();
    let mut sandbox = PodSandbox {
        primary: primary.clone(),
        ids: BTreeMap::new(),
        netns: None,
        ip: kubelet.config.node_ip,
        attached: false,
    };
    let runtime = kubelet
        .selector
        .runtime(&primary)
        .map_err(|e| SandboxError(e.0))?;
    let mode = if host_network {
        NetworkMode::Host
    } else {
        NetworkMode::Pod
    };
    let id = runtime
        .create_sandbox(&spec_for(pod, mode))
        .await
        .map_err(|e| SandboxError(e.to_string()))?;
    sandbox.ids.insert(primary.clone(), id.clone());
    let result = async {
        if !host_network {
            let status = runtime
                .sandbox_status(&id)
                .await
                .map_err(|e| SandboxError(e.to_string()))?;
            if let Some(path) = status.netns_path {
                let ip = kubelet
                    .network
                    .attach(&uid, &path)
                    .await
                    .map_err(|e| SandboxError(format!("failed to set up pod network: {e}")))?;
                sandbox.ip = ip;
                sandbox.attached = true;
                sandbox.netns = Some(path);
            }
        }
        for handler in handlers.iter().filter(|h| **h != primary) {
            let runtime = kubelet
                .selector
                .runtime(handler)
                .map_err(|e| SandboxError(e.0))?;
            let mode = match &sandbox.netns {
                Some(path) => NetworkMode::Existing(path.clone()),
                None => NetworkMode::Host,
            };
            let id = runtime
                .create_sandbox(&spec_for(pod, mode))
                .await
                .map_err(|e| SandboxError(e.to_string()))?;
            sandbox.ids.insert(handler.clone(), id);
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(sandbox),
        Err(error) => {
            remove(kubelet, &uid, &sandbox).await;
            Err(error)
        }
    }
}

/// Stop every sandbox (killing what still runs) without removing anything.
pub async fn stop(kubelet: &Kubelet, sandbox: &PodSandbox) {
    for (handler, id) in &sandbox.ids {
        if let Ok(runtime) = kubelet.selector.runtime(handler)
            && let Err(error) = runtime.stop_sandbox(id).await
            && !error.is_not_found()
        {
            tracing::warn!(handler, sandbox = id, %error, "cannot stop sandbox");
        }
    }
}

/// Remove the sandboxes (joiners first, the namespace owner last) and detach the network.
pub async fn remove(kubelet: &Kubelet, uid: &str, sandbox: &PodSandbox) {
    let ordered = sandbox
        .ids
        .iter()
        .filter(|(h, _)| **h != sandbox.primary)
        .chain(sandbox.ids.iter().filter(|(h, _)| **h == sandbox.primary));
    let mut primary_id = None;
    for (handler, id) in ordered {
        if *handler == sandbox.primary {
            primary_id = Some((handler, id));
            continue;
        }
        remove_one(kubelet, handler, id).await;
    }
    // Detach while the namespace still exists so the veth goes with it cleanly.
    if sandbox.attached
        && let Err(error) = kubelet.network.detach(uid, sandbox.netns.as_deref()).await
    {
        tracing::warn!(uid, %error, "cannot detach pod network");
    }
    if let Some((handler, id)) = primary_id {
        remove_one(kubelet, handler, id).await;
    }
}

async fn remove_one(kubelet: &Kubelet, handler: &str, id: &str) {
    if let Ok(runtime) = kubelet.selector.runtime(handler)
        && let Err(error) = runtime.remove_sandbox(id).await
    {
        tracing::warn!(handler, sandbox = id, %error, "cannot remove sandbox");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_owns_the_namespace_of_mixed_pods() {
        let set = |names: &[&str]| {
            names
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(
            primary(&set(&["wasmtime", "docker"])).as_deref(),
            Some("docker")
        );
        assert_eq!(primary(&set(&["wasmtime"])).as_deref(), Some("wasmtime"));
        assert_eq!(primary(&set(&[])), None);
    }
}
