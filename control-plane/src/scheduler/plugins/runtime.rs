//! RuntimeFit, Skiff's own filter: a pod lands only on a node whose
//! runtimes can run it.
//!
//! A node's runtimes are the names in `status.runtimeHandlers`. A node that
//! reports none is taken to be a plain OCI kubelet: it runs any handler but
//! `wasmtime`. A pod that needs a named handler (RuntimeClass or the
//! `skiff.dev/runtime` annotation, see `pod_info`) needs that name; a pod
//! with `.wasm` images needs `wasmtime`; a pod with other images needs an
//! OCI handler (any reported name other than `wasmtime`).

use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::{PodInfo, WASMTIME_HANDLER};

use super::{Code, FilterResult, Status};

/// Reason when no OCI handler is available.
pub const ERR_NO_OCI: &str = "node(s) didn't have an OCI runtime handler";

fn has_handler(node: &NodeInfo, handler: &str) -> bool {
    match &node.runtime_handlers {
        Some(list) => list.iter().any(|h| h == handler),
        None => handler != WASMTIME_HANDLER,
    }
}

fn has_oci(node: &NodeInfo) -> bool {
    match &node.runtime_handlers {
        Some(list) => list.iter().any(|h| h != WASMTIME_HANDLER),
        None => true,
    }
}

fn missing(handler: &str) -> Status {
    Status::new(
        Code::Unresolvable,
        format!("node(s) didn't have runtime handler {handler:?}"),
    )
}

/// The RuntimeFit filter.
pub fn runtime_fit(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let need = &pod.runtime;
    if let Some(h) = &need.handler {
        return if has_handler(node, h) {
            Ok(())
        } else {
            Err(missing(h))
        };
    }
    if need.wasm && !has_handler(node, WASMTIME_HANDLER) {
        return Err(missing(WASMTIME_HANDLER));
    }
    if need.oci && !has_oci(node) {
        return Err(Status::new(Code::Unresolvable, ERR_NO_OCI));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::testing::{node, pod};
    use serde_json::json;

    fn with_handlers(h: serde_json::Value) -> NodeInfo {
        NodeInfo::new(node("n", json!({"status": {"runtimeHandlers": h}})))
    }

    fn image_pod(images: &[&str]) -> std::sync::Arc<PodInfo> {
        let cs: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
            .collect();
        pod("p", json!({"spec": {"containers": cs}}))
    }

    #[test]
    fn wasm_pods_need_wasmtime() {
        let wasm = image_pod(&["hello.wasm"]);
        let plain = NodeInfo::new(node("n", json!({})));
        assert_eq!(
            runtime_fit(&wasm, &plain).err().map(|s| s.reasons),
            Some(vec![
                "node(s) didn't have runtime handler \"wasmtime\"".to_string()
            ])
        );
        assert!(runtime_fit(&wasm, &with_handlers(json!([{"name": "wasmtime"}]))).is_ok());
        assert!(runtime_fit(&wasm, &with_handlers(json!([{"name": "docker"}]))).is_err());
    }

    #[test]
    fn oci_pods_need_an_oci_handler() {
        let oci = image_pod(&["nginx"]);
        assert!(
            runtime_fit(&oci, &NodeInfo::new(node("n", json!({})))).is_ok(),
            "unreported = OCI"
        );
        assert!(runtime_fit(&oci, &with_handlers(json!([{"name": "docker"}]))).is_ok());
        assert!(
            runtime_fit(&oci, &with_handlers(json!([{"name": ""}]))).is_ok(),
            "default handler"
        );
        assert_eq!(
            runtime_fit(&oci, &with_handlers(json!([{"name": "wasmtime"}])))
                .err()
                .map(|s| s.reasons),
            Some(vec![ERR_NO_OCI.to_string()])
        );
    }

    #[test]
    fn mixed_pods_need_both() {
        let mixed = image_pod(&["hello.wasm", "nginx"]);
        assert!(
            runtime_fit(
                &mixed,
                &with_handlers(json!([{"name": "wasmtime"}, {"name": "docker"}]))
            )
            .is_ok()
        );
        assert!(runtime_fit(&mixed, &with_handlers(json!([{"name": "wasmtime"}]))).is_err());
        assert!(runtime_fit(&mixed, &with_handlers(json!([{"name": "docker"}]))).is_err());
    }

    #[test]
    fn named_handlers() {
        let annotated = pod(
            "p",
            json!({"metadata": {"annotations": {"skiff.dev/runtime": "wasmtime"}}}),
        );
        assert!(runtime_fit(&annotated, &with_handlers(json!([{"name": "wasmtime"}]))).is_ok());
        assert!(runtime_fit(&annotated, &NodeInfo::new(node("n", json!({})))).is_err());
        let gvisor = pod("p", json!({"spec": {"runtimeClassName": "runsc"}}));
        assert!(
            runtime_fit(&gvisor, &NodeInfo::new(node("n", json!({})))).is_ok(),
            "unreported: any but wasmtime"
        );
        assert!(runtime_fit(&gvisor, &with_handlers(json!([{"name": "docker"}]))).is_err());
    }
}
