//! Quota arithmetic: Kubernetes quantities (`500m`, `1.5`, `2Gi`, `1e3`) as
//! exact milli-units, and what one pod consumes (`pods`, `requests.*`,
//! `limits.*`), as the quota evaluator counts it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Parses a quantity into thousandths of a unit (`"250m"` → 250,
/// `"1Ki"` → 1,024,000). `None` if malformed.
pub fn parse_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let (mult_num, mult_den): (i128, i128) = match suffix {
        "" => (1000, 1),
        "m" => (1, 1),
        "u" => (1, 1000),
        "n" => (1, 1_000_000),
        "k" => (1_000_000, 1),
        "M" => (1_000_000_000, 1),
        "G" => (1_000_000_000_000, 1),
        "T" => (1_000_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1024 * 1000, 1),
        "Mi" => (1024 * 1024 * 1000, 1),
        "Gi" => (1024 * 1024 * 1024 * 1000, 1),
        "Ti" => (1024_i128.pow(4) * 1000, 1),
        "Pi" => (1024_i128.pow(5) * 1000, 1),
        s if s.starts_with(['e', 'E']) => {
            let exp: u32 = s[1..].parse().ok()?;
            (10_i128.checked_pow(exp)? * 1000, 1)
        }
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let negative = int.starts_with('-');
    let int = int.trim_start_matches(['+', '-']);
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int_v: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_digits = frac.len() as u32;
    let frac_v: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let scale = 10_i128.checked_pow(frac_digits)?;
    // value = (int + frac/scale) * mult_num / mult_den, rounded up like Kubernetes.
    let numer = (int_v * scale + frac_v) * mult_num;
    let denom = scale * mult_den;
    let v = (numer + denom - 1) / denom;
    Some(if negative { -v } else { v })
}

/// Formats milli-units canonically: `"250m"`, `"2"`, `"128Mi"`.
pub fn format_milli(v: i128) -> String {
    if v % 1000 != 0 {
        return format!("{v}m");
    }
    let units = v / 1000;
    for (suffix, size) in [
        ("Ti", 1024_i128.pow(4)),
        ("Gi", 1024_i128.pow(3)),
        ("Mi", 1024 * 1024),
        ("Ki", 1024),
    ] {
        if units != 0 && units % size == 0 && units.abs() >= size {
            return format!("{}{suffix}", units / size);
        }
    }
    units.to_string()
}

fn container_amounts(c: &Container, kind: &str) -> BTreeMap<String, i128> {
    let r = c.resources.as_ref();
    let map = match kind {
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => r.and_then(|r| r.limits.as_ref()),
    };
    map.into_iter()
        .flatten()
        .filter_map(|(k, Quantity(q))| Some((k.clone(), parse_milli(q)?)))
        .collect()
}

/// A pod's effective requests or limits: the larger of the sum over its
/// containers and the largest init container, per resource.
pub fn pod_amounts(pod: &Pod, kind: &str) -> BTreeMap<String, i128> {
    let Some(spec) = pod.spec.as_ref() else {
        return BTreeMap::new();
    };
    let mut sum: BTreeMap<String, i128> = BTreeMap::new();
    for c in &spec.containers {
        for (k, v) in container_amounts(c, kind) {
            *sum.entry(k).or_default() += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in container_amounts(c, kind) {
            let e = sum.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    sum
}

/// True if the pod counts against quota (not finished, not being deleted).
pub fn counts(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// Usage of the pod-related quota resources named in `hard` by `pods`.
pub fn pod_usage<'a>(
    hard: impl Iterator<Item = &'a String>,
    pods: &[&Pod],
) -> BTreeMap<String, String> {
    let live: Vec<&Pod> = pods.iter().copied().filter(|p| counts(p)).collect();
    let mut out = BTreeMap::new();
    for name in hard {
        let value: Option<i128> = match name.as_str() {
            "pods" | "count/pods" => Some(live.len() as i128 * 1000),
            "cpu" | "requests.cpu" => Some(
                live.iter()
                    .map(|p| pod_amounts(p, "requests").get("cpu").copied().unwrap_or(0))
                    .sum(),
            ),
            "memory" | "requests.memory" => Some(
                live.iter()
                    .map(|p| {
                        pod_amounts(p, "requests")
                            .get("memory")
                            .copied()
                            .unwrap_or(0)
                    })
                    .sum(),
            ),
            "limits.cpu" => Some(
                live.iter()
                    .map(|p| pod_amounts(p, "limits").get("cpu").copied().unwrap_or(0))
                    .sum(),
            ),
            "limits.memory" => Some(
                live.iter()
                    .map(|p| pod_amounts(p, "limits").get("memory").copied().unwrap_or(0))
                    .sum(),
            ),
            "requests.ephemeral-storage" | "ephemeral-storage" => Some(
                live.iter()
                    .map(|p| {
                        pod_amounts(p, "requests")
                            .get("ephemeral-storage")
                            .copied()
                            .unwrap_or(0)
                    })
                    .sum(),
            ),
            _ => None,
        };
        if let Some(v) = value {
            out.insert(name.clone(), format_milli(v));
        }
    }
    out
}

/// The `(plural, group)` an object-count quota name refers to:
/// `count/deployments.apps` → `("deployments", "apps")`, `services` →
/// `("services", "")`. `None` for compute resources and pods.
pub fn counted_kind(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        if rest == "pods" {
            return None;
        }
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (plural.to_string(), group.to_string()),
            None => (rest.to_string(), String::new()),
        });
    }
    match name {
        "services"
        | "configmaps"
        | "secrets"
        | "persistentvolumeclaims"
        | "replicationcontrollers"
        | "resourcequotas" => Some((name.to_string(), String::new())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus, ResourceRequirements};

    #[test]
    fn quantities_parse_exactly() {
        assert_eq!(parse_milli("250m"), Some(250));
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli("0.1"), Some(100));
        assert_eq!(parse_milli("1Ki"), Some(1_024_000));
        assert_eq!(parse_milli("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("1G"), Some(1_000_000_000_000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("2.5Gi"), Some(2_684_354_560_000));
        assert_eq!(parse_milli("x"), None);
        assert_eq!(parse_milli("1Qi"), None);
        assert_eq!(parse_milli(""), None);
    }

    #[test]
    fn quantities_format_canonically() {
        assert_eq!(format_milli(250), "250m");
        assert_eq!(format_milli(2000), "2");
        assert_eq!(format_milli(0), "0");
        assert_eq!(format_milli(128 * 1024 * 1024 * 1000), "128Mi");
        assert_eq!(format_milli(3 * 1024 * 1024 * 1024 * 1000), "3Gi");
        assert_eq!(format_milli(1500 * 1000), "1500");
    }

    fn pod(cpu: &str, mem: &str, phase: &str) -> Pod {
        let res = ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), Quantity(cpu.into())),
                    ("memory".to_string(), Quantity(mem.into())),
                ]
                .into(),
            ),
            limits: Some([("cpu".to_string(), Quantity("1".into()))].into()),
            ..ResourceRequirements::default()
        };
        Pod {
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "a".into(),
                        resources: Some(res.clone()),
                        ..Container::default()
                    },
                    Container {
                        name: "b".into(),
                        resources: Some(res),
                        ..Container::default()
                    },
                ],
                init_containers: Some(vec![Container {
                    name: "init".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some([("cpu".to_string(), Quantity("2".into()))].into()),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }]),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn pod_usage_sums_live_pods() {
        let a = pod("100m", "64Mi", "Running");
        let b = pod("250m", "64Mi", "Pending");
        let done = pod("4", "1Gi", "Succeeded");
        // Containers 2 × 100m = 200m, but the init container needs 2: max wins.
        assert_eq!(pod_amounts(&a, "requests").get("cpu"), Some(&2000));
        let hard = [
            "pods",
            "requests.cpu",
            "requests.memory",
            "limits.cpu",
            "services",
        ]
        .map(String::from);
        let used = pod_usage(hard.iter(), &[&a, &b, &done]);
        assert_eq!(used.get("pods").map(String::as_str), Some("2"));
        assert_eq!(used.get("requests.cpu").map(String::as_str), Some("4"));
        assert_eq!(
            used.get("requests.memory").map(String::as_str),
            Some("256Mi")
        );
        assert_eq!(used.get("limits.cpu").map(String::as_str), Some("4"));
        assert!(!used.contains_key("services"));
    }

    #[test]
    fn counted_kinds() {
        assert_eq!(
            counted_kind("count/deployments.apps"),
            Some(("deployments".into(), "apps".into()))
        );
        assert_eq!(
            counted_kind("services"),
            Some(("services".into(), String::new()))
        );
        assert_eq!(
            counted_kind("count/configmaps"),
            Some(("configmaps".into(), String::new()))
        );
        assert_eq!(counted_kind("count/pods"), None);
        assert_eq!(counted_kind("requests.cpu"), None);
    }
}
