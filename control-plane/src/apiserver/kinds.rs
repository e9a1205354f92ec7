//! The built-in kinds, as data: one [`ResourceInfo`] per kind plus a
//! [`KindId`] that selects the kind-specific behaviour (defaulting,
//! validation, printing) in the modules that implement it.
//!
//! Short names, categories, verbs and subresources follow Kubernetes 1.33's
//! discovery documents. The order of the list is the discovery order.

use std::sync::Arc;

use super::resource::{ResourceInfo, Scope, Subresource};

/// The kind-specific behaviour selector. Custom resources are `Custom`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KindId {
    /// core/v1 ComponentStatus (read-only, computed).
    ComponentStatus,
    /// core/v1 ConfigMap.
    ConfigMap,
    /// core/v1 Endpoints.
    Endpoints,
    /// core/v1 Event.
    Event,
    /// events.k8s.io/v1 Event (stored as core/v1 Events).
    EventV1,
    /// core/v1 LimitRange.
    LimitRange,
    /// core/v1 Namespace.
    Namespace,
    /// core/v1 Node.
    Node,
    /// core/v1 Pod.
    Pod,
    /// core/v1 ResourceQuota.
    ResourceQuota,
    /// core/v1 Secret.
    Secret,
    /// core/v1 ServiceAccount.
    ServiceAccount,
    /// core/v1 Service.
    Service,
    /// apps/v1 ControllerRevision (StatefulSet and DaemonSet history).
    ControllerRevision,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// batch/v1 CronJob.
    CronJob,
    /// batch/v1 Job.
    Job,
    /// coordination.k8s.io/v1 Lease.
    Lease,
    /// node.k8s.io/v1 RuntimeClass.
    RuntimeClass,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// apiextensions.k8s.io/v1 CustomResourceDefinition.
    CustomResourceDefinition,
    /// A custom resource served from a CRD.
    Custom,
}

/// A registry entry: the public [`ResourceInfo`] plus server-side extras.
#[derive(Clone, Debug)]
pub struct Resource {
    /// What discovery, OpenAPI and the handlers need.
    pub info: ResourceInfo,
    /// Which kind-specific behaviour applies.
    pub id: KindId,
    /// For custom resources: the CRD-derived extras.
    pub custom: Option<Arc<super::crd::CustomInfo>>,
}

impl Resource {
    /// The group-qualified resource for messages.
    pub fn group_resource(&self) -> super::errors::GroupResource {
        super::errors::GroupResource::new(self.info.group.clone(), self.info.plural.clone())
    }

    /// True if the given subresource is served.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.info.subresources.iter().any(|s| s.name == name)
    }

    /// The group used in storage keys (shared by all versions of a group;
    /// events.k8s.io Events live with core Events).
    pub fn storage_group(&self) -> &str {
        if self.id == KindId::EventV1 {
            ""
        } else {
            &self.info.group
        }
    }
}

/// The verbs of an ordinary read-write resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];

/// The `status` subresource of a kind.
pub fn status_sub(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: GET_PATCH_UPDATE,
    }
}

/// The `scale` subresource (autoscaling/v1 Scale).
pub fn scale_sub() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: GET_PATCH_UPDATE,
    }
}

fn sub(name: &'static str, kind: &'static str, verbs: &'static [&'static str]) -> Subresource {
    Subresource {
        name,
        group: "",
        version: "v1",
        kind,
        verbs,
    }
}

struct Spec {
    id: KindId,
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    scope: Scope,
    short: &'static [&'static str],
    all: bool,
    verbs: &'static [&'static str],
    subs: Vec<Subresource>,
}

fn build(s: Spec) -> Resource {
    let has_status = s.subs.iter().any(|x| x.name == "status");
    Resource {
        info: ResourceInfo {
            group: s.group.to_string(),
            version: "v1".to_string(),
            kind: s.kind.to_string(),
            list_kind: format!("{}List", s.kind),
            plural: s.plural.to_string(),
            singular: s.kind.to_ascii_lowercase(),
            scope: s.scope,
            short_names: s.short.iter().map(|x| x.to_string()).collect(),
            categories: if s.all {
                vec!["all".to_string()]
            } else {
                Vec::new()
            },
            verbs: s.verbs.to_vec(),
            subresources: s.subs,
            has_status_subresource: has_status,
            crd_schema: None,
        },
        id: s.id,
        custom: None,
    }
}

/// Every built-in kind, in discovery order.
pub fn builtin_resources() -> Vec<Resource> {
    use KindId as K;
    use Scope::{Cluster, Namespaced};
    let st = |group: &'static str, kind: &'static str| status_sub(group, "v1", kind);
    let specs = vec![
        // core/v1, alphabetical like the real discovery document.
        Spec {
            id: K::ComponentStatus,
            group: "",
            kind: "ComponentStatus",
            plural: "componentstatuses",
            scope: Cluster,
            short: &["cs"],
            all: false,
            verbs: &["get", "list"],
            subs: vec![],
        },
        Spec {
            id: K::ConfigMap,
            group: "",
            kind: "ConfigMap",
            plural: "configmaps",
            scope: Namespaced,
            short: &["cm"],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        Spec {
            id: K::Endpoints,
            group: "",
            kind: "Endpoints",
            plural: "endpoints",
            scope: Namespaced,
            short: &["ep"],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        Spec {
            id: K::Event,
            group: "",
            kind: "Event",
            plural: "events",
            scope: Namespaced,
            short: &["ev"],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        Spec {
            id: K::LimitRange,
            group: "",
            kind: "LimitRange",
            plural: "limitranges",
            scope: Namespaced,
            short: &["limits"],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        Spec {
            id: K::Namespace,
            group: "",
            kind: "Namespace",
            plural: "namespaces",
            scope: Cluster,
            short: &["ns"],
            all: false,
            verbs: &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ],
            subs: vec![
                sub("finalize", "Namespace", &["update"]),
                st("", "Namespace"),
            ],
        },
        Spec {
            id: K::Node,
            group: "",
            kind: "Node",
            plural: "nodes",
            scope: Cluster,
            short: &["no"],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![
                sub(
                    "proxy",
                    "NodeProxyOptions",
                    &["create", "delete", "get", "patch", "update"],
                ),
                st("", "Node"),
            ],
        },
        Spec {
            id: K::Pod,
            group: "",
            kind: "Pod",
            plural: "pods",
            scope: Namespaced,
            short: &["po"],
            all: true,
            verbs: ALL_VERBS,
            subs: vec![
                sub("attach", "PodAttachOptions", &["create", "get"]),
                sub("binding", "Binding", &["create"]),
                sub("exec", "PodExecOptions", &["create", "get"]),
                sub("log", "Pod", &["get"]),
                sub("portforward", "PodPortForwardOptions", &["create", "get"]),
                st("", "Pod"),
            ],
        },
        Spec {
            id: K::ResourceQuota,
            group: "",
            kind: "ResourceQuota",
            plural: "resourcequotas",
            scope: Namespaced,
            short: &["quota"],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![st("", "ResourceQuota")],
        },
        Spec {
            id: K::Secret,
            group: "",
            kind: "Secret",
            plural: "secrets",
            scope: Namespaced,
            short: &[],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        Spec {
            id: K::ServiceAccount,
            group: "",
            kind: "ServiceAccount",
            plural: "serviceaccounts",
            scope: Namespaced,
            short: &["sa"],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        Spec {
            id: K::Service,
            group: "",
            kind: "Service",
            plural: "services",
            scope: Namespaced,
            short: &["svc"],
            all: true,
            verbs: &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
            subs: vec![st("", "Service")],
        },
        // apps/v1
        Spec {
            id: K::ControllerRevision,
            group: "apps",
            kind: "ControllerRevision",
            plural: "controllerrevisions",
            scope: Namespaced,
            short: &[],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        Spec {
            id: K::DaemonSet,
            group: "apps",
            kind: "DaemonSet",
            plural: "daemonsets",
            scope: Namespaced,
            short: &["ds"],
            all: true,
            verbs: ALL_VERBS,
            subs: vec![st("apps", "DaemonSet")],
        },
        Spec {
            id: K::Deployment,
            group: "apps",
            kind: "Deployment",
            plural: "deployments",
            scope: Namespaced,
            short: &["deploy"],
            all: true,
            verbs: ALL_VERBS,
            subs: vec![scale_sub(), st("apps", "Deployment")],
        },
        Spec {
            id: K::ReplicaSet,
            group: "apps",
            kind: "ReplicaSet",
            plural: "replicasets",
            scope: Namespaced,
            short: &["rs"],
            all: true,
            verbs: ALL_VERBS,
            subs: vec![scale_sub(), st("apps", "ReplicaSet")],
        },
        Spec {
            id: K::StatefulSet,
            group: "apps",
            kind: "StatefulSet",
            plural: "statefulsets",
            scope: Namespaced,
            short: &["sts"],
            all: true,
            verbs: ALL_VERBS,
            subs: vec![scale_sub(), st("apps", "StatefulSet")],
        },
        // batch/v1
        Spec {
            id: K::CronJob,
            group: "batch",
            kind: "CronJob",
            plural: "cronjobs",
            scope: Namespaced,
            short: &["cj"],
            all: true,
            verbs: ALL_VERBS,
            subs: vec![st("batch", "CronJob")],
        },
        Spec {
            id: K::Job,
            group: "batch",
            kind: "Job",
            plural: "jobs",
            scope: Namespaced,
            short: &[],
            all: true,
            verbs: ALL_VERBS,
            subs: vec![st("batch", "Job")],
        },
        // coordination.k8s.io/v1
        Spec {
            id: K::Lease,
            group: "coordination.k8s.io",
            kind: "Lease",
            plural: "leases",
            scope: Namespaced,
            short: &[],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        // events.k8s.io/v1
        Spec {
            id: K::EventV1,
            group: "events.k8s.io",
            kind: "Event",
            plural: "events",
            scope: Namespaced,
            short: &["ev"],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        // node.k8s.io/v1
        Spec {
            id: K::RuntimeClass,
            group: "node.k8s.io",
            kind: "RuntimeClass",
            plural: "runtimeclasses",
            scope: Cluster,
            short: &[],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        // discovery.k8s.io/v1
        Spec {
            id: K::EndpointSlice,
            group: "discovery.k8s.io",
            kind: "EndpointSlice",
            plural: "endpointslices",
            scope: Namespaced,
            short: &[],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![],
        },
        // apiextensions.k8s.io/v1
        Spec {
            id: K::CustomResourceDefinition,
            group: "apiextensions.k8s.io",
            kind: "CustomResourceDefinition",
            plural: "customresourcedefinitions",
            scope: Cluster,
            short: &["crd", "crds"],
            all: false,
            verbs: ALL_VERBS,
            subs: vec![st("apiextensions.k8s.io", "CustomResourceDefinition")],
        },
    ];
    specs.into_iter().map(build).collect()
}

/// Kinds whose HTTP DELETE answers with the deleted object rather than a
/// `Success` Status (Kubernetes' `ReturnDeletedObject`).
pub fn returns_deleted_object(id: KindId) -> bool {
    matches!(
        id,
        KindId::Pod | KindId::Service | KindId::Namespace | KindId::CustomResourceDefinition
    )
}

/// Kinds for which a PUT of a missing object creates it (`AllowCreateOnUpdate`).
pub fn allows_create_on_update(id: KindId) -> bool {
    matches!(
        id,
        KindId::Service | KindId::Endpoints | KindId::Event | KindId::Lease | KindId::LimitRange
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(plural: &str) -> Resource {
        builtin_resources()
            .into_iter()
            .find(|r| r.info.plural == plural)
            .unwrap_or_else(|| panic!("{plural} missing"))
    }

    #[test]
    fn short_names_match_kubernetes() {
        let expect = [
            ("pods", vec!["po"]),
            ("services", vec!["svc"]),
            ("deployments", vec!["deploy"]),
            ("replicasets", vec!["rs"]),
            ("daemonsets", vec!["ds"]),
            ("statefulsets", vec!["sts"]),
            ("namespaces", vec!["ns"]),
            ("nodes", vec!["no"]),
            ("configmaps", vec!["cm"]),
            ("events", vec!["ev"]),
            ("serviceaccounts", vec!["sa"]),
            ("resourcequotas", vec!["quota"]),
            ("limitranges", vec!["limits"]),
            ("endpoints", vec!["ep"]),
            ("cronjobs", vec!["cj"]),
            ("customresourcedefinitions", vec!["crd", "crds"]),
            ("componentstatuses", vec!["cs"]),
        ];
        for (plural, short) in expect {
            assert_eq!(find(plural).info.short_names, short, "{plural}");
        }
    }

    #[test]
    fn category_all_is_exactly_the_kubernetes_set() {
        let mut all: Vec<String> = builtin_resources()
            .into_iter()
            .filter(|r| r.info.categories.iter().any(|c| c == "all"))
            .map(|r| r.info.plural)
            .collect();
        all.sort();
        assert_eq!(
            all,
            [
                "cronjobs",
                "daemonsets",
                "deployments",
                "jobs",
                "pods",
                "replicasets",
                "services",
                "statefulsets"
            ]
        );
    }

    #[test]
    fn scale_is_autoscaling_v1() {
        let d = find("deployments");
        let s = d
            .info
            .subresources
            .iter()
            .find(|s| s.name == "scale")
            .expect("scale");
        assert_eq!((s.group, s.version, s.kind), ("autoscaling", "v1", "Scale"));
        assert!(d.info.has_status_subresource);
        assert!(!find("configmaps").info.has_status_subresource);
    }

    #[test]
    fn list_kinds_and_singulars() {
        let p = find("pods");
        assert_eq!(
            (p.info.list_kind.as_str(), p.info.singular.as_str()),
            ("PodList", "pod")
        );
        assert_eq!(find("endpoints").info.list_kind, "EndpointsList");
        assert_eq!(
            find("customresourcedefinitions").info.singular,
            "customresourcedefinition"
        );
    }
}
