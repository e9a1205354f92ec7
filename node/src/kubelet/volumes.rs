//! Pod volumes: materialized under `<pods dir>/<uid>/volumes/<name>` and handed to runtimes as
//! host directories ([`Mount`]).
//!
//! - `emptyDir`: a directory; `medium: Memory` mounts a tmpfs on it (size from `sizeLimit`).
//! - `configMap`, `secret`, `downwardAPI`, `projected`: files written from the objects (keys or
//!   `items`, `defaultMode`/`mode`). Every volume holding secret data is a tmpfs, so secrets
//!   are never written to the node's disk; without permission to mount (not root) they go to
//!   a directory under `/dev/shm`, which is memory too.
//! - `hostPath`: the node directory itself (`DirectoryOrCreate` creates it). Runtimes mount
//!   directories only, so file-typed hostPaths are refused with a clear `FailedMount`.
//!
//! [`plan`] is the pure part (what files a volume holds); [`Volumes::prepare`] does the I/O.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};
use skiff_runtimes::Mount;

use super::env::{NodeFacts, Sources, field_value, resource_value};

/// Why a volume cannot be set up (shown as a `FailedMount` event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
pub struct VolumeError {
    /// The volume's name.
    pub volume: String,
    /// What went wrong.
    pub message: String,
}

/// What one volume should look like on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// An empty directory (optionally a tmpfs of `size` bytes).
    EmptyDir {
        /// tmpfs.
        memory: bool,
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// Files (relative path → content, mode), read-only for containers; `memory` when they
    /// hold secret data.
    Files {
        /// Path → (content, mode).
        files: BTreeMap<String, (Vec<u8>, u32)>,
        /// Must live in memory.
        memory: bool,
    },
    /// A node directory.
    HostPath {
        /// The path.
        path: PathBuf,
        /// Create it if missing.
        create: bool,
    },
}

fn error(volume: &str, message: impl Into<String>) -> VolumeError {
    VolumeError {
        volume: volume.to_owned(),
        message: message.into(),
    }
}

fn key_files(
    volume: &str,
    kind: &str,
    data: &BTreeMap<String, String>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, VolumeError> {
    let mut files = BTreeMap::new();
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        let mode = item.mode.map(|m| m as u32).unwrap_or(default_mode);
                        files.insert(item.path.clone(), (v.as_bytes().to_vec(), mode));
                    }
                    None if optional => {}
                    None => {
                        // Kubernetes' own wording for the two kinds.
                        let message = if kind == "Secret" {
                            format!("references non-existent secret key: {}", item.key)
                        } else {
                            format!("configmap references non-existent config key: {}", item.key)
                        };
                        return Err(error(volume, message));
                    }
                }
            }
        }
        _ => {
            for (k, v) in data {
                files.insert(k.clone(), (v.as_bytes().to_vec(), default_mode));
            }
        }
    }
    Ok(files)
}

fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Decide what every volume of `pod` holds. `sources` must contain every ConfigMap and
/// Secret the volumes refer to (see [`referenced`]).
pub fn plan(
    pod: &Pod,
    sources: &Sources,
    node: &NodeFacts,
) -> Result<Vec<(String, Plan)>, VolumeError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut out = Vec::new();
    for v in spec.volumes.iter().flatten() {
        let name = v.name.as_str();
        let plan = if let Some(e) = &v.empty_dir {
            Plan::EmptyDir {
                memory: e.medium.as_deref() == Some("Memory"),
                size: e
                    .size_limit
                    .as_ref()
                    .and_then(|q| super::env::parse_quantity(&q.0))
                    .map(|b| b as u64),
            }
        } else if let Some(h) = &v.host_path {
            let create = matches!(h.type_.as_deref(), Some("DirectoryOrCreate"));
            match h.type_.as_deref() {
                Some("File") | Some("FileOrCreate") | Some("Socket") | Some("CharDevice")
                | Some("BlockDevice") => {
                    return Err(error(
                        name,
                        format!(
                            "hostPath type {:?} is not supported: only directories can be mounted",
                            h.type_.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                _ => {}
            }
            Plan::HostPath {
                path: PathBuf::from(&h.path),
                create,
            }
        } else if let Some(c) = &v.config_map {
            let optional = c.optional == Some(true);
            let mode = c.default_mode.map(|m| m as u32).unwrap_or(0o644);
            let files = match sources.config_maps.get(&c.name).cloned().flatten() {
                Some(data) => {
                    key_files(name, "ConfigMap", &data, c.items.as_ref(), mode, optional)?
                }
                None if optional => BTreeMap::new(),
                None => return Err(error(name, format!("configmap \"{}\" not found", c.name))),
            };
            Plan::Files {
                files,
                memory: false,
            }
        } else if let Some(s) = &v.secret {
            let secret_name = s.secret_name.clone().unwrap_or_default();
            let optional = s.optional == Some(true);
            let mode = s.default_mode.map(|m| m as u32).unwrap_or(0o644);
            let files = match sources.secrets.get(&secret_name).cloned().flatten() {
                Some(data) => key_files(name, "Secret", &data, s.items.as_ref(), mode, optional)?,
                None if optional => BTreeMap::new(),
                None => return Err(error(name, format!("secret \"{secret_name}\" not found"))),
            };
            Plan::Files {
                files,
                memory: true,
            }
        } else if let Some(d) = &v.downward_api {
            let mode = d.default_mode.map(|m| m as u32).unwrap_or(0o644);
            Plan::Files {
                files: downward_files(name, pod, d.items.iter().flatten(), mode, node)?,
                memory: false,
            }
        } else if let Some(p) = &v.projected {
            let mode = p.default_mode.map(|m| m as u32).unwrap_or(0o644);
            let mut files = BTreeMap::new();
            let mut memory = false;
            for source in p.sources.iter().flatten() {
                if let Some(c) = &source.config_map {
                    let optional = c.optional == Some(true);
                    match sources.config_maps.get(&c.name).cloned().flatten() {
                        Some(data) => files.extend(key_files(
                            name,
                            "ConfigMap",
                            &data,
                            c.items.as_ref(),
                            mode,
                            optional,
                        )?),
                        None if optional => {}
                        None => {
                            return Err(error(name, format!("configmap \"{}\" not found", c.name)));
                        }
                    }
                }
                if let Some(s) = &source.secret {
                    memory = true;
                    let optional = s.optional == Some(true);
                    match sources.secrets.get(&s.name).cloned().flatten() {
                        Some(data) => files.extend(key_files(
                            name,
                            "Secret",
                            &data,
                            s.items.as_ref(),
                            mode,
                            optional,
                        )?),
                        None if optional => {}
                        None => {
                            return Err(error(name, format!("secret \"{}\" not found", s.name)));
                        }
                    }
                }
                if let Some(d) = &source.downward_api {
                    files.extend(downward_files(
                        name,
                        pod,
                        d.items.iter().flatten(),
                        mode,
                        node,
                    )?);
                }
                // serviceAccountToken sources need the TokenRequest API; the file is left out.
            }
            Plan::Files { files, memory }
        } else {
            return Err(error(name, "unsupported volume type"));
        };
        if let Plan::Files { files, .. } = &plan
            && let Some(bad) = files.keys().find(|p| !safe_relative(p))
        {
            return Err(error(name, format!("invalid path {bad:?}")));
        }
        out.push((name.to_owned(), plan));
    }
    Ok(out)
}

fn downward_files<'a>(
    volume: &str,
    pod: &Pod,
    items: impl Iterator<Item = &'a k8s_openapi::api::core::v1::DownwardAPIVolumeFile>,
    default_mode: u32,
    node: &NodeFacts,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, VolumeError> {
    let mut files = BTreeMap::new();
    for item in items {
        let mode = item.mode.map(|m| m as u32).unwrap_or(default_mode);
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path, node).map_err(|e| error(volume, e.0))?
        } else if let Some(r) = &item.resource_field_ref {
            let spec = pod.spec.clone().unwrap_or_default();
            let container = spec
                .containers
                .iter()
                .find(|c| Some(c.name.as_str()) == r.container_name.as_deref())
                .or_else(|| spec.containers.first())
                .cloned()
                .unwrap_or_default();
            resource_value(
                &container,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                node,
            )
            .map_err(|e| error(volume, e.0))?
        } else {
            String::new()
        };
        files.insert(item.path.clone(), (value.into_bytes(), mode));
    }
    Ok(files)
}

/// ConfigMaps and Secrets the pod's volumes refer to.
pub fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        if let Some(s) = &v.secret {
            secrets.extend(s.secret_name.clone());
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &source.config_map {
                cms.push(c.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// Volume directories of one pod on the node.
#[derive(Debug, Clone)]
pub struct Volumes {
    /// `<pods dir>/<uid>/volumes`.
    pub root: PathBuf,
    /// Volume name → host directory.
    pub dirs: BTreeMap<String, PathBuf>,
    /// Directories this pod mounted tmpfs on (unmounted on cleanup).
    pub tmpfs: Vec<PathBuf>,
    /// Directories under /dev/shm used instead of tmpfs mounts.
    pub shm: Vec<PathBuf>,
}

impl Volumes {
    /// Materialize `plans` for pod `uid` under `pods_dir`.
    pub fn prepare(
        pods_dir: &Path,
        uid: &str,
        plans: &[(String, Plan)],
    ) -> Result<Volumes, VolumeError> {
        let root = pods_dir.join(uid).join("volumes");
        let mut volumes = Volumes {
            root: root.clone(),
            dirs: BTreeMap::new(),
            tmpfs: Vec::new(),
            shm: Vec::new(),
        };
        for (name, plan) in plans {
            let io = |what: &str, p: &Path, e: std::io::Error| {
                error(name, format!("{what} {}: {e}", p.display()))
            };
            let dir = root.join(name);
            match plan {
                Plan::HostPath { path, create } => {
                    if *create {
                        std::fs::create_dir_all(path).map_err(|e| io("create", path, e))?;
                    }
                    if !path.is_dir() {
                        return Err(error(
                            name,
                            format!("hostPath {} is not a directory", path.display()),
                        ));
                    }
                    volumes.dirs.insert(name.clone(), path.clone());
                }
                Plan::EmptyDir { memory, size } => {
                    std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
                    let dir = if *memory {
                        volumes.memory_dir(name, &dir, *size)?
                    } else {
                        dir
                    };
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                        .map_err(|e| io("chmod", &dir, e))?;
                    volumes.dirs.insert(name.clone(), dir);
                }
                Plan::Files { files, memory } => {
                    std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
                    let dir = if *memory {
                        volumes.memory_dir(name, &dir, None)?
                    } else {
                        dir
                    };
                    for (path, (content, mode)) in files {
                        let file = dir.join(path);
                        if let Some(parent) = file.parent() {
                            std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
                        }
                        std::fs::write(&file, content).map_err(|e| io("write", &file, e))?;
                        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                            .map_err(|e| io("chmod", &file, e))?;
                    }
                    volumes.dirs.insert(name.clone(), dir);
                }
            }
        }
        Ok(volumes)
    }

    /// A memory-backed directory for `name`: a tmpfs mounted on `dir`, or (without
    /// permission to mount) a directory under `/dev/shm`.
    fn memory_dir(
        &mut self,
        name: &str,
        dir: &Path,
        size: Option<u64>,
    ) -> Result<PathBuf, VolumeError> {
        if is_tmpfs(dir) {
            return Ok(dir.to_owned());
        }
        let options = size
            .map(|s| format!("size={s}"))
            .unwrap_or_else(|| "size=64m".to_owned());
        match nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(options.as_str()),
        ) {
            Ok(()) => {
                self.tmpfs.push(dir.to_owned());
                Ok(dir.to_owned())
            }
            Err(errno) => {
                let shm = Path::new("/dev/shm/skiff").join(
                    dir.strip_prefix("/")
                        .unwrap_or(dir)
                        .to_string_lossy()
                        .replace('/', "_"),
                );
                tracing::debug!(%errno, volume = name, "cannot mount tmpfs; using {}", shm.display());
                std::fs::create_dir_all(&shm)
                    .map_err(|e| error(name, format!("create {}: {e}", shm.display())))?;
                self.shm.push(shm.clone());
                Ok(shm)
            }
        }
    }

    /// Mounts for `container`'s `volumeMounts`.
    pub fn mounts(&self, container: &Container, pod: &Pod) -> Result<Vec<Mount>, VolumeError> {
        let volumes: BTreeMap<&str, &Volume> = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .map(|v| (v.name.as_str(), v))
            .collect();
        let mut mounts = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let dir = self
                .dirs
                .get(&m.name)
                .ok_or_else(|| error(&m.name, "volume not prepared (not in spec.volumes?)"))?;
            let mut host = dir.clone();
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if !safe_relative(sub) {
                    return Err(error(&m.name, format!("invalid subPath {sub:?}")));
                }
                host = host.join(sub);
                std::fs::create_dir_all(&host).map_err(|e| {
                    error(&m.name, format!("create subPath {}: {e}", host.display()))
                })?;
            }
            let read_only_kind = volumes.get(m.name.as_str()).is_some_and(|v| {
                v.config_map.is_some()
                    || v.secret.is_some()
                    || v.downward_api.is_some()
                    || v.projected.is_some()
            });
            mounts.push(Mount {
                host_path: host,
                container_path: m.mount_path.clone(),
                read_only: m.read_only == Some(true) || read_only_kind,
            });
        }
        Ok(mounts)
    }

    /// Unmount tmpfs volumes and delete the pod's volume directories (not hostPaths).
    pub fn cleanup(pods_dir: &Path, uid: &str) {
        let root = pods_dir.join(uid);
        let volumes = root.join("volumes");
        if let Ok(entries) = std::fs::read_dir(&volumes) {
            for entry in entries.flatten() {
                let path = entry.path();
                if is_tmpfs(&path) {
                    let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
                }
                let shm = Path::new("/dev/shm/skiff").join(
                    path.strip_prefix("/")
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .replace('/', "_"),
                );
                let _ = std::fs::remove_dir_all(shm);
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&root)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %root.display(), error = %e, "cannot remove pod directory");
        }
    }
}

fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
        EmptyDirVolumeSource, HostPathVolumeSource, ObjectFieldSelector, PodSpec,
        SecretVolumeSource, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(volumes: Vec<Volume>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                volumes: Some(volumes),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn sources() -> Sources {
        Sources {
            config_maps: BTreeMap::from([(
                "cfg".into(),
                Some(BTreeMap::from([
                    ("a.txt".into(), "A".into()),
                    ("b.txt".into(), "B".into()),
                ])),
            )]),
            secrets: BTreeMap::from([(
                "creds".into(),
                Some(BTreeMap::from([("password".into(), "hunter2".into())])),
            )]),
        }
    }

    fn volume(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ..Volume::default()
        }
    }

    #[test]
    fn plans_files_from_objects() {
        let p = pod(vec![
            Volume {
                config_map: Some(ConfigMapVolumeSource {
                    name: "cfg".into(),
                    items: Some(vec![KeyToPath {
                        key: "a.txt".into(),
                        path: "sub/renamed".into(),
                        mode: Some(0o600),
                    }]),
                    ..ConfigMapVolumeSource::default()
                }),
                ..volume("config")
            },
            Volume {
                secret: Some(SecretVolumeSource {
                    secret_name: Some("creds".into()),
                    ..SecretVolumeSource::default()
                }),
                ..volume("secret")
            },
            Volume {
                downward_api: Some(DownwardAPIVolumeSource {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: "name".into(),
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            api_version: None,
                        }),
                        ..DownwardAPIVolumeFile::default()
                    }]),
                    ..DownwardAPIVolumeSource::default()
                }),
                ..volume("info")
            },
        ]);
        let plans = plan(&p, &sources(), &NodeFacts::default()).expect("plan");
        assert_eq!(
            plans[0].1,
            Plan::Files {
                files: BTreeMap::from([("sub/renamed".into(), (b"A".to_vec(), 0o600))]),
                memory: false
            }
        );
        assert_eq!(
            plans[1].1,
            Plan::Files {
                files: BTreeMap::from([("password".into(), (b"hunter2".to_vec(), 0o644))]),
                memory: true
            }
        );
        assert_eq!(
            plans[2].1,
            Plan::Files {
                files: BTreeMap::from([("name".into(), (b"web".to_vec(), 0o644))]),
                memory: false
            }
        );
        assert_eq!(
            referenced(&p),
            (vec!["cfg".to_owned()], vec!["creds".to_owned()])
        );
    }

    #[test]
    fn missing_objects_and_bad_types_fail_to_mount() {
        let missing = pod(vec![Volume {
            config_map: Some(ConfigMapVolumeSource {
                name: "nope".into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..volume("config")
        }]);
        let err = plan(&missing, &sources(), &NodeFacts::default()).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"config\" : configmap \"nope\" not found"
        );
        let file = pod(vec![Volume {
            host_path: Some(HostPathVolumeSource {
                path: "/etc/hosts".into(),
                type_: Some("File".into()),
            }),
            ..volume("hosts")
        }]);
        assert!(plan(&file, &sources(), &NodeFacts::default()).is_err());
        let escape = pod(vec![Volume {
            config_map: Some(ConfigMapVolumeSource {
                name: "cfg".into(),
                items: Some(vec![KeyToPath {
                    key: "a.txt".into(),
                    path: "../escape".into(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..volume("config")
        }]);
        assert!(plan(&escape, &sources(), &NodeFacts::default()).is_err());
    }

    #[test]
    fn prepares_directories_and_mounts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = dir.path().join("host-data");
        let p = pod(vec![
            Volume {
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..volume("scratch")
            },
            Volume {
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    ..EmptyDirVolumeSource::default()
                }),
                ..volume("fast")
            },
            Volume {
                host_path: Some(HostPathVolumeSource {
                    path: host.to_string_lossy().into_owned(),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                ..volume("host")
            },
            Volume {
                secret: Some(SecretVolumeSource {
                    secret_name: Some("creds".into()),
                    ..SecretVolumeSource::default()
                }),
                ..volume("secret")
            },
        ]);
        let plans = plan(&p, &sources(), &NodeFacts::default()).expect("plan");
        let pods_dir = dir.path().join("pods");
        let volumes = Volumes::prepare(&pods_dir, "uid-1", &plans).expect("prepare");
        assert!(host.is_dir());
        assert!(volumes.dirs["scratch"].is_dir());
        let secret_file = volumes.dirs["secret"].join("password");
        assert_eq!(
            std::fs::read_to_string(&secret_file).expect("secret"),
            "hunter2"
        );
        // The secret lives in memory: a tmpfs (root) or /dev/shm.
        assert!(
            is_tmpfs(&volumes.dirs["secret"]),
            "{}",
            volumes.dirs["secret"].display()
        );
        assert!(is_tmpfs(&volumes.dirs["fast"]));
        let container = Container {
            name: "app".into(),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "scratch".into(),
                    mount_path: "/scratch".into(),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "secret".into(),
                    mount_path: "/etc/secret".into(),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "scratch".into(),
                    mount_path: "/sub".into(),
                    sub_path: Some("part".into()),
                    ..VolumeMount::default()
                },
            ]),
            ..Container::default()
        };
        let mounts = volumes.mounts(&container, &p).expect("mounts");
        assert_eq!(mounts.len(), 3);
        assert!(!mounts[0].read_only);
        assert!(mounts[1].read_only, "secret volumes are read-only");
        assert!(mounts[2].host_path.ends_with("scratch/part") && mounts[2].host_path.is_dir());
        Volumes::cleanup(&pods_dir, "uid-1");
        assert!(!pods_dir.join("uid-1").exists());
        assert!(host.is_dir(), "hostPath survives cleanup");
    }
}
