//! Unit tests of the core printers.

use super::*;

fn now() -> Timestamp {
    "2024-01-01T00:10:00Z".parse().expect("ts")
}

fn with_meta(mut v: Value) -> Value {
    v["metadata"] = json!({"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"});
    v
}

#[test]
fn service_rows() {
    let svc = with_meta(
        json!({"spec": {"type": "NodePort", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}}),
    );
    let c = cells(KindId::Service, &svc, now()).expect("svc");
    assert_eq!(
        c[1..7],
        [
            json!("NodePort"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("80:30080/TCP,53/UDP"),
            json!("10m"),
            json!("app=web")
        ]
    );
    let lb = json!({"spec": {"type": "LoadBalancer"}});
    assert_eq!(external_ip(&lb), "<pending>");
    let en = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
    assert_eq!(external_ip(&en), "example.com");
    assert_eq!(port_string(&json!({"spec": {}})), "<none>");
}

#[test]
fn endpoints_format() {
    let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]});
    assert_eq!(
        format_endpoints(&ep),
        "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
    );
    assert_eq!(format_endpoints(&json!({})), "<none>");
    assert_eq!(
        format_endpoints(&json!({"subsets": [{"addresses": [{"ip": "1.2.3.4"}]}]})),
        "1.2.3.4"
    );
}

#[test]
fn node_rows() {
    let node = with_meta(json!({"spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "False"}], "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}],
                   "nodeInfo": {"kubeletVersion": "v1.33.0-skiff"}}}));
    let mut node = node;
    node["metadata"]["labels"] = json!({"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/role": "edge"});
    let c = cells(KindId::Node, &node, now()).expect("node");
    assert_eq!(
        c[1..8],
        [
            json!("NotReady,SchedulingDisabled"),
            json!("control-plane,edge,worker"),
            json!("10m"),
            json!("v1.33.0-skiff"),
            json!("192.168.1.5"),
            json!("<none>"),
            json!("<unknown>")
        ]
    );
    assert_eq!(node_status(&json!({})), "Unknown");
    assert_eq!(node_roles(&json!({})), "<none>");
}

#[test]
fn simple_kinds() {
    let cm = with_meta(json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}}));
    assert_eq!(
        cells(KindId::ConfigMap, &cm, now()).expect("cm")[1],
        json!(3)
    );
    let sec = with_meta(json!({"type": "Opaque", "data": {"a": "MQ=="}}));
    assert_eq!(
        cells(KindId::Secret, &sec, now()).expect("secret")[1..3],
        [json!("Opaque"), json!(1)]
    );
    let ns = with_meta(json!({"status": {"phase": "Terminating"}}));
    assert_eq!(
        cells(KindId::Namespace, &ns, now()).expect("ns")[1],
        json!("Terminating")
    );
    let crd = with_meta(json!({}));
    assert_eq!(
        cells(KindId::CustomResourceDefinition, &crd, now()).expect("crd")[1],
        json!("2024-01-01T00:00:00Z")
    );
    let q = with_meta(
        json!({"status": {"hard": {"pods": "10", "limits.cpu": "2"}, "used": {"pods": "3"}}}),
    );
    assert_eq!(
        cells(KindId::ResourceQuota, &q, now()).expect("q")[2..4],
        [json!("pods: 3/10"), json!("limits.cpu: 0/2")]
    );
    for id in [
        KindId::Service,
        KindId::Node,
        KindId::Event,
        KindId::ResourceQuota,
        KindId::ComponentStatus,
    ] {
        let n = columns(id).expect("cols").len();
        assert_eq!(
            cells(id, &with_meta(json!({})), now())
                .expect("cells")
                .len(),
            n,
            "{id:?}"
        );
    }
}

#[test]
fn event_rows() {
    let ev = with_meta(
        json!({"type": "Warning", "reason": "BackOff", "message": " Back-off restarting \n",
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}"},
        "source": {"component": "kubelet", "host": "node-1"}, "count": 4,
        "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:09:00Z"}),
    );
    let c = cells(KindId::Event, &ev, now()).expect("event");
    assert_eq!(
        c,
        vec![
            json!("60s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web"),
            json!("spec.containers{a}"),
            json!("kubelet, node-1"),
            json!("Back-off restarting"),
            json!("10m"),
            json!(4),
            json!("x")
        ]
    );
    let single = with_meta(
        json!({"eventTime": "2024-01-01T00:05:00.000000Z", "involvedObject": {"kind": "Node"}, "reportingComponent": "sched"}),
    );
    let c = cells(KindId::Event, &single, now()).expect("event");
    assert_eq!(
        (c[0].clone(), c[3].clone(), c[5].clone(), c[8].clone()),
        (json!("5m"), json!("node"), json!("sched"), json!(1))
    );
}

#[test]
fn component_status_rows() {
    let cs = with_meta(
        json!({"conditions": [{"type": "Healthy", "status": "False", "message": "", "error": "connection refused"}]}),
    );
    assert_eq!(
        cells(KindId::ComponentStatus, &cs, now()).expect("cs")[1..4],
        [json!("Unhealthy"), json!(""), json!("connection refused")]
    );
}

#[test]
fn endpoint_slice_and_controller_revision_rows() {
    let slice = with_meta(json!({"addressType": "IPv4",
        "ports": [{"port": 80, "name": "http"}, {"name": "metrics"}, {}, {"port": 9}],
        "endpoints": [{"addresses": ["10.244.0.5"]}, {"addresses": ["10.244.0.6"]}]}));
    let c = cells(KindId::EndpointSlice, &slice, now()).expect("slice");
    assert_eq!(
        c,
        [
            json!("x"),
            json!("IPv4"),
            json!("80,metrics,* + 1 more..."),
            json!("10.244.0.5,10.244.0.6"),
            json!("10m")
        ]
    );
    let empty = with_meta(json!({"addressType": "IPv4", "endpoints": []}));
    assert_eq!(
        cells(KindId::EndpointSlice, &empty, now()).expect("empty")[2..4],
        [json!("<unset>"), json!("<unset>")]
    );
    let mut rev = with_meta(json!({"revision": 3, "data": {}}));
    rev["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet",
        "name": "web", "uid": "u", "controller": true}]);
    assert_eq!(
        cells(KindId::ControllerRevision, &rev, now()).expect("rev"),
        [
            json!("x"),
            json!("statefulset.apps/web"),
            json!(3),
            json!("10m")
        ]
    );
    let orphan = with_meta(json!({"revision": 1}));
    assert_eq!(
        cells(KindId::ControllerRevision, &orphan, now()).expect("orphan")[1],
        json!("<none>")
    );
    assert_eq!(columns(KindId::EndpointSlice).map(|c| c.len()), Some(5));
    assert_eq!(
        columns(KindId::ControllerRevision).map(|c| c.len()),
        Some(4)
    );
}
