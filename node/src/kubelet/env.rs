//! Container environment: `env` (value, configMapKeyRef, secretKeyRef, fieldRef,
//! resourceFieldRef) and `envFrom`, resolved as the kubelet does, with its error messages
//! (a missing key is a `CreateContainerConfigError`). Pure: ConfigMaps and Secrets are looked
//! up in maps the worker fetched beforehand ([`Sources`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

/// Why an environment cannot be built (shown as `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// ConfigMaps and Secrets of the pod's namespace, by name (`None`: does not exist).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// ConfigMap name → data (binaryData decoded lossily).
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
    /// Secret name → data (decoded).
    pub secrets: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

/// Node facts some references need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFacts {
    /// `status.hostIP`.
    pub host_ip: String,
    /// `status.podIP`.
    pub pod_ip: String,
    /// Allocatable CPU in cores (default for `limits.cpu` when unset).
    pub allocatable_cpu: f64,
    /// Allocatable memory in bytes (default for `limits.memory` when unset).
    pub allocatable_memory: f64,
}

/// Names of ConfigMaps and Secrets a container's environment refers to.
pub fn referenced(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for e in container.env.iter().flatten() {
        if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for f in container.env_from.iter().flatten() {
        if let Some(r) = &f.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &f.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Resolve the environment of `container` in `pod`, in Kubernetes order: `envFrom` first,
/// then `env` (later entries win), with `$(VAR)` expansion of values.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    node: &NodeFacts,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = env.iter_mut().find(|(name, _)| *name == k) {
            slot.1 = v;
        } else {
            env.push((k, v));
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional) = if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name).cloned().flatten() {
                Some(d) => (d, false),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError(format!("configmap \"{}\" not found", r.name))),
            }
        } else if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name).cloned().flatten() {
                Some(d) => (d, false),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError(format!("secret \"{}\" not found", r.name))),
            }
        } else {
            continue;
        };
        let _ = optional;
        for (k, v) in data {
            let name = format!("{prefix}{k}");
            if is_env_name(&name) {
                set(&mut env, name, v);
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match value_of(pod, container, var, sources, node, namespace, &env)? {
            Some(v) => v,
            None => continue,
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

fn value_of(
    pod: &Pod,
    container: &Container,
    var: &EnvVar,
    sources: &Sources,
    node: &NodeFacts,
    namespace: &str,
    env: &[(String, String)],
) -> Result<Option<String>, EnvError> {
    let Some(from) = &var.value_from else {
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), env)));
    };
    if let Some(r) = &from.config_map_key_ref {
        return match sources.config_maps.get(&r.name).cloned().flatten() {
            None if r.optional == Some(true) => Ok(None),
            None => Err(EnvError(format!("configmap \"{}\" not found", r.name))),
            Some(data) => match data.get(&r.key) {
                Some(v) => Ok(Some(v.clone())),
                None if r.optional == Some(true) => Ok(None),
                None => Err(EnvError(format!(
                    "couldn't find key {} in ConfigMap {namespace}/{}",
                    r.key, r.name
                ))),
            },
        };
    }
    if let Some(r) = &from.secret_key_ref {
        return match sources.secrets.get(&r.name).cloned().flatten() {
            None if r.optional == Some(true) => Ok(None),
            None => Err(EnvError(format!("secret \"{}\" not found", r.name))),
            Some(data) => match data.get(&r.key) {
                Some(v) => Ok(Some(v.clone())),
                None if r.optional == Some(true) => Ok(None),
                None => Err(EnvError(format!(
                    "couldn't find key {} in Secret {namespace}/{}",
                    r.key, r.name
                ))),
            },
        };
    }
    if let Some(r) = &from.field_ref {
        return field_value(pod, &r.field_path, node).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        let target = match r.container_name.as_deref() {
            Some(name) if !name.is_empty() => pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == name))
                .ok_or_else(|| EnvError(format!("container {name} not found")))?,
            _ => container,
        };
        let divisor = r.divisor.as_ref().map(|d| d.0.as_str());
        return resource_value(target, &r.resource, divisor, node).map(Some);
    }
    Ok(Some(String::new()))
}

/// `$(VAR)` expansion against earlier variables; `$$` escapes; unknown references stay.
pub fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API field path.
pub fn field_value(pod: &Pod, path: &str, node: &NodeFacts) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let map_value = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let format_map = |map: &Option<BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['"))
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_owned)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(&meta.labels),
        "metadata.annotations" => format_map(&meta.annotations),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => node.host_ip.clone(),
        "status.podIP" | "status.podIPs" => node.pod_ip.clone(),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                map_value(&meta.labels, &key)
            } else if let Some(key) = subscript("metadata.annotations") {
                map_value(&meta.annotations, &key)
            } else {
                return Err(EnvError(format!("unsupported fieldPath: {path}")));
            }
        }
    })
}

/// A Kubernetes quantity (`500m`, `64Mi`, `1.5G`, `2e3`) in base units.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// The value of a `resourceFieldRef` (`limits.cpu`, `requests.memory`, ...) divided by the
/// divisor and rounded up, as the kubelet reports it.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    node: &NodeFacts,
) -> Result<String, EnvError> {
    let resources = container.resources.clone().unwrap_or_default();
    let get = |map: &Option<
        BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .and_then(|q| parse_quantity(&q.0))
    };
    let value = match resource {
        "limits.cpu" => get(&resources.limits, "cpu").unwrap_or(node.allocatable_cpu),
        "limits.memory" => get(&resources.limits, "memory").unwrap_or(node.allocatable_memory),
        "limits.ephemeral-storage" => get(&resources.limits, "ephemeral-storage").unwrap_or(0.0),
        "requests.cpu" => get(&resources.requests, "cpu")
            .or_else(|| get(&resources.limits, "cpu"))
            .unwrap_or(0.0),
        "requests.memory" => get(&resources.requests, "memory")
            .or_else(|| get(&resources.limits, "memory"))
            .unwrap_or(0.0),
        "requests.ephemeral-storage" => {
            get(&resources.requests, "ephemeral-storage").unwrap_or(0.0)
        }
        other => return Err(EnvError(format!("unsupported container resource: {other}"))),
    };
    let divisor = match divisor {
        Some(d) => parse_quantity(d)
            .filter(|d| *d > 0.0)
            .ok_or_else(|| EnvError(format!("invalid divisor {d}")))?,
        None => 1.0,
    };
    Ok(format!(
        "{}",
        (value / divisor - 1e-9).ceil().max(0.0) as u64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVarSource, ObjectFieldSelector,
        PodSpec, ResourceFieldSelector, ResourceRequirements, SecretKeySelector,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(container: Container) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u1".into()),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![container],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn from(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(source),
        }
    }

    fn sources() -> Sources {
        Sources {
            config_maps: BTreeMap::from([
                (
                    "cfg".into(),
                    Some(BTreeMap::from([
                        ("mode".into(), "fast".into()),
                        ("bad key".into(), "x".into()),
                    ])),
                ),
                ("gone".into(), None),
            ]),
            secrets: BTreeMap::from([(
                "creds".into(),
                Some(BTreeMap::from([("password".into(), "hunter2".into())])),
            )]),
        }
    }

    fn node() -> NodeFacts {
        NodeFacts {
            host_ip: "10.0.0.5".into(),
            pod_ip: "10.244.0.7".into(),
            allocatable_cpu: 4.0,
            allocatable_memory: 8.0 * 1024.0 * 1024.0 * 1024.0,
        }
    }

    #[test]
    fn resolves_every_kind_of_source() {
        let container = Container {
            name: "app".into(),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                prefix: Some("CFG_".into()),
                secret_ref: None,
            }]),
            env: Some(vec![
                var("GREETING", "hello"),
                var("MESSAGE", "$(GREETING) world $$(ESCAPED) $(MISSING)"),
                from(
                    "MODE",
                    EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "cfg".into(),
                            key: "mode".into(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "PASSWORD",
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "creds".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "POD_NAME",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            api_version: None,
                        }),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "APP",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels['app']".into(),
                            api_version: None,
                        }),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "POD_IP",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "status.podIP".into(),
                            api_version: None,
                        }),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "MEM_MI",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.memory".into(),
                            divisor: Some(Quantity("1Mi".into())),
                            container_name: None,
                        }),
                        ..EnvVarSource::default()
                    },
                ),
                from(
                    "CPU",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.cpu".into(),
                            divisor: None,
                            container_name: None,
                        }),
                        ..EnvVarSource::default()
                    },
                ),
                var("CFG_mode", "overridden"),
            ]),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        let p = pod(container.clone());
        let env = resolve(&p, &container, &sources(), &node()).expect("env");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_mode"), Some("overridden"));
        assert_eq!(
            get("CFG_bad key"),
            None,
            "invalid names from envFrom are skipped"
        );
        assert_eq!(get("MESSAGE"), Some("hello world $(ESCAPED) $(MISSING)"));
        assert_eq!(get("MODE"), Some("fast"));
        assert_eq!(get("PASSWORD"), Some("hunter2"));
        assert_eq!(get("POD_NAME"), Some("web"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("POD_IP"), Some("10.244.0.7"));
        assert_eq!(get("MEM_MI"), Some("64"));
        assert_eq!(get("CPU"), Some("4"), "no limit: node allocatable");
        // envFrom entries come first, and an overriding env keeps the original position.
        assert_eq!(env[0].0, "CFG_mode");
    }

    #[test]
    fn missing_references_are_config_errors() {
        let cases = [
            (
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "nope".into(),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                },
                "configmap \"nope\" not found",
            ),
            (
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "cfg".into(),
                        key: "absent".into(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                },
                "couldn't find key absent in ConfigMap prod/cfg",
            ),
            (
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "creds".into(),
                        key: "user".into(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                },
                "couldn't find key user in Secret prod/creds",
            ),
            (
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "other".into(),
                        key: "user".into(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                },
                "secret \"other\" not found",
            ),
        ];
        for (source, message) in cases {
            let container = Container {
                name: "app".into(),
                env: Some(vec![from("X", source)]),
                ..Container::default()
            };
            let err = resolve(&pod(container.clone()), &container, &sources(), &node())
                .expect_err(message);
            assert_eq!(err.0, message);
        }
        // Optional references are skipped.
        let container = Container {
            name: "app".into(),
            env: Some(vec![from(
                "X",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "gone".into(),
                        key: "k".into(),
                        optional: Some(true),
                    }),
                    ..EnvVarSource::default()
                },
            )]),
            ..Container::default()
        };
        let env = resolve(&pod(container.clone()), &container, &sources(), &node()).expect("ok");
        assert!(env.is_empty());
        assert_eq!(referenced(&container), (vec!["gone".to_owned()], vec![]));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(
            parse_quantity("1.5Gi"),
            Some(1.5 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("5Xi"), None);
        let c = Container {
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([("cpu".into(), Quantity("250m".into()))])),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        assert_eq!(
            resource_value(&c, "requests.cpu", None, &node()).expect("cpu"),
            "1"
        );
        assert_eq!(
            resource_value(&c, "requests.cpu", Some("1m"), &node()).expect("cpu"),
            "250"
        );
        assert!(resource_value(&c, "limits.gpu", None, &node()).is_err());
    }
}
