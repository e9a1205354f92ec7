//! Quota arithmetic without I/O (Kubernetes' quota evaluators): what one
//! object consumes (`pods`, `requests.cpu`, `services.nodeports`,
//! `count/deployments.apps`, …), whether a quota covers it (resources and
//! scopes), the per-container "must specify" constraints, and the admission
//! check that adds a new object's usage to `status.used` or explains which
//! limit it would exceed. The resource quota controller reuses the same
//! functions to recompute usage from scratch.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;

use crate::apiserver::admission::quantity::Quantity;

/// Resource name → amount (`corev1.ResourceList`).
pub type Usage = BTreeMap<String, Quantity>;

/// Which evaluator measures objects of one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evaluator {
    /// core/v1 pods: object count plus compute resources.
    Pods,
    /// core/v1 services: count, node ports and load balancers.
    Services,
    /// Any other resource: its object count.
    Count {
        /// API group, `""` for core.
        group: String,
        /// Plural resource name.
        plural: String,
    },
}

/// Core resources whose object count also has a bare quota name.
const LEGACY_COUNTS: &[&str] = &[
    "configmaps",
    "secrets",
    "resourcequotas",
    "persistentvolumeclaims",
    "replicationcontrollers",
];

const POD_RESOURCES: &[&str] = &[
    "pods",
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

/// Resources whose presence every container must declare when a quota
/// limits them (`validationSet`).
const MUST_SPECIFY: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// `count/<plural>` for core resources, `count/<plural>.<group>` otherwise.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// An extended resource name (`example.com/foo`), which quota only knows
/// as `requests.<name>`.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/")
}

impl Evaluator {
    /// The evaluator for objects of `group`/`plural`.
    pub fn for_resource(group: &str, plural: &str) -> Self {
        match (group, plural) {
            ("", "pods") => Evaluator::Pods,
            ("", "services") => Evaluator::Services,
            _ => Evaluator::Count {
                group: group.to_string(),
                plural: plural.to_string(),
            },
        }
    }

    /// True if updates are charged too (Kubernetes' `Handles` for
    /// `UPDATE`): services and pods, whose usage can grow in place; object
    /// counts are charged on create only.
    pub fn handles_updates(&self) -> bool {
        matches!(self, Evaluator::Pods | Evaluator::Services)
    }

    /// True if this evaluator measures the quota resource `name`.
    pub fn handles(&self, name: &str) -> bool {
        match self {
            Evaluator::Pods => {
                POD_RESOURCES.contains(&name)
                    || name.starts_with("hugepages-")
                    || name.starts_with("requests.hugepages-")
                    || name.strip_prefix("requests.").is_some_and(is_extended)
            }
            Evaluator::Services => matches!(
                name,
                "services" | "count/services" | "services.nodeports" | "services.loadbalancers"
            ),
            Evaluator::Count { group, plural } => {
                name == count_name(group, plural)
                    || (group.is_empty() && name == plural && LEGACY_COUNTS.contains(&name))
            }
        }
    }

    /// The subset of `names` this evaluator measures (`MatchingResources`).
    pub fn matching<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        names
            .into_iter()
            .filter(|n| self.handles(n))
            .cloned()
            .collect()
    }
}

fn parse_list(list: Option<&BTreeMap<String, KQuantity>>) -> Usage {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(&v.0).ok()?)))
        .collect()
}

/// `status.hard` of a quota, parsed (admission enforces what the controller
/// has published, as Kubernetes does).
pub fn status_hard(q: &ResourceQuota) -> Usage {
    parse_list(q.status.as_ref().and_then(|s| s.hard.as_ref()))
}

/// `status.used` of a quota, parsed.
pub fn status_used(q: &ResourceQuota) -> Usage {
    parse_list(q.status.as_ref().and_then(|s| s.used.as_ref()))
}

/// `a + b` per resource (`quota.Add`).
pub fn add(a: &Usage, b: &Usage) -> Usage {
    let mut out = a.clone();
    for (k, v) in b {
        let sum = out.get(k).map_or(*v, |cur| cur.add(v));
        out.insert(k.clone(), sum);
    }
    out
}

/// `a - b` per resource, for resources in `a`, never below zero
/// (`quota.SubtractWithNonNegativeResult`).
pub fn subtract(a: &Usage, b: &Usage) -> Usage {
    a.iter()
        .map(|(k, v)| {
            let d = b.get(k).map_or(*v, |o| v.sub(o));
            (k.clone(), if d.is_negative() { v.sub(v) } else { d })
        })
        .collect()
}

/// Only the resources in `names` (`quota.Mask`).
pub fn mask<'a>(u: &Usage, names: impl IntoIterator<Item = &'a String>) -> Usage {
    names
        .into_iter()
        .filter_map(|n| Some((n.clone(), *u.get(n)?)))
        .collect()
}

fn add_into(target: &mut Usage, list: &Usage) {
    for (k, v) in list {
        let sum = target.get(k).map_or(*v, |cur| cur.add(v));
        target.insert(k.clone(), sum);
    }
}

fn max_into(target: &mut Usage, list: &Usage) {
    for (k, v) in list {
        match target.get(k) {
            Some(cur) if cur >= v => {}
            _ => {
                target.insert(k.clone(), *v);
            }
        }
    }
}

fn container_list(c: &Container, requests: bool) -> Usage {
    let r = c.resources.as_ref();
    parse_list(if requests {
        r.and_then(|r| r.requests.as_ref())
    } else {
        r.and_then(|r| r.limits.as_ref())
    })
}

/// A pod's effective requests or limits (`resourcehelper.PodRequests` /
/// `PodLimits`): containers and sidecars summed, each init container's
/// peak (with the sidecars started before it) as a floor, plus overhead.
pub fn pod_resources(pod: &Pod, requests: bool) -> Usage {
    let Some(spec) = pod.spec.as_ref() else {
        return Usage::new();
    };
    let mut total = Usage::new();
    for c in &spec.containers {
        add_into(&mut total, &container_list(c, requests));
    }
    let mut sidecars = Usage::new();
    let mut init_peak = Usage::new();
    for c in spec.init_containers.iter().flatten() {
        let own = container_list(c, requests);
        if c.restart_policy.as_deref() == Some("Always") {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            max_into(&mut init_peak, &sidecars);
        } else {
            max_into(&mut init_peak, &add(&own, &sidecars));
        }
    }
    max_into(&mut total, &init_peak);
    let overhead = parse_list(spec.overhead.as_ref());
    for (k, v) in overhead {
        if requests || total.contains_key(&k) {
            let sum = total.get(&k).map_or(v, |cur| cur.add(&v));
            total.insert(k, sum);
        }
    }
    total
}

/// Compute usage of requests and limits (`podComputeUsageHelper`).
fn compute_usage(requests: &Usage, limits: &Usage) -> Usage {
    let mut out = Usage::new();
    out.insert("pods".into(), Quantity::from_int(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(v) = requests.get(r) {
            out.insert(r.to_string(), *v);
            out.insert(format!("requests.{r}"), *v);
        }
        if let Some(v) = limits.get(r) {
            out.insert(format!("limits.{r}"), *v);
        }
    }
    for (k, v) in requests {
        if k.starts_with("hugepages-") {
            out.insert(k.clone(), *v);
            out.insert(format!("requests.{k}"), *v);
        } else if is_extended(k) {
            out.insert(format!("requests.{k}"), *v);
        }
    }
    out
}

/// True if a pod still counts against quota (`QuotaV1Pod`): not finished,
/// and not stuck terminating past its deletion time plus grace period.
pub fn pod_counts(pod: &Pod, now: Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if let (Some(ts), Some(grace)) = (
        pod.metadata.deletion_timestamp.as_ref(),
        pod.metadata.deletion_grace_period_seconds,
    ) {
        let deadline = ts.0 + jiff::SignedDuration::from_secs(grace);
        if now > deadline {
            return false;
        }
    }
    true
}

/// What one pod consumes: `count/pods` always; `pods` and compute
/// resources while it [counts](pod_counts).
pub fn pod_usage(pod: &Pod, now: Timestamp) -> Usage {
    let mut out = Usage::new();
    out.insert("count/pods".into(), Quantity::from_int(1));
    if !pod_counts(pod, now) {
        return out;
    }
    let usage = compute_usage(&pod_resources(pod, true), &pod_resources(pod, false));
    add(&out, &usage)
}

/// What one Service consumes.
pub fn service_usage(svc: &Service) -> Usage {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec.ports.as_ref().map_or(0, Vec::len) as i64;
    let mut out = Usage::new();
    out.insert("count/services".into(), Quantity::from_int(1));
    out.insert("services".into(), Quantity::from_int(1));
    out.insert("services.loadbalancers".into(), Quantity::ZERO);
    out.insert("services.nodeports".into(), Quantity::ZERO);
    match spec.type_.as_deref() {
        Some("NodePort") => {
            out.insert("services.nodeports".into(), Quantity::from_int(ports));
        }
        Some("LoadBalancer") => {
            let node_ports = if spec.allocate_load_balancer_node_ports == Some(false) {
                spec.ports
                    .iter()
                    .flatten()
                    .filter(|p| p.node_port.is_some_and(|n| n != 0))
                    .count() as i64
            } else {
                ports
            };
            out.insert("services.nodeports".into(), Quantity::from_int(node_ports));
            out.insert("services.loadbalancers".into(), Quantity::from_int(1));
        }
        _ => {}
    }
    out
}

/// What one object of `evaluator`'s resource consumes. `obj` is the
/// object's JSON (typed as a Pod or Service where that matters).
pub fn object_usage(
    evaluator: &Evaluator,
    obj: &serde_json::Value,
    now: Timestamp,
) -> Result<Usage, serde_json::Error> {
    Ok(match evaluator {
        Evaluator::Pods => pod_usage(&serde_json::from_value(obj.clone())?, now),
        Evaluator::Services => service_usage(&serde_json::from_value(obj.clone())?),
        Evaluator::Count { group, plural } => {
            let mut out = Usage::new();
            out.insert(count_name(group, plural), Quantity::from_int(1));
            if group.is_empty() && LEGACY_COUNTS.contains(&plural.as_str()) {
                out.insert(plural.clone(), Quantity::from_int(1));
            }
            out
        }
    })
}

fn has_compute(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let containers = spec
        .map(|s| s.containers.iter())
        .into_iter()
        .flatten()
        .chain(
            spec.and_then(|s| s.init_containers.as_ref())
                .into_iter()
                .flatten(),
        );
    containers.into_iter().any(|c| {
        let r = c.resources.as_ref();
        [
            r.and_then(|r| r.requests.as_ref()),
            r.and_then(|r| r.limits.as_ref()),
        ]
        .into_iter()
        .flatten()
        .any(|m| m.contains_key("cpu") || m.contains_key("memory"))
    })
}

/// One scope requirement of a quota (from `scopes` or `scopeSelector`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRequirement {
    /// `Terminating`, `NotTerminating`, `BestEffort`, `NotBestEffort`,
    /// `PriorityClass`, `CrossNamespacePodAffinity`.
    pub scope: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    pub values: Vec<String>,
}

/// The quota's scopes (`getScopeSelectorsFromQuota`).
pub fn scopes(q: &ResourceQuota) -> Vec<ScopeRequirement> {
    let spec = q.spec.clone().unwrap_or_default();
    let mut out: Vec<ScopeRequirement> = spec
        .scopes
        .into_iter()
        .flatten()
        .map(|s| ScopeRequirement {
            scope: s,
            operator: "Exists".into(),
            values: Vec::new(),
        })
        .collect();
    for e in spec
        .scope_selector
        .and_then(|s| s.match_expressions)
        .into_iter()
        .flatten()
    {
        out.push(ScopeRequirement {
            scope: e.scope_name,
            operator: e.operator,
            values: e.values.unwrap_or_default(),
        });
    }
    out
}

fn pod_matches_scope(req: &ScopeRequirement, pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    match req.scope.as_str() {
        "Terminating" => spec.and_then(|s| s.active_deadline_seconds).is_some(),
        "NotTerminating" => spec.and_then(|s| s.active_deadline_seconds).is_none(),
        "BestEffort" => !has_compute(pod),
        "NotBestEffort" => has_compute(pod),
        "PriorityClass" => {
            let class = spec
                .and_then(|s| s.priority_class_name.as_deref())
                .filter(|c| !c.is_empty());
            match req.operator.as_str() {
                "In" => class.is_some_and(|c| req.values.iter().any(|v| v == c)),
                "NotIn" => class.is_none_or(|c| !req.values.iter().any(|v| v == c)),
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                _ => false,
            }
        }
        // Cross-namespace affinity terms are not evaluated: pods count as
        // having none.
        "CrossNamespacePodAffinity" => req.operator == "DoesNotExist",
        _ => false,
    }
}

/// True if `obj` falls in every scope of `q` (no scopes: everything).
/// Only pods can be scoped; other kinds never match a scoped quota.
pub fn matches_scopes(q: &ResourceQuota, pod: Option<&Pod>) -> bool {
    let reqs = scopes(q);
    if reqs.is_empty() {
        return true;
    }
    match pod {
        Some(p) => reqs.iter().all(|r| pod_matches_scope(r, p)),
        None => false,
    }
}

/// Kubernetes' pod `Constraints`: when a quota limits cpu or memory, every
/// container must say how much it requests / is limited to.
pub fn pod_constraints(required: &[String], pod: &Pod) -> Result<(), String> {
    let required: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|r| MUST_SPECIFY.contains(r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let spec = pod.spec.clone().unwrap_or_default();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let have = compute_usage(&container_list(c, true), &container_list(c, false));
        for r in &required {
            if !have.contains_key(*r) {
                missing.entry(r).or_default().insert(c.name.clone());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

fn pretty(u: &Usage) -> String {
    u.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a create is refused: the message after `<resource> "<name>" is forbidden: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The new `status.used` of each quota (by index in `quotas`) that admitting
/// an object with usage `delta` charges, or why it must be refused
/// (Kubernetes' `CheckRequest` for creates). `pod` is the object when it is a
/// pod (for scopes and constraints).
pub fn check(
    quotas: &[ResourceQuota],
    evaluator: &Evaluator,
    pod: Option<&Pod>,
    delta: &Usage,
) -> Result<Vec<(usize, Usage)>, Refusal> {
    let mut interesting = Vec::new();
    for (i, q) in quotas.iter().enumerate() {
        let hard = status_hard(q);
        let restricted = evaluator.matching(hard.keys());
        if restricted.is_empty() || !matches_scopes(q, pod) {
            continue;
        }
        let name = q.metadata.name.as_deref().unwrap_or_default();
        if let Some(p) = pod {
            pod_constraints(&restricted, p)
                .map_err(|m| Refusal(format!("failed quota: {name}: {m}")))?;
        }
        let used = status_used(q);
        if restricted.iter().any(|r| !used.contains_key(r)) {
            return Err(Refusal(format!(
                "status unknown for quota: {name}, resources: {}",
                restricted.join(",")
            )));
        }
        interesting.push(i);
    }
    if interesting.is_empty() {
        return Ok(Vec::new());
    }
    let negative: Vec<&String> = delta
        .iter()
        .filter(|(_, v)| v.is_negative())
        .map(|(k, _)| k)
        .collect();
    if !negative.is_empty() {
        return Err(Refusal(format!(
            "quota usage is negative for resource(s): {}",
            negative
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    let delta: Usage = delta
        .iter()
        .filter(|(_, v)| !v.is_zero())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if delta.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for i in interesting {
        let q = &quotas[i];
        let hard = status_hard(q);
        let used = status_used(q);
        let requested = mask(&delta, hard.keys());
        let new_used = add(&used, &requested);
        let exceeded: Vec<String> = requested
            .keys()
            .filter(|k| matches!((new_used.get(*k), hard.get(*k)), (Some(n), Some(h)) if n > h))
            .cloned()
            .collect();
        if !exceeded.is_empty() {
            return Err(Refusal(format!(
                "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                q.metadata.name.as_deref().unwrap_or_default(),
                pretty(&mask(&requested, &exceeded)),
                pretty(&mask(&used, &exceeded)),
                pretty(&mask(&hard, &exceeded)),
            )));
        }
        if !requested.is_empty() {
            out.push((i, new_used));
        }
    }
    Ok(out)
}

/// A quota's usage recomputed from everything in its namespace (the
/// controller's `CalculateUsage`): every resource in `hard` some evaluator
/// measures, zero when nothing uses it. `counts` gives the number of stored
/// objects per `count/…` or legacy count name.
pub fn recompute(
    q: &ResourceQuota,
    hard: &Usage,
    pods: &[&Pod],
    services: &[&Service],
    counts: &BTreeMap<String, i64>,
    now: Timestamp,
) -> Usage {
    let mut used = Usage::new();
    let scoped = !scopes(q).is_empty();
    let pod_names = Evaluator::Pods.matching(hard.keys());
    for n in &pod_names {
        used.insert(n.clone(), Quantity::ZERO);
    }
    for p in pods.iter().filter(|p| matches_scopes(q, Some(p))) {
        used = add(&used, &mask(&pod_usage(p, now), &pod_names));
    }
    let svc_names = Evaluator::Services.matching(hard.keys());
    for n in &svc_names {
        used.insert(n.clone(), Quantity::ZERO);
    }
    if !scoped {
        for s in services {
            used = add(&used, &mask(&service_usage(s), &svc_names));
        }
    }
    for (name, n) in counts {
        if hard.contains_key(name) && !used.contains_key(name) {
            used.insert(
                name.clone(),
                Quantity::from_int(if scoped { 0 } else { *n }),
            );
        }
    }
    used
}

/// The `(group, plural)` a count quota name refers to, for names other
/// evaluators do not measure: `count/deployments.apps` →
/// `("apps", "deployments")`, `configmaps` → `("", "configmaps")`.
pub fn counted_resource(name: &str) -> Option<(String, String)> {
    if Evaluator::Pods.handles(name) || Evaluator::Services.handles(name) {
        return None;
    }
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    LEGACY_COUNTS
        .contains(&name)
        .then(|| (String::new(), name.to_string()))
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
