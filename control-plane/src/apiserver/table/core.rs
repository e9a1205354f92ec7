//! Printers for core kinds and a few others: services, endpoints, nodes,
//! namespaces, config maps, secrets, service accounts, events, leases,
//! runtime classes, quotas, limit ranges, component statuses, CRDs,
//! endpoint slices and controller revisions.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{Column, age, age_col, col, format_labels, name_col};
use crate::apiserver::kinds::KindId;
use crate::apiserver::objects;

/// Columns of a kind handled here.
pub fn columns(id: KindId) -> Option<Vec<Column>> {
    let s = |n: &str, d: &str| col(n, "string", d, 0);
    let wide = |n: &str, d: &str| col(n, "string", d, 1);
    Some(match id {
        KindId::Service => vec![
            name_col(),
            s("Type", "type determines how the Service is exposed."),
            s(
                "Cluster-IP",
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            s(
                "External-IP",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            s(
                "Port(s)",
                "The list of ports that are exposed by this service.",
            ),
            age_col(),
            wide(
                "Selector",
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        KindId::Endpoints => vec![
            name_col(),
            s("Endpoints", "Endpoints of this service"),
            age_col(),
        ],
        KindId::EndpointSlice => vec![
            name_col(),
            s(
                "AddressType",
                "addressType specifies the type of address carried by this EndpointSlice.",
            ),
            s(
                "Ports",
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            s(
                "Endpoints",
                "endpoints is a list of unique endpoints in this slice.",
            ),
            age_col(),
        ],
        KindId::ControllerRevision => vec![
            name_col(),
            s("Controller", "Controller of the object"),
            s(
                "Revision",
                "Revision indicates the revision of the state represented by Data.",
            ),
            age_col(),
        ],
        KindId::Node => vec![
            name_col(),
            s("Status", "The status of the node"),
            s("Roles", "The roles of the node"),
            age_col(),
            s("Version", "Kubelet Version reported by the node."),
            wide(
                "Internal-IP",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            wide(
                "External-IP",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            wide(
                "OS-Image",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            wide(
                "Kernel-Version",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            wide(
                "Container-Runtime",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        KindId::Namespace => vec![
            name_col(),
            s("Status", "The status of the namespace"),
            age_col(),
        ],
        KindId::ConfigMap => vec![
            name_col(),
            col(
                "Data",
                "integer",
                "Data contains the configuration data.",
                0,
            ),
            age_col(),
        ],
        KindId::Secret => vec![
            name_col(),
            s(
                "Type",
                "Used to facilitate programmatic handling of secret data.",
            ),
            col("Data", "integer", "Data contains the secret data.", 0),
            age_col(),
        ],
        KindId::ServiceAccount => vec![
            name_col(),
            col(
                "Secrets",
                "integer",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                0,
            ),
            age_col(),
        ],
        KindId::Event => vec![
            s(
                "Last Seen",
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            s(
                "Type",
                "Type of this event (Normal, Warning), new types could be added in the future.",
            ),
            s(
                "Reason",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            s("Object", "The object that this event is about."),
            wide("Subobject", "The field of the object this event is about."),
            wide("Source", "The component reporting this event."),
            s(
                "Message",
                "A human-readable description of the status of this operation.",
            ),
            wide(
                "First Seen",
                "The time at which the event was first recorded.",
            ),
            wide("Count", "The number of times this event has occurred."),
            Column {
                format: "name".into(),
                ..wide("Name", "Name of the event.")
            },
        ],
        KindId::Lease => vec![
            name_col(),
            s("Holder", "The holder of the lease"),
            age_col(),
        ],
        KindId::RuntimeClass => vec![
            name_col(),
            s(
                "Handler",
                "Handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
            ),
            age_col(),
        ],
        KindId::ResourceQuota => vec![
            name_col(),
            age_col(),
            s(
                "Request",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            s(
                "Limit",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ],
        KindId::LimitRange => vec![
            name_col(),
            col(
                "Created At",
                "date",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
                0,
            ),
        ],
        KindId::ComponentStatus => vec![
            name_col(),
            s("Status", "Status of the component conditions"),
            s("Message", "Message of the component conditions"),
            s("Error", "Error of the component conditions"),
        ],
        KindId::CustomResourceDefinition => vec![
            name_col(),
            col(
                "Created At",
                "date",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
                0,
            ),
        ],
        _ => return None,
    })
}

/// Up to three items joined by commas, then `+ N more...`; `<unset>` for
/// none (`listWithMoreString`).
fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    let shown = items
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else if shown.is_empty() {
        "<unset>".to_string()
    } else {
        shown
    }
}

fn arr<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    objects::path(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn map_len(v: &Value, path: &str) -> usize {
    objects::path(v, path)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// `makePortString`.
pub fn port_string(svc: &Value) -> String {
    let ports: Vec<String> = arr(svc, "spec.ports")
        .iter()
        .map(|p| {
            let port = p["port"].as_i64().unwrap_or(0);
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n > 0) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn external_ip(svc: &Value) -> String {
    let ext: Vec<&str> = arr(svc, "spec.externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match objects::path_str(svc, "spec.type") {
        "ClusterIP" | "NodePort" | "" => {
            if ext.is_empty() {
                "<none>".into()
            } else {
                ext.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<&str> = arr(svc, "status.loadBalancer.ingress")
                .iter()
                .filter_map(|i| i["ip"].as_str().or_else(|| i["hostname"].as_str()))
                .collect();
            ips.extend(ext);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => objects::path_str(svc, "spec.externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

/// `formatEndpoints` with at most three entries shown.
pub fn format_endpoints(ep: &Value) -> String {
    let subsets = arr(ep, "subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let (mut list, mut count, mut more) = (Vec::new(), 0usize, false);
    for ss in subsets {
        let addrs = arr(ss, "addresses");
        let ports = arr(ss, "ports");
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(a["ip"].as_str().unwrap_or("").to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                let ip = a["ip"].as_str().unwrap_or("");
                let port = p["port"].as_i64().unwrap_or(0);
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - max)
    } else {
        joined
    }
}

/// Node roles from `node-role.kubernetes.io/<role>` and `kubernetes.io/role` labels.
pub fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in objects::string_map(node, "labels") {
        if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
            if !r.is_empty() {
                roles.insert(r.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v.to_string());
        }
    }
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

/// Node status: `Ready`/`NotReady`/`Unknown`, plus `SchedulingDisabled`.
pub fn node_status(node: &Value) -> String {
    let mut status = Vec::new();
    if let Some(c) = arr(node, "status.conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
    {
        status.push(if c["status"] == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if objects::path(node, "spec.unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

fn node_address(node: &Value, ty: &str) -> String {
    arr(node, "status.addresses")
        .iter()
        .find(|a| a["type"] == ty)
        .and_then(|a| a["address"].as_str())
        .unwrap_or("<none>")
        .to_string()
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "<unknown>" } else { s }
}

fn quota_usage(q: &Value, limits: bool) -> String {
    let hard = objects::path(q, "status.hard")
        .or_else(|| objects::path(q, "spec.hard"))
        .and_then(Value::as_object);
    let used = objects::path(q, "status.used").and_then(Value::as_object);
    let mut parts = Vec::new();
    if let Some(hard) = hard {
        let mut keys: Vec<&String> = hard.keys().collect();
        keys.sort();
        for k in keys {
            if k.starts_with("limits.") != limits {
                continue;
            }
            let u = used
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or("0");
            let h = hard[k]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| hard[k].to_string());
            parts.push(format!("{k}: {u}/{h}"));
        }
    }
    parts.join(", ")
}

fn event_cells(ev: &Value, now: Timestamp) -> Vec<Value> {
    let ts = |p: &str| {
        objects::path(ev, p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let first = match ts("firstTimestamp") {
        Some(t) => super::age::since(Some(t), now),
        None => super::age::since(ts("eventTime"), now),
    };
    let mut last = match ts("lastTimestamp") {
        Some(t) => super::age::since(Some(t), now),
        None => first.clone(),
    };
    let mut count = objects::path_i64(ev, "count");
    if ev.get("series").is_some_and(|s| s.is_object()) {
        last = super::age::since(ts("series.lastObservedTime"), now);
        count = objects::path_i64(ev, "series.count");
    } else if count == 0 {
        count = 1;
    }
    let kind = objects::path_str(ev, "involvedObject.kind").to_ascii_lowercase();
    let iname = objects::path_str(ev, "involvedObject.name");
    let target = if iname.is_empty() {
        kind
    } else {
        format!("{kind}/{iname}")
    };
    let component = Some(objects::path_str(ev, "source.component"))
        .filter(|s| !s.is_empty())
        .unwrap_or(objects::path_str(ev, "reportingComponent"));
    let host = Some(objects::path_str(ev, "source.host"))
        .filter(|s| !s.is_empty())
        .unwrap_or(objects::path_str(ev, "reportingInstance"));
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(objects::path_str(ev, "type")),
        json!(objects::path_str(ev, "reason")),
        json!(target),
        json!(objects::path_str(ev, "involvedObject.fieldPath")),
        json!(source),
        json!(objects::path_str(ev, "message").trim()),
        json!(first),
        json!(count),
        json!(objects::name(ev)),
    ]
}

/// Cells of a kind handled here.
pub fn cells(id: KindId, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    let name = json!(objects::name(obj));
    let age_s = json!(age(obj, now));
    Some(match id {
        KindId::Service => vec![
            name,
            json!(objects::path_str(obj, "spec.type")),
            json!(
                arr(obj, "spec.clusterIPs")
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or("<none>")
            ),
            json!(external_ip(obj)),
            json!(port_string(obj)),
            age_s,
            json!(format_labels(obj.pointer("/spec/selector"))),
        ],
        KindId::Endpoints => vec![name, json!(format_endpoints(obj)), age_s],
        KindId::EndpointSlice => {
            let ports: Vec<String> = arr(obj, "ports")
                .iter()
                .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(name)) => name.to_string(),
                    (None, None) => "*".to_string(),
                })
                .collect();
            let addresses: Vec<String> = arr(obj, "endpoints")
                .iter()
                .flat_map(|e| arr(e, "addresses"))
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            vec![
                name,
                json!(objects::path_str(obj, "addressType")),
                json!(list_with_more(&ports)),
                json!(list_with_more(&addresses)),
                age_s,
            ]
        }
        KindId::ControllerRevision => {
            let controller = objects::path(obj, "metadata.ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| refs.iter().find(|r| r["controller"] == json!(true)))
                .map_or_else(
                    || "<none>".to_string(),
                    |r| {
                        let kind = r["kind"].as_str().unwrap_or("").to_lowercase();
                        let group = r["apiVersion"]
                            .as_str()
                            .and_then(|av| av.rsplit_once('/'))
                            .map_or("", |(g, _)| g);
                        let name = r["name"].as_str().unwrap_or("");
                        if group.is_empty() {
                            format!("{kind}/{name}")
                        } else {
                            format!("{kind}.{group}/{name}")
                        }
                    },
                );
            vec![
                name,
                json!(controller),
                json!(objects::path_i64(obj, "revision")),
                age_s,
            ]
        }
        KindId::Node => vec![
            name,
            json!(node_status(obj)),
            json!(node_roles(obj)),
            age_s,
            json!(objects::path_str(obj, "status.nodeInfo.kubeletVersion")),
            json!(node_address(obj, "InternalIP")),
            json!(node_address(obj, "ExternalIP")),
            json!(or_unknown(objects::path_str(
                obj,
                "status.nodeInfo.osImage"
            ))),
            json!(or_unknown(objects::path_str(
                obj,
                "status.nodeInfo.kernelVersion"
            ))),
            json!(or_unknown(objects::path_str(
                obj,
                "status.nodeInfo.containerRuntimeVersion"
            ))),
        ],
        KindId::Namespace => vec![name, json!(objects::path_str(obj, "status.phase")), age_s],
        KindId::ConfigMap => vec![
            name,
            json!(map_len(obj, "data") + map_len(obj, "binaryData")),
            age_s,
        ],
        KindId::Secret => vec![
            name,
            json!(objects::path_str(obj, "type")),
            json!(map_len(obj, "data") + map_len(obj, "stringData")),
            age_s,
        ],
        KindId::ServiceAccount => vec![name, json!(arr(obj, "secrets").len()), age_s],
        KindId::Event => event_cells(obj, now),
        KindId::Lease => vec![
            name,
            json!(objects::path_str(obj, "spec.holderIdentity")),
            age_s,
        ],
        KindId::RuntimeClass => vec![name, json!(objects::path_str(obj, "handler")), age_s],
        KindId::ResourceQuota => vec![
            name,
            age_s,
            json!(quota_usage(obj, false)),
            json!(quota_usage(obj, true)),
        ],
        KindId::LimitRange | KindId::CustomResourceDefinition => {
            vec![
                name,
                json!(objects::meta_str(obj, "creationTimestamp").unwrap_or("")),
            ]
        }
        KindId::ComponentStatus => {
            let c = arr(obj, "conditions")
                .iter()
                .find(|c| c["type"] == "Healthy")
                .cloned()
                .unwrap_or(Value::Null);
            let status = match c["status"].as_str() {
                Some("True") => "Healthy",
                Some("False") => "Unhealthy",
                _ => "Unknown",
            };
            vec![
                name,
                json!(status),
                json!(c["message"].as_str().unwrap_or("")),
                json!(c["error"].as_str().unwrap_or("")),
            ]
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
