//! Protobuf decoding tests: real bodies captured from kubectl 1.33 compared
//! with the JSON kubectl 1.31 sends for the same commands, and objects
//! encoded independently with the `k8s-pb` crate.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};

use super::*;

macro_rules! golden {
    ($name:literal) => {
        (
            include_bytes!(concat!("testdata/", $name, ".pb")).as_slice(),
            include_str!(concat!("testdata/", $name, ".json")),
        )
    };
}

#[test]
fn real_kubectl_bodies_decode_to_the_json_kubectl_sends() {
    let cases = [
        golden!("namespace"),
        golden!("configmap"),
        golden!("secret"),
        golden!("serviceaccount"),
        golden!("tokenrequest"),
        golden!("service"),
        golden!("selfsubjectaccessreview"),
        golden!("job"),
        golden!("cronjob"),
        golden!("role"),
        golden!("deployment"),
        golden!("deployment_zero_replicas"),
    ];
    for (pb, json_text) in cases {
        let expected: Value = serde_json::from_str(json_text).expect("golden JSON");
        let decoded = decode(pb).expect("decode");
        assert_eq!(decoded, expected, "kind {}", expected["kind"]);
    }
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_string(),
                Quantity {
                    string: Some((*v).to_string()),
                },
            )
        })
        .collect()
}

#[test]
fn full_deployment_template_round_trips() {
    let container = core::Container {
        name: Some("web".into()),
        image: Some("nginx:1.25".into()),
        args: vec!["--port".into(), "8080".into()],
        ports: vec![core::ContainerPort {
            name: Some("http".into()),
            container_port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }],
        env: vec![
            core::EnvVar {
                name: Some("MODE".into()),
                value: Some("prod".into()),
                value_from: None,
            },
            core::EnvVar {
                name: Some("POD".into()),
                value: None,
                value_from: Some(core::EnvVarSource {
                    field_ref: Some(core::ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: Some("metadata.name".into()),
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: quantities(&[("cpu", "500m"), ("memory", "128Mi")]),
            requests: quantities(&[("cpu", "100m")]),
            claims: vec![],
        }),
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: Some("/healthz".into()),
                    port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("http".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction {
                    port: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: None,
                    }),
                    host: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: vec![core::VolumeMount {
            name: Some("config".into()),
            mount_path: Some("/etc/app".into()),
            read_only: Some(true),
            ..Default::default()
        }],
        ..Default::default()
    };
    let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some("web".into()),
            namespace: Some("prod".into()),
            labels: labels.clone(),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            owner_references: vec![meta::OwnerReference {
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
                name: Some("owner".into()),
                uid: Some("u-1".into()),
                controller: Some(false),
                block_owner_deletion: None,
            }],
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    volumes: vec![
                        core::Volume {
                            name: Some("config".into()),
                            volume_source: Some(core::VolumeSource {
                                config_map: Some(core::ConfigMapVolumeSource {
                                    local_object_reference: Some(core::LocalObjectReference {
                                        name: Some("app-config".into()),
                                    }),
                                    default_mode: Some(0o644),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                        },
                        core::Volume {
                            name: Some("scratch".into()),
                            volume_source: Some(core::VolumeSource {
                                empty_dir: Some(core::EmptyDirVolumeSource {
                                    medium: None,
                                    size_limit: Some(Quantity {
                                        string: Some("1Gi".into()),
                                    }),
                                }),
                                ..Default::default()
                            }),
                        },
                    ],
                    restart_policy: Some("Always".into()),
                    termination_grace_period_seconds: Some(0),
                    node_selector: [("disk".to_string(), "ssd".to_string())].into(),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("25%".into()),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: None,
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let body = envelope("apps/v1", "Deployment", deployment.encode_to_vec());
    let decoded = decode(&body).expect("decode");
    let expected = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"},
            "creationTimestamp": "2023-11-14T22:13:20Z",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "u-1", "controller": false}]},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web", "image": "nginx:1.25", "args": ["--port", "8080"],
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "env": [{"name": "MODE", "value": "prod"},
                                {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5, "periodSeconds": 10},
                        "readinessProbe": {"tcpSocket": {"port": 8080}},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true}]
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "app-config", "defaultMode": 420}},
                        {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}
                    ],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 0,
                    "nodeSelector": {"disk": "ssd"}
                }
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}}
        }
    });
    assert_eq!(decoded, expected);
}

#[test]
fn secrets_bytes_and_negative_numbers() {
    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: Some("s".into()),
            ..Default::default()
        }),
        data: [("bin".to_string(), vec![0u8, 1, 2, 255])].into(),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let decoded = decode(&envelope("v1", "Secret", secret.encode_to_vec())).expect("secret");
    assert_eq!(decoded["data"], json!({"bin": "AAEC/w=="}));
    assert_eq!(decoded["type"], "Opaque");

    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                security_context: Some(core::SecurityContext {
                    run_as_user: Some(-1),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let decoded = decode(&envelope("v1", "Pod", pod.encode_to_vec())).expect("pod");
    assert_eq!(
        decoded["spec"]["containers"][0]["securityContext"]["runAsUser"],
        -1
    );
}

#[test]
fn micro_time_and_duration_helpers() {
    let event = k8s_pb::api::events::v1::Event {
        metadata: Some(meta::ObjectMeta {
            name: Some("e".into()),
            ..Default::default()
        }),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_789),
        }),
        ..Default::default()
    };
    let decoded = decode(&envelope(
        "events.k8s.io/v1",
        "Event",
        event.encode_to_vec(),
    ))
    .expect("event");
    assert_eq!(decoded["eventTime"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(90_000_000_000), "1m30s");
    assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(500_000_000), "500ms");
    assert_eq!(go_duration(-2_000), "-2µs");
}

#[test]
fn errors() {
    assert_eq!(
        decode(b"{\"kind\":\"Pod\"}"),
        Err(ProtobufError::MissingMagic)
    );
    let err = decode(&envelope("example.com/v1", "Widget", vec![])).expect_err("unknown kind");
    assert_eq!((err.code(), err.reason()), (415, "UnsupportedMediaType"));
    let mut truncated = golden!("deployment").0.to_vec();
    truncated.truncate(truncated.len() - 20);
    let err = decode(&truncated).expect_err("truncated");
    assert_eq!((err.code(), err.reason()), (400, "BadRequest"));
    let mut gz = Unknown::decode(&golden!("namespace").0[4..]).expect("envelope");
    gz.content_encoding = Some("gzip".into());
    let mut body = MAGIC.to_vec();
    body.extend(gz.encode_to_vec());
    assert_eq!(decode(&body).expect_err("gzip").code(), 415);
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "application/vnd.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(!is_protobuf("application/json"));
}
