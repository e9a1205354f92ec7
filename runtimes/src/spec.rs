//! The inputs of the [`Runtime`](crate::Runtime) trait: Skiff's own small spec types.
//!
//! These are deliberately much smaller than a Kubernetes `Pod` or an OCI runtime spec: they carry
//! only what a backend needs to run a container (image, argv, env, working dir, mounts, limits,
//! log path). The kubelet converts a `Pod` into these; backends never see Kubernetes types.
//! [`ContainerSpec::validate`] holds the checks every backend applies before creating anything.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Error;

/// How a pod sandbox gets its network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum NetworkMode {
    /// The runtime creates a fresh network namespace for the pod (loopback up, nothing else),
    /// owns it, and deletes it when the sandbox is removed. This is the default.
    #[default]
    Pod,
    /// The pod shares the node's network namespace (`hostNetwork: true`, or the non-root
    /// fallback). Guests see the host's interfaces.
    Host,
    /// Join a namespace someone else owns, e.g. a Docker pause container's
    /// `/proc/<pid>/ns/net` or a namespace the kubelet created under `/run/netns`. The runtime
    /// never deletes it.
    Existing(PathBuf),
}

/// Everything a runtime needs to create a pod sandbox (CRI `RunPodSandbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    /// Pod name; informational (names, logs, netns file name).
    pub name: String,
    /// Pod namespace; informational.
    pub namespace: String,
    /// Pod UID; informational, lets the kubelet find sandboxes again after a restart.
    pub uid: String,
    /// How the sandbox's network namespace is obtained.
    pub network: NetworkMode,
    /// Free-form labels a caller can filter sandboxes by.
    pub labels: BTreeMap<String, String>,
}

impl SandboxSpec {
    /// A sandbox spec with the given name, `default` namespace and a fresh-netns network mode.
    pub fn new(name: impl Into<String>) -> Self {
        SandboxSpec {
            name: name.into(),
            namespace: "default".to_owned(),
            ..SandboxSpec::default()
        }
    }

    /// Builder-style setter for [`SandboxSpec::network`].
    pub fn with_network(mut self, network: NetworkMode) -> Self {
        self.network = network;
        self
    }
}

/// A host directory made visible inside a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Absolute path of an existing directory on the node.
    pub host_path: PathBuf,
    /// Absolute path where the guest sees it.
    pub container_path: String,
    /// If true the guest can read but not create, modify or delete anything under it.
    pub read_only: bool,
}

/// Resource limits of one container (`resources.limits` in a pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Hard memory limit in bytes; exceeding it ends the container with reason `OOMKilled`.
    pub memory_limit_bytes: Option<u64>,
    /// CPU limit in millicores (`500` = half a core); a busy container is throttled to it.
    pub cpu_millicores: Option<u64>,
}

/// Everything a runtime needs to create one container (CRI `CreateContainer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    /// Container name, unique within its pod.
    pub name: String,
    /// Image reference (`name:tag`, `registry/repo@sha256:...`), already present in the
    /// runtime's image store (see [`Runtime::pull_image`](crate::Runtime::pull_image)).
    pub image: String,
    /// Overrides the image's entrypoint; the first element is the program (argv\[0\]).
    pub command: Vec<String>,
    /// Arguments appended after the entrypoint.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the container.
    pub working_dir: Option<String>,
    /// Host directories visible to the guest; nothing else of the host file system is.
    pub mounts: Vec<Mount>,
    /// Memory and CPU limits.
    pub resources: Resources,
    /// Absolute path of the CRI-format log file; `None` discards output.
    pub log_path: Option<PathBuf>,
    /// Free-form labels a caller can filter containers by.
    pub labels: BTreeMap<String, String>,
    /// Keep the container's standard input open for [`Runtime::attach`](crate::Runtime::attach)
    /// (`stdin: true` in a pod, as `kubectl run -i` sets). Otherwise it reads end-of-file.
    #[serde(default)]
    pub stdin: bool,
    /// Close standard input after the first attached client detaches (`stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Give the container a pseudo-terminal (`tty: true`, `kubectl run -t`); its stderr is
    /// merged into stdout.
    #[serde(default)]
    pub tty: bool,
}

impl ContainerSpec {
    /// A spec running `image` with its default entrypoint.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            ..ContainerSpec::default()
        }
    }

    /// The checks every backend applies before creating a container.
    ///
    /// Rejects an empty name or image, a relative working dir, and mounts whose paths are not
    /// absolute or whose host directory does not exist, with [`Error::InvalidSpec`].
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| {
            Err(Error::InvalidSpec {
                container: self.name.clone(),
                reason,
            })
        };
        if self.name.is_empty() {
            return invalid("container name must not be empty".to_owned());
        }
        if self.image.trim().is_empty() {
            return invalid("image must not be empty".to_owned());
        }
        if let Some(dir) = &self.working_dir
            && !dir.starts_with('/')
        {
            return invalid(format!("working dir {dir:?} must be an absolute path"));
        }
        if let Some(path) = &self.log_path
            && !path.is_absolute()
        {
            return invalid(format!("log path {} must be absolute", path.display()));
        }
        for mount in &self.mounts {
            if !mount.container_path.starts_with('/') {
                return invalid(format!(
                    "mount path {:?} must be an absolute path",
                    mount.container_path
                ));
            }
            if !mount.host_path.is_absolute() {
                return invalid(format!(
                    "mount source {} must be an absolute path",
                    mount.host_path.display()
                ));
            }
            if !mount.host_path.is_dir() {
                return invalid(format!(
                    "mount source {} does not exist or is not a directory",
                    mount.host_path.display()
                ));
            }
        }
        if let Some(0) = self.resources.cpu_millicores {
            return invalid("cpu limit must be greater than zero".to_owned());
        }
        if let Some(0) = self.resources.memory_limit_bytes {
            return invalid("memory limit must be greater than zero".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ContainerSpec {
        ContainerSpec::new("app", "hello:latest")
    }

    #[test]
    fn accepts_a_minimal_spec() {
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn rejects_bad_fields() {
        type Mutation = Box<dyn Fn(&mut ContainerSpec)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("name", Box::new(|s| s.name.clear())),
            ("image", Box::new(|s| s.image = " ".into())),
            (
                "working dir",
                Box::new(|s| s.working_dir = Some("rel".into())),
            ),
            ("log path", Box::new(|s| s.log_path = Some("x.log".into()))),
            (
                "mount path",
                Box::new(|s| {
                    s.mounts.push(Mount {
                        host_path: "/tmp".into(),
                        container_path: "data".into(),
                        read_only: false,
                    })
                }),
            ),
            (
                "mount source",
                Box::new(|s| {
                    s.mounts.push(Mount {
                        host_path: "/definitely/not/here".into(),
                        container_path: "/data".into(),
                        read_only: false,
                    })
                }),
            ),
            (
                "cpu limit",
                Box::new(|s| s.resources.cpu_millicores = Some(0)),
            ),
            (
                "memory limit",
                Box::new(|s| s.resources.memory_limit_bytes = Some(0)),
            ),
        ];
        for (what, mutate) in cases {
            let mut spec = valid();
            mutate(&mut spec);
            let err = spec.validate().expect_err(what);
            assert_eq!(err.reason(), "CreateContainerConfigError", "{what}");
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
    }
}
