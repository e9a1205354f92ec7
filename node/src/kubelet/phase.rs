//! Pod phase, pod conditions and QoS class, computed exactly as the kubelet does from the
//! pod spec and its containers' statuses. Pure functions.

use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart on any exit (default).
    Always,
    /// Restart on non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// From the spec (unknown or unset → `Always`).
    pub fn of(spec: &PodSpec) -> Self {
        match spec.restart_policy.as_deref() {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that exited with `exit_code` should run again.
    pub fn should_restart(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }

    /// Init containers are retried unless the policy is `Never`.
    pub fn should_restart_init(self, exit_code: i32) -> bool {
        exit_code != 0 && self != RestartPolicy::Never
    }
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

fn last_terminated_code(s: &ContainerStatus) -> Option<i32> {
    s.last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// The pod phase (Kubernetes' `getPhase`).
pub fn phase(
    spec: &PodSpec,
    init: &[ContainerStatus],
    containers: &[ContainerStatus],
) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init = 0;
    for c in spec.init_containers.iter().flatten() {
        let Some(s) = find(init, &c.name) else {
            pending_init += 1;
            continue;
        };
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() {
            match last_terminated_code(s) {
                Some(code) if code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in &spec.containers {
        let Some(s) = find(containers, &c.name) else {
            unknown += 1;
            continue;
        };
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if last_terminated_code(s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    let policy = RestartPolicy::of(spec);
    if failed_init > 0 && policy == RestartPolicy::Never {
        return "Failed";
    }
    if pending_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if policy == RestartPolicy::Always {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == RestartPolicy::Never {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        last_transition_time: Some(Time(now)),
        last_probe_time: None,
        observed_generation: None,
    }
}

/// The pod conditions the kubelet owns (plus `PodScheduled`, which it fills in if missing).
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
    "PodScheduled",
];

/// Inputs of the conditions besides the container statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConditionInputs<'a> {
    /// Sandbox created and network configured.
    pub sandbox_ready: bool,
    /// Why not (reason, message), when the sandbox could not be created.
    pub sandbox_error: Option<(&'a str, &'a str)>,
    /// The computed phase.
    pub phase: &'a str,
}

/// `PodReadyToStartContainers`, `Initialized`, `ContainersReady`, `Ready` and (if missing in
/// `existing`) `PodScheduled`; transition times kept from `existing` when a status did not
/// change.
pub fn conditions(
    spec: &PodSpec,
    init: &[ContainerStatus],
    containers: &[ContainerStatus],
    inputs: ConditionInputs<'_>,
    existing: &[PodCondition],
    now: Timestamp,
) -> Vec<PodCondition> {
    let mut out = Vec::new();
    let (sandbox_reason, sandbox_message) = match inputs.sandbox_error {
        Some((r, m)) => (Some(r), Some(m.to_owned())),
        None => (None, None),
    };
    out.push(condition(
        "PodReadyToStartContainers",
        inputs.sandbox_ready,
        sandbox_reason,
        sandbox_message,
        now,
    ));

    let incomplete_init: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| {
            find(init, &c.name)
                .and_then(|s| s.state.as_ref())
                .and_then(|s| s.terminated.as_ref())
                .is_none_or(|t| t.exit_code != 0)
        })
        .map(|c| c.name.as_str())
        .collect();
    let initialized = incomplete_init.is_empty() || inputs.phase == "Succeeded";
    out.push(if initialized {
        condition("Initialized", true, None, None, now)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete_init.join(" ")
            )),
            now,
        )
    });

    let unready: Vec<&str> = spec
        .containers
        .iter()
        .filter(|c| !find(containers, &c.name).is_some_and(|s| s.ready))
        .map(|c| c.name.as_str())
        .collect();
    let (ready, reason, message) = if inputs.phase == "Succeeded" || inputs.phase == "Failed" {
        (false, Some("PodCompleted"), None)
    } else if !initialized {
        (
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete_init.join(" ")
            )),
        )
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    out.push(condition(
        "ContainersReady",
        ready,
        reason,
        message.clone(),
        now,
    ));
    // Ready also needs every readiness gate's condition (set by someone else) to be True.
    let gates: Vec<String> = spec
        .readiness_gates
        .iter()
        .flatten()
        .filter_map(|gate| {
            let name = &gate.condition_type;
            match existing.iter().find(|c| c.type_ == *name) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate \"{name}\" does not exist."
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate \"{name}\" is not \"True\", but {}",
                    c.status
                )),
                Some(_) => None,
            }
        })
        .collect();
    if ready && !gates.is_empty() {
        out.push(condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(gates.join(", ")),
            now,
        ));
    } else {
        out.push(condition("Ready", ready, reason, message, now));
    }

    match existing.iter().find(|c| c.type_ == "PodScheduled") {
        Some(scheduled) => out.push(scheduled.clone()),
        None => out.push(condition("PodScheduled", true, None, None, now)),
    }
    // Conditions the kubelet does not own (readiness gates, DisruptionTarget, ...) stay.
    out.extend(
        existing
            .iter()
            .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
            .cloned(),
    );
    for c in &mut out {
        if let Some(old) = existing.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
            && old.last_transition_time.is_some()
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    out
}

/// The QoS class (`Guaranteed`, `Burstable`, `BestEffort`) from requests and limits.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let resources = c.resources.clone().unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        for r in ["cpu", "memory"] {
            let req = requests.get(r).filter(|q| !is_zero(&q.0));
            let lim = limits.get(r).filter(|q| !is_zero(&q.0));
            if req.is_some() || lim.is_some() {
                any = true;
            }
            // A limit alone implies an equal request.
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(req), Some(lim)) if req.0 != lim.0 => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// True for quantities like `0`, `0m`, `0.0Gi`.
fn is_zero(q: &str) -> bool {
    let number: String = q
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.parse::<f64>().is_ok_and(|n| n == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
        ContainerStateWaiting, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn spec(init: &[&str], containers: &[&str], policy: &str) -> PodSpec {
        let c = |n: &&str| Container {
            name: (*n).to_owned(),
            ..Container::default()
        };
        PodSpec {
            init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
            containers: containers.iter().map(c).collect(),
            restart_policy: Some(policy.to_owned()),
            ..PodSpec::default()
        }
    }

    fn running(name: &str, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    fn terminated(name: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    fn waiting(name: &str, last_code: Option<i32>) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting::default()),
                ..ContainerState::default()
            }),
            last_state: last_code.map(|code| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    #[test]
    fn phases_follow_get_phase() {
        let cases: Vec<(PodSpec, Vec<ContainerStatus>, Vec<ContainerStatus>, &str)> = vec![
            // Nothing reported yet.
            (spec(&[], &["a"], "Always"), vec![], vec![], "Pending"),
            (
                spec(&[], &["a"], "Always"),
                vec![],
                vec![waiting("a", None)],
                "Pending",
            ),
            (
                spec(&[], &["a"], "Always"),
                vec![],
                vec![running("a", false)],
                "Running",
            ),
            (
                spec(&[], &["a", "b"], "Always"),
                vec![],
                vec![running("a", true)],
                "Pending",
            ),
            // Crash looping under Always stays Running.
            (
                spec(&[], &["a"], "Always"),
                vec![],
                vec![waiting("a", Some(1))],
                "Running",
            ),
            (
                spec(&[], &["a"], "Always"),
                vec![],
                vec![terminated("a", 0)],
                "Running",
            ),
            (
                spec(&[], &["a"], "Never"),
                vec![],
                vec![terminated("a", 0)],
                "Succeeded",
            ),
            (
                spec(&[], &["a"], "OnFailure"),
                vec![],
                vec![terminated("a", 0)],
                "Succeeded",
            ),
            (
                spec(&[], &["a"], "Never"),
                vec![],
                vec![terminated("a", 2)],
                "Failed",
            ),
            (
                spec(&[], &["a"], "OnFailure"),
                vec![],
                vec![terminated("a", 2)],
                "Running",
            ),
            (
                spec(&[], &["a", "b"], "Never"),
                vec![],
                vec![terminated("a", 0), terminated("b", 1)],
                "Failed",
            ),
            (
                spec(&[], &["a", "b"], "Never"),
                vec![],
                vec![running("a", true), terminated("b", 1)],
                "Running",
            ),
            // Init containers.
            (
                spec(&["i"], &["a"], "Always"),
                vec![],
                vec![waiting("a", None)],
                "Pending",
            ),
            (
                spec(&["i"], &["a"], "Always"),
                vec![running("i", false)],
                vec![waiting("a", None)],
                "Pending",
            ),
            (
                spec(&["i"], &["a"], "Always"),
                vec![terminated("i", 0)],
                vec![running("a", true)],
                "Running",
            ),
            (
                spec(&["i"], &["a"], "Never"),
                vec![terminated("i", 1)],
                vec![waiting("a", None)],
                "Failed",
            ),
            (
                spec(&["i"], &["a"], "Always"),
                vec![waiting("i", Some(1))],
                vec![waiting("a", None)],
                "Pending",
            ),
            (
                spec(&["i", "j"], &["a"], "Always"),
                vec![terminated("i", 0)],
                vec![waiting("a", None)],
                "Pending",
            ),
        ];
        for (i, (spec, init, containers, want)) in cases.iter().enumerate() {
            assert_eq!(phase(spec, init, containers), *want, "case {i}");
        }
    }

    #[test]
    fn restart_policies() {
        assert!(RestartPolicy::Always.should_restart(0));
        assert!(RestartPolicy::OnFailure.should_restart(1));
        assert!(!RestartPolicy::OnFailure.should_restart(0));
        assert!(!RestartPolicy::Never.should_restart(1));
        assert!(RestartPolicy::Always.should_restart_init(1));
        assert!(!RestartPolicy::Always.should_restart_init(0));
        assert!(!RestartPolicy::Never.should_restart_init(1));
        assert_eq!(
            RestartPolicy::of(&PodSpec::default()),
            RestartPolicy::Always
        );
    }

    fn cond<'a>(cs: &'a [PodCondition], t: &str) -> &'a PodCondition {
        cs.iter().find(|c| c.type_ == t).expect(t)
    }

    #[test]
    fn conditions_like_the_kubelet() {
        let now = Timestamp::from_second(100).expect("t");
        let s = spec(&["init"], &["a", "b"], "Always");
        let inputs = ConditionInputs {
            sandbox_ready: true,
            sandbox_error: None,
            phase: "Pending",
        };
        let cs = conditions(&s, &[running("init", false)], &[], inputs, &[], now);
        assert_eq!(cond(&cs, "PodReadyToStartContainers").status, "True");
        let init = cond(&cs, "Initialized");
        assert_eq!(init.status, "False");
        assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
        assert_eq!(cond(&cs, "Ready").status, "False");
        assert_eq!(cond(&cs, "PodScheduled").status, "True");

        let inputs = ConditionInputs {
            phase: "Running",
            ..inputs
        };
        let cs2 = conditions(
            &s,
            &[terminated("init", 0)],
            &[running("a", true), running("b", false)],
            inputs,
            &cs,
            Timestamp::from_second(200).expect("t"),
        );
        assert_eq!(cond(&cs2, "Initialized").status, "True");
        let ready = cond(&cs2, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [b]")
        );
        // Unchanged conditions keep their transition time.
        assert_eq!(
            cond(&cs2, "PodReadyToStartContainers").last_transition_time,
            Some(Time(now))
        );
        assert_ne!(
            cond(&cs2, "Initialized").last_transition_time,
            Some(Time(now))
        );

        let cs3 = conditions(
            &s,
            &[terminated("init", 0)],
            &[running("a", true), running("b", true)],
            inputs,
            &cs2,
            now,
        );
        assert_eq!(cond(&cs3, "Ready").status, "True");
        assert_eq!(cond(&cs3, "ContainersReady").status, "True");

        let done = ConditionInputs {
            phase: "Succeeded",
            ..inputs
        };
        let cs4 = conditions(
            &s,
            &[terminated("init", 0)],
            &[terminated("a", 0), terminated("b", 0)],
            done,
            &cs3,
            now,
        );
        assert_eq!(cond(&cs4, "Ready").reason.as_deref(), Some("PodCompleted"));

        let broken = ConditionInputs {
            sandbox_ready: false,
            sandbox_error: Some(("FailedCreatePodSandBox", "no runtime handler \"x\"")),
            phase: "Pending",
        };
        let cs5 = conditions(&s, &[], &[], broken, &[], now);
        let c = cond(&cs5, "PodReadyToStartContainers");
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("FailedCreatePodSandBox"));
    }

    #[test]
    fn readiness_gates_and_foreign_conditions() {
        let mut s = spec(&[], &["a"], "Always");
        s.readiness_gates = Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
            condition_type: "example.com/lb".into(),
        }]);
        let inputs = ConditionInputs {
            sandbox_ready: true,
            sandbox_error: None,
            phase: "Running",
        };
        let now = Timestamp::from_second(9).expect("t");
        let cs = conditions(&s, &[], &[running("a", true)], inputs, &[], now);
        assert_eq!(cond(&cs, "ContainersReady").status, "True");
        let ready = cond(&cs, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some(
                "corresponding condition of pod readiness gate \"example.com/lb\" does not exist."
            )
        );
        let gate = PodCondition {
            type_: "example.com/lb".into(),
            status: "True".into(),
            ..PodCondition::default()
        };
        let cs = conditions(
            &s,
            &[],
            &[running("a", true)],
            inputs,
            std::slice::from_ref(&gate),
            now,
        );
        assert_eq!(cond(&cs, "Ready").status, "True");
        assert_eq!(cond(&cs, "example.com/lb"), &gate, "kept as it is");
    }

    #[test]
    fn scheduler_condition_is_kept() {
        let scheduled = PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(Time(Timestamp::from_second(5).expect("t"))),
            ..PodCondition::default()
        };
        let inputs = ConditionInputs {
            sandbox_ready: false,
            sandbox_error: None,
            phase: "Pending",
        };
        let cs = conditions(
            &spec(&[], &["a"], "Always"),
            &[],
            &[],
            inputs,
            std::slice::from_ref(&scheduled),
            Timestamp::from_second(9).expect("t"),
        );
        assert_eq!(cond(&cs, "PodScheduled"), &scheduled);
    }

    fn with_resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    #[test]
    fn qos_classes() {
        let pod = |containers: Vec<Container>| PodSpec {
            containers,
            ..PodSpec::default()
        };
        assert_eq!(
            qos_class(&pod(vec![with_resources(&[], &[])])),
            "BestEffort"
        );
        assert_eq!(
            qos_class(&pod(vec![with_resources(
                &[],
                &[("cpu", "1"), ("memory", "1Gi")]
            )])),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(vec![with_resources(
                &[("cpu", "1"), ("memory", "1Gi")],
                &[("cpu", "1"), ("memory", "1Gi")]
            )])),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(vec![with_resources(&[("cpu", "100m")], &[])])),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(vec![with_resources(
                &[("memory", "1Gi")],
                &[("memory", "2Gi")]
            )])),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(vec![
                with_resources(&[], &[("cpu", "1"), ("memory", "1Gi")]),
                with_resources(&[], &[]),
            ])),
            "Burstable"
        );
    }
}
