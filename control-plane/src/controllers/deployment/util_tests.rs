//! Unit tests of the Deployment controller's pure core.

use super::*;
use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

fn deploy(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            template: template("v2"),
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(10),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

fn rs(name: &str, created: i64, replicas: i32, available: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: Some(Time(ts(created))),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            template: Some(template(name)),
            ..ReplicaSetSpec::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..ReplicaSetStatus::default()
        }),
    }
}

fn annotate(mut rs: ReplicaSet, pairs: &[(&str, &str)]) -> ReplicaSet {
    let a = rs.metadata.annotations.get_or_insert_with(Default::default);
    for (k, v) in pairs {
        a.insert((*k).into(), (*v).into());
    }
    rs
}

#[test]
fn defaults_are_kubernetes_defaults() {
    let d = with_defaults(&Deployment::default());
    let spec = d.spec.clone().unwrap_or_default();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    let strategy = spec.strategy.unwrap_or_default();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let ru = strategy.rolling_update.unwrap_or_default();
    assert_eq!(ru.max_surge, Some(pct("25%")));
    assert_eq!(ru.max_unavailable, Some(pct("25%")));
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    assert_eq!(
        resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
        Ok((3, 2))
    );
    assert_eq!(
        resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 1),
        Ok((1, 0))
    );
    assert_eq!(
        resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 4),
        Ok((1, 1))
    );
    assert_eq!(
        resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&pct("10%")), 5),
        Ok((0, 1)),
        "both zero -> unavailable 1"
    );
    assert_eq!(resolve_fenceposts(None, None, 3), Ok((0, 1)));
    assert!(resolve_fenceposts(Some(&pct("abc")), None, 3).is_err());
    assert!(
        resolve_fenceposts(Some(&pct("5")), None, 3).is_err(),
        "a bare string is not a percentage"
    );
    let d = deploy(10, pct("25%"), pct("25%"));
    assert_eq!((max_surge(&d), max_unavailable(&d)), (3, 2));
    let big = deploy(2, IntOrString::Int(0), IntOrString::Int(5));
    assert_eq!(max_unavailable(&big), 2, "capped at replicas");
    let mut recreate = deploy(10, pct("25%"), pct("25%"));
    if let Some(s) = recreate.spec.as_mut() {
        s.strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
    }
    assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    assert_eq!(new_rs_new_replicas(&recreate, &[], 0), 10);
}

#[test]
fn rolling_update_scales_the_new_rs_within_surge() {
    let d = deploy(10, pct("25%"), pct("25%"));
    let old = rs("old", 1, 10, 10);
    let new = rs("new", 2, 0, 0);
    // 10 old + 0 new, max total 13: the new RS may grow to 3.
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new], 0), 3);
    assert_eq!(reconcile_new_target(&d, &[&old, &new], &new), Some(3));
    // Already at the surge limit: no growth.
    let new3 = rs("new", 2, 3, 0);
    assert_eq!(reconcile_new_target(&d, &[&old, &new3], &new3), None);
    // Never beyond the desired count; shrink when above it.
    let old2 = rs("old", 1, 2, 2);
    let new9 = rs("new", 2, 9, 9);
    assert_eq!(reconcile_new_target(&d, &[&old2, &new9], &new9), Some(10));
    let new12 = rs("new", 2, 12, 12);
    assert_eq!(reconcile_new_target(&d, &[&new12], &new12), Some(10));
}

#[test]
fn old_replicas_scale_down_only_within_max_unavailable() {
    let d = deploy(10, pct("25%"), pct("25%"));
    let old = rs("old", 1, 10, 10);
    let new = rs("new", 2, 3, 0);
    // 13 pods, min available 8, 3 new unavailable -> 2 may go.
    assert_eq!(max_scaled_down(&d, &[&old, &new], &new), 2);
    assert_eq!(
        scale_down_old_plan(&d, &[&old, &new], &[&old]),
        vec![(0, 8)]
    );
    // Nothing available beyond the minimum: no scale-down.
    let old8 = rs("old", 1, 8, 8);
    assert_eq!(scale_down_old_plan(&d, &[&old8, &new], &[&old8]), vec![]);
}

#[test]
fn unhealthy_old_replicas_are_cleaned_first_oldest_first() {
    let a = rs("a", 1, 5, 3);
    let b = rs("b", 2, 4, 4);
    let c = rs("c", 3, 6, 1);
    assert_eq!(
        cleanup_unhealthy_plan(&[&c, &b, &a], 4),
        vec![(2, 3), (0, 4)]
    );
    assert_eq!(cleanup_unhealthy_plan(&[&c, &b, &a], 0), vec![]);
}

#[test]
fn proportional_scaling_follows_kubernetes() {
    // Kubernetes' "proportional scaling: 5 -> 10" case with two active RSes
    // of 3 and 2 (max-replicas annotation 6 = 5 + surge 1... here surge 25%).
    let mut d = deploy(10, IntOrString::Int(1), IntOrString::Int(0));
    d.status = Some(DeploymentStatus {
        replicas: Some(5),
        ..DeploymentStatus::default()
    });
    let new = annotate(rs("new", 2, 3, 3), &[(MAX_REPLICAS, "6")]);
    let old = annotate(rs("old", 1, 2, 2), &[(MAX_REPLICAS, "6")]);
    let plan = proportional_plan(&d, &[&new, &old]);
    let total: i32 = plan.iter().map(|(_, s)| s).sum();
    assert_eq!(total, 11, "replicas + surge");
    // new: round(3*11/6)=6 (+3); old: round(2*11/6)=4 (+2); the leftover 1
    // goes to the first (largest) replica set.
    assert_eq!(plan, vec![(0, 7), (1, 4)]);

    // Scaling down to zero removes everything.
    let mut zero = deploy(0, IntOrString::Int(1), IntOrString::Int(0));
    zero.status = Some(DeploymentStatus {
        replicas: Some(5),
        ..DeploymentStatus::default()
    });
    assert_eq!(
        proportional_plan(&zero, &[&new, &old]),
        vec![(0, 0), (1, 0)]
    );

    // Scale down 10 -> 5 with equal halves: older loses the leftover first.
    let mut down = deploy(5, IntOrString::Int(0), IntOrString::Int(1));
    down.status = Some(DeploymentStatus {
        replicas: Some(10),
        ..DeploymentStatus::default()
    });
    let a = annotate(rs("a", 1, 5, 5), &[(MAX_REPLICAS, "10")]);
    let b = annotate(rs("b", 2, 5, 5), &[(MAX_REPLICAS, "10")]);
    let plan = proportional_plan(&down, &[&b, &a]);
    assert_eq!(plan.iter().map(|(_, s)| s).sum::<i32>(), 5);
    assert_eq!(
        plan[0].0, 1,
        "same size: the older RS is first when scaling down"
    );
}

#[test]
fn active_or_latest_and_saturation() {
    let new = rs("new", 3, 0, 0);
    let old_a = rs("a", 1, 0, 0);
    let old_b = rs("b", 2, 0, 0);
    assert_eq!(
        active_or_latest(Some(&new), &[&old_a, &old_b]),
        Some(ActiveOrLatest::New)
    );
    assert_eq!(
        active_or_latest(None, &[&old_a, &old_b]),
        Some(ActiveOrLatest::Old(1)),
        "newest old"
    );
    let old_active = rs("a", 1, 2, 2);
    assert_eq!(
        active_or_latest(Some(&new), &[&old_active, &old_b]),
        Some(ActiveOrLatest::Old(0))
    );
    let new_active = rs("new", 3, 2, 2);
    assert_eq!(active_or_latest(Some(&new_active), &[&old_active]), None);
    assert_eq!(active_or_latest(None, &[]), None);

    let d = deploy(3, pct("25%"), pct("25%"));
    let full = annotate(rs("new", 3, 3, 3), &[(DESIRED_REPLICAS, "3")]);
    assert!(is_saturated(&d, Some(&full)));
    assert!(
        !is_saturated(&d, Some(&rs("new", 3, 3, 3))),
        "needs the annotation"
    );
    assert!(!is_saturated(
        &d,
        Some(&annotate(rs("new", 3, 3, 2), &[(DESIRED_REPLICAS, "3")]))
    ));
    assert!(!is_saturated(&d, None));
}

#[test]
fn new_rs_annotations_copy_and_bump_revisions() {
    let mut d = deploy(4, pct("25%"), pct("25%"));
    d.metadata.annotations = Some(
        [
            ("team".to_string(), "a".to_string()),
            (LAST_APPLIED.to_string(), "{}".to_string()),
            (REVISION.to_string(), "9".to_string()),
        ]
        .into(),
    );
    let mut fresh = rs("new", 1, 0, 0);
    assert!(set_new_rs_annotations(&d, &mut fresh, 3, false));
    let a = fresh.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a.get("team").map(String::as_str), Some("a"));
    assert!(!a.contains_key(LAST_APPLIED));
    assert_eq!(a.get(REVISION).map(String::as_str), Some("3"));
    assert_eq!(a.get(DESIRED_REPLICAS).map(String::as_str), Some("4"));
    assert_eq!(a.get(MAX_REPLICAS).map(String::as_str), Some("5"));
    assert!(!a.contains_key(REVISION_HISTORY));
    assert!(
        !set_new_rs_annotations(&d, &mut fresh, 3, true),
        "idempotent"
    );

    // Rolling back to an RS at revision 1 when the max is 4: 1 -> 5, history "1".
    let mut rolled = annotate(rs("old", 1, 0, 0), &[(REVISION, "1")]);
    assert!(set_new_rs_annotations(&d, &mut rolled, 5, true));
    let a = rolled.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a.get(REVISION).map(String::as_str), Some("5"));
    assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1"));
    assert!(set_new_rs_annotations(&d, &mut rolled, 7, true));
    let a = rolled.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1,5"));
    // A lower revision never lowers the annotation.
    assert!(!set_new_rs_annotations(&d, &mut rolled, 2, true));
    // An invalid revision is left alone.
    let mut bad = annotate(rs("bad", 1, 0, 0), &[(REVISION, "x")]);
    set_new_rs_annotations(&d, &mut bad, 3, true);
    assert_eq!(
        bad.metadata
            .annotations
            .unwrap_or_default()
            .get(REVISION)
            .map(String::as_str),
        Some("x")
    );
}

#[test]
fn find_new_and_revisions() {
    let d = deploy(1, pct("25%"), pct("25%"));
    let mut older_match = rs("v2", 5, 1, 1);
    older_match.metadata.name = Some("b-match".into());
    let mut newer_match = rs("v2", 9, 1, 1);
    newer_match.metadata.name = Some("a-match".into());
    let other = annotate(rs("v1", 1, 1, 1), &[(REVISION, "4")]);
    let list = vec![other.clone(), newer_match, older_match];
    assert_eq!(find_new(&d, &list), Some(2), "the oldest matching RS");
    assert_eq!(find_new(&d, std::slice::from_ref(&other)), None);
    assert_eq!(max_revision(&list), 4);
    assert_eq!(revision(&rs("x", 1, 1, 1)), 0);
}

#[test]
fn status_and_available_condition() {
    let d = deploy(4, pct("25%"), pct("25%"));
    let old = rs("old", 1, 2, 2);
    let new = rs("new", 2, 2, 1);
    let s = calculate_status(&d, &[&old, &new], Some(&new), ts(100));
    assert_eq!(s.replicas, Some(4));
    assert_eq!(s.updated_replicas, Some(2));
    assert_eq!(s.available_replicas, Some(3));
    assert_eq!(s.unavailable_replicas, Some(1));
    assert_eq!(s.observed_generation, Some(1));
    let avail = condition(&s, "Available")
        .cloned()
        .unwrap_or_else(|| new_condition("", "", "", String::new(), ts(0)));
    assert_eq!(
        (avail.status.as_str(), avail.reason.as_deref()),
        ("True", Some(reason::MIN_AVAILABLE))
    );
    let bad = rs("new", 2, 4, 1);
    let s = calculate_status(&d, &[&bad], Some(&bad), ts(100));
    assert_eq!(
        condition(&s, "Available").and_then(|c| c.reason.as_deref()),
        Some(reason::MIN_UNAVAILABLE)
    );
}

#[test]
fn set_condition_keeps_transition_time_for_same_status() {
    let mut status = DeploymentStatus::default();
    set_condition(
        &mut status,
        new_condition(
            "Progressing",
            "True",
            reason::NEW_RS_CREATED,
            "a".into(),
            ts(1),
        ),
    );
    set_condition(
        &mut status,
        new_condition("Progressing", "True", reason::RS_UPDATED, "b".into(), ts(5)),
    );
    let c = condition(&status, "Progressing")
        .cloned()
        .unwrap_or_else(|| new_condition("", "", "", String::new(), ts(0)));
    assert_eq!(c.reason.as_deref(), Some(reason::RS_UPDATED));
    assert_eq!(c.last_transition_time, Some(Time(ts(1))));
    assert_eq!(c.last_update_time, Some(Time(ts(5))));
    // Same status and reason: untouched.
    set_condition(
        &mut status,
        new_condition("Progressing", "True", reason::RS_UPDATED, "c".into(), ts(9)),
    );
    assert_eq!(
        condition(&status, "Progressing").and_then(|c| c.message.as_deref()),
        Some("b")
    );
    set_condition(
        &mut status,
        new_condition("Progressing", "False", reason::TIMED_OUT, "d".into(), ts(9)),
    );
    assert_eq!(
        condition(&status, "Progressing").and_then(|c| c.last_transition_time.clone()),
        Some(Time(ts(9)))
    );
    assert_eq!(status.conditions.as_ref().map(Vec::len), Some(1));
}

#[test]
fn progressing_condition_moves_through_its_reasons() {
    let mut d = deploy(2, pct("25%"), pct("25%"));
    let mut status = DeploymentStatus::default();
    set_condition(
        &mut status,
        new_condition(
            "Progressing",
            "True",
            reason::NEW_RS_CREATED,
            "created".into(),
            ts(0),
        ),
    );
    d.status = Some(status);
    // Progress: one new pod appeared.
    let new1 = rs("new", 2, 1, 0);
    let s = rollout_status(&d, &[&new1], Some(&new1), ts(10));
    let c = condition(&s, "Progressing").cloned();
    assert_eq!(
        c.as_ref().and_then(|c| c.reason.as_deref()),
        Some(reason::RS_UPDATED)
    );
    assert_eq!(
        c.as_ref().and_then(|c| c.message.as_deref()),
        Some("ReplicaSet \"new\" is progressing.")
    );
    assert_eq!(
        c.as_ref().and_then(|c| c.last_transition_time.clone()),
        Some(Time(ts(0)))
    );
    // No progress for longer than the deadline: timed out.
    d.status = Some(s.clone());
    let s2 = rollout_status(&d, &[&new1], Some(&new1), ts(10 + 601));
    assert_eq!(
        condition(&s2, "Progressing").map(|c| (c.status.as_str(), c.reason.as_deref())),
        Some(("False", Some(reason::TIMED_OUT)))
    );
    assert!(requeue_stuck_after(&d, &s, ts(20)).is_some_and(|t| t.as_secs() == 591));
    // Complete.
    let done = rs("new", 2, 2, 2);
    let s3 = rollout_status(&d, &[&done], Some(&done), ts(30));
    assert_eq!(
        condition(&s3, "Progressing").and_then(|c| c.reason.as_deref()),
        Some(reason::NEW_RS_AVAILABLE)
    );
    assert!(is_complete(&d, &s3));
    assert_eq!(requeue_stuck_after(&d, &s3, ts(30)), None);
    // Without a deadline there is no Progressing condition.
    if let Some(spec) = d.spec.as_mut() {
        spec.progress_deadline_seconds = Some(i32::MAX);
    }
    let s4 = rollout_status(&d, &[&done], Some(&done), ts(30));
    assert!(condition(&s4, "Progressing").is_none());
}

#[test]
fn replica_failures_surface_in_the_deployment() {
    let d = deploy(2, pct("25%"), pct("25%"));
    let mut failing = rs("new", 2, 2, 0);
    if let Some(s) = failing.status.as_mut() {
        s.conditions = Some(vec![ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("quota".into()),
            last_transition_time: Some(Time(ts(3))),
        }]);
    }
    let s = rollout_status(&d, &[&failing], Some(&failing), ts(10));
    assert_eq!(
        condition(&s, "ReplicaFailure").and_then(|c| c.reason.as_deref()),
        Some("FailedCreate")
    );
}

#[test]
fn history_cleanup_keeps_the_limit_and_skips_busy_sets() {
    let mut d = deploy(1, pct("25%"), pct("25%"));
    if let Some(s) = d.spec.as_mut() {
        s.revision_history_limit = Some(1);
    }
    let r1 = annotate(rs("r1", 1, 0, 0), &[(REVISION, "1")]);
    let r2 = annotate(rs("r2", 2, 1, 1), &[(REVISION, "2")]);
    let r3 = annotate(rs("r3", 3, 0, 0), &[(REVISION, "3")]);
    // Two to delete (3 old, limit 1): r1 goes, r2 still has a replica.
    assert_eq!(history_to_delete(&d, &[&r3, &r2, &r1]), vec![2]);
    if let Some(s) = d.spec.as_mut() {
        s.revision_history_limit = None;
    }
    assert!(history_to_delete(&d, &[&r3, &r2, &r1]).is_empty());
}

#[test]
fn pause_and_resume_conditions() {
    let mut d = deploy(1, pct("25%"), pct("25%"));
    assert_eq!(paused_condition(&d, ts(1)), None);
    if let Some(s) = d.spec.as_mut() {
        s.paused = Some(true);
    }
    let paused = paused_condition(&d, ts(1));
    assert_eq!(
        paused.as_ref().and_then(|c| c.reason.as_deref()),
        Some(reason::PAUSED)
    );
    assert_eq!(paused.as_ref().map(|c| c.status.as_str()), Some("Unknown"));
    let mut status = DeploymentStatus::default();
    if let Some(c) = paused {
        set_condition(&mut status, c);
    }
    d.status = Some(status);
    assert_eq!(paused_condition(&d, ts(2)), None, "already paused");
    if let Some(s) = d.spec.as_mut() {
        s.paused = Some(false);
    }
    assert_eq!(
        paused_condition(&d, ts(3)).and_then(|c| c.reason),
        Some(reason::RESUMED.to_string())
    );
}
