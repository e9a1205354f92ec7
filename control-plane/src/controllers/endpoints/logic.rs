//! What the Endpoints and EndpointSlices of a Service should contain
//! (Kubernetes' `endpoints` and `endpointslice` controllers), as pure
//! functions of the Service and the pods its selector matches.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::controllers::pods::{is_ready, phase};

/// A pod's resolved ports: (service port name, target port, protocol), sorted.
type PortSet = Vec<(String, i32, String)>;

/// Endpoints per EndpointSlice (`--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// The Service's selector if it has one (only those are managed).
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()?
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
}

/// Kubernetes' `FindPort`: the container port a Service port targets in
/// this pod (a number as is, a name looked up in the containers).
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find_map(|cp| {
                    (cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(cp.container_port)
                })
        }
    }
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}

/// The pod's hostname in the Service's DNS subdomain, if it has one.
fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let svc_name = svc.metadata.name.as_deref()?;
    (spec.subdomain.as_deref() == Some(svc_name))
        .then(|| spec.hostname.clone())
        .flatten()
}

/// Kubernetes' `ShouldPodBeInEndpoints`: has an IP, is not finished, and
/// (unless `include_terminating`) is not being deleted.
fn in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ip(pod).is_none() {
        return false;
    }
    let restart = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    match phase(pod) {
        "Failed" => return false,
        "Succeeded" if restart != "Always" => return false,
        _ => {}
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The subsets of the Service's Endpoints object, packed like Kubernetes'
/// `RepackSubsets`: one subset per distinct port set, addresses sorted.
pub fn endpoint_subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let tolerate = publish_not_ready(svc);
    let ports: Vec<ServicePort> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    // Port set (sorted, as a key) -> (ready, not ready) addresses.
    let mut groups: BTreeMap<PortSet, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in pods {
        if !in_endpoints(pod, tolerate) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let mut set: PortSet = ports
            .iter()
            .filter_map(|p| {
                let target = find_port(pod, p)?;
                Some((
                    p.name.clone().unwrap_or_default(),
                    target,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        if set.is_empty() && !ports.is_empty() {
            continue;
        }
        set.sort();
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname(pod, svc),
            node_name: node_name(pod),
            target_ref: Some(target_ref(pod)),
        };
        let entry = groups.entry(set).or_default();
        if tolerate || is_ready(pod) {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(set, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!set.is_empty()).then(|| {
                    set.into_iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                            app_protocol: None,
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

/// The content of one EndpointSlice.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceContent {
    /// `addressType`: `IPv4` or `IPv6`.
    pub address_type: String,
    /// `ports`.
    pub ports: Vec<SlicePort>,
    /// `endpoints`, sorted by address.
    pub endpoints: Vec<Endpoint>,
}

/// The EndpointSlices a Service should have: endpoints grouped by address
/// family and port set, at most [`MAX_ENDPOINTS_PER_SLICE`] per slice, with
/// ready / serving / terminating conditions. Terminating pods are kept
/// (not ready, serving while still Ready).
pub fn desired_slices(svc: &Service, pods: &[&Pod]) -> Vec<SliceContent> {
    let tolerate = publish_not_ready(svc);
    let ports: Vec<ServicePort> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut groups: BTreeMap<(String, PortSet), Vec<Endpoint>> = BTreeMap::new();
    for pod in pods {
        if !in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
        let mut set: PortSet = ports
            .iter()
            .filter_map(|p| {
                let target = find_port(pod, p)?;
                Some((
                    p.name.clone().unwrap_or_default(),
                    target,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        if set.is_empty() && !ports.is_empty() {
            continue;
        }
        set.sort();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = tolerate || is_ready(pod);
        groups
            .entry((family.to_string(), set))
            .or_default()
            .push(Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(serving && !terminating),
                    serving: Some(serving),
                    terminating: Some(terminating),
                }),
                hostname: hostname(pod, svc),
                node_name: node_name(pod),
                target_ref: Some(target_ref(pod)),
                ..Endpoint::default()
            });
    }
    let mut slices = Vec::new();
    for ((family, set), mut endpoints) in groups {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        let ports: Vec<SlicePort> = set
            .into_iter()
            .map(|(name, port, protocol)| SlicePort {
                name: Some(name),
                port: Some(port),
                protocol: Some(protocol),
                app_protocol: None,
            })
            .collect();
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            slices.push(SliceContent {
                address_type: family.clone(),
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::pods::testing::pod;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn with_ip(mut p: Pod, ip: &str) -> Pod {
        if let Some(s) = p.status.as_mut() {
            s.pod_ip = Some(ip.into());
        }
        if let Some(spec) = p.spec.as_mut() {
            spec.containers = vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }];
        }
        p
    }

    fn svc(target: IntOrString, publish: bool) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(target),
                    ..ServicePort::default()
                }]),
                publish_not_ready_addresses: Some(publish),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn named_and_numeric_target_ports_resolve() {
        let p = with_ip(pod("a", "Running", "n1", Some(ts(1))), "10.0.0.1");
        let named = ServicePort {
            port: 80,
            target_port: Some(IntOrString::String("http".into())),
            ..ServicePort::default()
        };
        assert_eq!(find_port(&p, &named), Some(8080));
        let missing = ServicePort {
            port: 80,
            target_port: Some(IntOrString::String("grpc".into())),
            ..ServicePort::default()
        };
        assert_eq!(find_port(&p, &missing), None);
        let udp = ServicePort {
            port: 80,
            protocol: Some("UDP".into()),
            target_port: Some(IntOrString::String("http".into())),
            ..ServicePort::default()
        };
        assert_eq!(find_port(&p, &udp), None, "protocol must match");
        let num = ServicePort {
            port: 80,
            target_port: Some(IntOrString::Int(9000)),
            ..ServicePort::default()
        };
        assert_eq!(find_port(&p, &num), Some(9000));
        let none = ServicePort {
            port: 80,
            ..ServicePort::default()
        };
        assert_eq!(find_port(&p, &none), Some(80));
    }

    #[test]
    fn endpoints_split_ready_and_not_ready_and_skip_terminating() {
        let ready = with_ip(pod("a", "Running", "n1", Some(ts(1))), "10.0.0.2");
        let not_ready = with_ip(pod("b", "Running", "n1", None), "10.0.0.1");
        let no_ip = pod("c", "Pending", "", None);
        let mut terminating = with_ip(pod("d", "Running", "n1", Some(ts(1))), "10.0.0.3");
        terminating.metadata.deletion_timestamp = Some(Time(ts(5)));
        let failed = with_ip(pod("e", "Failed", "n1", None), "10.0.0.4");
        let s = svc(IntOrString::String("http".into()), false);
        let subsets = endpoint_subsets(&s, &[&ready, &not_ready, &no_ip, &terminating, &failed]);
        assert_eq!(subsets.len(), 1);
        let sub = &subsets[0];
        let ips = |v: &Option<Vec<EndpointAddress>>| {
            v.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&sub.addresses), ["10.0.0.2"]);
        assert_eq!(ips(&sub.not_ready_addresses), ["10.0.0.1"]);
        let port = sub
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .cloned()
            .unwrap_or_default();
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
        assert_eq!(
            sub.addresses
                .as_ref()
                .and_then(|a| a[0].target_ref.clone())
                .and_then(|r| r.name),
            Some("a".into())
        );

        let publish = svc(IntOrString::Int(8080), true);
        let subsets = endpoint_subsets(&publish, &[&ready, &not_ready, &terminating]);
        assert_eq!(
            ips(&subsets[0].addresses),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            "publishNotReadyAddresses includes all"
        );
    }

    #[test]
    fn slices_carry_ready_serving_terminating() {
        let ready = with_ip(pod("a", "Running", "n1", Some(ts(1))), "10.0.0.2");
        let not_ready = with_ip(pod("b", "Running", "n1", None), "10.0.0.1");
        let mut terminating = with_ip(pod("d", "Running", "n1", Some(ts(1))), "10.0.0.3");
        terminating.metadata.deletion_timestamp = Some(Time(ts(5)));
        let slices = desired_slices(
            &svc(IntOrString::String("http".into()), false),
            &[&ready, &not_ready, &terminating],
        );
        assert_eq!(slices.len(), 1);
        type Row = (String, Option<bool>, Option<bool>, Option<bool>);
        let conds: Vec<Row> = slices[0]
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (e.addresses[0].clone(), c.ready, c.serving, c.terminating)
            })
            .collect();
        assert_eq!(
            conds,
            vec![
                ("10.0.0.1".into(), Some(false), Some(false), Some(false)),
                ("10.0.0.2".into(), Some(true), Some(true), Some(false)),
                ("10.0.0.3".into(), Some(false), Some(true), Some(true)),
            ]
        );
        assert_eq!(slices[0].address_type, "IPv4");
        assert_eq!(slices[0].ports[0].port, Some(8080));
    }

    #[test]
    fn large_services_are_split_into_slices_of_100() {
        let pods: Vec<Pod> = (0..250)
            .map(|i| {
                with_ip(
                    pod(&format!("p{i}"), "Running", "n", Some(ts(1))),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                )
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let slices = desired_slices(&svc(IntOrString::Int(80), false), &refs);
        assert_eq!(
            slices.iter().map(|s| s.endpoints.len()).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        assert!(selector(&svc(IntOrString::Int(80), false)).is_some());
        assert!(selector(&Service::default()).is_none());
    }
}
