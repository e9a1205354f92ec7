//! Validation of workload controllers (apps/v1 and batch/v1): selectors,
//! template labels, replica counts, restart policies and immutable fields.

use serde_json::Value;

use super::pods::validate_pod_spec;
use super::{FieldErr, go_string_map};
use crate::apiserver::kinds::KindId;
use crate::apiserver::selectors::LabelSelector;

fn non_negative(obj: &Value, field: &str, errs: &mut Vec<FieldErr>) {
    let v = crate::apiserver::objects::path(obj, field).and_then(Value::as_i64);
    if let Some(n) = v.filter(|n| *n < 0) {
        errs.push(FieldErr::invalid(
            field,
            n,
            "must be greater than or equal to 0",
        ));
    }
}

/// Checks `spec.selector` against `spec.template.metadata.labels`.
fn selector_matches_template(obj: &Value, template_path: &str, errs: &mut Vec<FieldErr>) {
    let spec = obj.get("spec");
    let selector = spec.and_then(|s| s.get("selector"));
    let labels = spec
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"));
    match selector.filter(|s| s.is_object()) {
        None => errs.push(FieldErr::required("spec.selector", "")),
        Some(sel) => match LabelSelector::from_label_selector(sel) {
            Err(e) => errs.push(FieldErr::invalid(
                "spec.selector",
                sel.clone(),
                &e.to_string(),
            )),
            Ok(s) if s.is_empty() => errs.push(FieldErr::invalid(
                "spec.selector",
                sel.clone(),
                "empty selector is invalid for deployment",
            )),
            Ok(s) => {
                let pairs: Vec<(&str, &str)> = labels
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                            .collect()
                    })
                    .unwrap_or_default();
                if !s.matches_labels(&pairs) {
                    errs.push(FieldErr::invalid(
                        &format!("{template_path}.metadata.labels"),
                        go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
}

/// Deployments, ReplicaSets, DaemonSets and StatefulSets.
pub fn validate_workload(id: KindId, obj: &Value, old: Option<&Value>) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    non_negative(obj, "spec.replicas", &mut errs);
    non_negative(obj, "spec.minReadySeconds", &mut errs);
    non_negative(obj, "spec.revisionHistoryLimit", &mut errs);
    selector_matches_template(obj, "spec.template", &mut errs);
    let tspec = obj
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"));
    errs.extend(validate_pod_spec(tspec, "spec.template.spec"));
    if let Some(p) = tspec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        && p != "Always"
    {
        errs.push(FieldErr::not_supported(
            "spec.template.spec.restartPolicy",
            p,
            &["Always"],
        ));
    }
    if id == KindId::Deployment
        && let Some(t) =
            crate::apiserver::objects::path(obj, "spec.strategy.type").and_then(Value::as_str)
        && !["Recreate", "RollingUpdate"].contains(&t)
    {
        errs.push(FieldErr::not_supported(
            "spec.strategy.type",
            t,
            &["Recreate", "RollingUpdate"],
        ));
    }
    if let Some(old) = old {
        let sel = |o: &Value| o.get("spec").and_then(|s| s.get("selector")).cloned();
        if sel(obj) != sel(old) {
            errs.push(FieldErr::immutable(
                "spec.selector",
                sel(obj).unwrap_or(Value::Null),
            ));
        }
    }
    errs
}

/// batch/v1 Jobs.
pub fn validate_job(obj: &Value, old: Option<&Value>) -> Vec<FieldErr> {
    let mut errs = validate_job_spec(obj.get("spec"), "spec");
    if let Some(old) = old {
        let tmpl = |o: &Value| o.get("spec").and_then(|s| s.get("template")).cloned();
        if tmpl(obj) != tmpl(old) {
            errs.push(FieldErr::immutable(
                "spec.template",
                tmpl(obj).unwrap_or(Value::Null),
            ));
        }
        let comp = |o: &Value| o.get("spec").and_then(|s| s.get("completions")).cloned();
        if comp(obj) != comp(old) {
            errs.push(FieldErr::immutable(
                "spec.completions",
                comp(obj).unwrap_or(Value::Null),
            ));
        }
    }
    errs
}

fn validate_job_spec(spec: Option<&Value>, path: &str) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let wrap = serde_json::json!({ "spec": spec.cloned().unwrap_or(Value::Null) });
    for f in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        let mut e = Vec::new();
        non_negative(&wrap, &format!("spec.{f}"), &mut e);
        errs.extend(e.into_iter().map(|mut x| {
            x.field = x.field.replacen("spec", path, 1);
            x
        }));
    }
    let tspec = spec
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"));
    errs.extend(validate_pod_spec(tspec, &format!("{path}.template.spec")));
    let policy = tspec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if policy != "OnFailure" && policy != "Never" {
        errs.push(FieldErr::required(
            &format!("{path}.template.spec.restartPolicy"),
            "valid values: \"OnFailure\", \"Never\"",
        ));
    }
    errs
}

/// True if `s` is a five-field cron schedule or a `@` macro.
pub fn valid_schedule(s: &str) -> bool {
    let s = s.trim();
    let s = if let Some(rest) = s.strip_prefix("CRON_TZ=").or_else(|| s.strip_prefix("TZ=")) {
        match rest.split_once(' ') {
            Some((_, r)) => r.trim(),
            None => return false,
        }
    } else {
        s
    };
    if s.starts_with('@') {
        return [
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ]
        .contains(&s)
            || s.starts_with("@every ");
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    fields.len() == 5
        && fields.iter().all(|f| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || ",-*/?".contains(c))
        })
}

/// batch/v1 CronJobs.
pub fn validate_cronjob(obj: &Value) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let spec = obj.get("spec");
    let schedule = spec
        .and_then(|s| s.get("schedule"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if schedule.is_empty() {
        errs.push(FieldErr::required("spec.schedule", ""));
    } else if !valid_schedule(schedule) {
        errs.push(FieldErr::invalid(
            "spec.schedule",
            schedule,
            "unparseable schedule",
        ));
    }
    if let Some(p) = spec
        .and_then(|s| s.get("concurrencyPolicy"))
        .and_then(Value::as_str)
        && !["Allow", "Forbid", "Replace"].contains(&p)
    {
        errs.push(FieldErr::not_supported(
            "spec.concurrencyPolicy",
            p,
            &["Allow", "Forbid", "Replace"],
        ));
    }
    let job_spec = spec
        .and_then(|s| s.get("jobTemplate"))
        .and_then(|t| t.get("spec"));
    errs.extend(validate_job_spec(job_spec, "spec.jobTemplate.spec"));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(sel: Value, labels: Value) -> Value {
        json!({"spec": {"replicas": 1, "selector": sel, "template": {"metadata": {"labels": labels},
              "spec": {"containers": [{"name": "a", "image": "nginx"}]}}}})
    }

    #[test]
    fn deployment_selector_must_match_template() {
        assert!(
            validate_workload(
                KindId::Deployment,
                &deploy(
                    json!({"matchLabels": {"app": "web"}}),
                    json!({"app": "web"})
                ),
                None
            )
            .is_empty()
        );
        let errs = validate_workload(
            KindId::Deployment,
            &deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "db"})),
            None,
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.template.metadata.labels");
        assert_eq!(
            errs[0].message(),
            "Invalid value: \"map[string]string{\\\"app\\\":\\\"db\\\"}\": `selector` does not match template `labels`"
        );
        let errs = validate_workload(
            KindId::Deployment,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}),
            None,
        );
        assert_eq!(errs[0].field, "spec.selector");
    }

    #[test]
    fn negative_replicas_and_bad_restart_policy() {
        let mut d = deploy(json!({"matchLabels": {"a": "b"}}), json!({"a": "b"}));
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let f: Vec<String> = validate_workload(KindId::ReplicaSet, &d, None)
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(f, ["spec.replicas", "spec.template.spec.restartPolicy"]);
    }

    #[test]
    fn selector_is_immutable() {
        let old = deploy(
            json!({"matchLabels": {"a": "b"}}),
            json!({"a": "b", "c": "d"}),
        );
        let new = deploy(
            json!({"matchLabels": {"c": "d"}}),
            json!({"a": "b", "c": "d"}),
        );
        let errs = validate_workload(KindId::Deployment, &new, Some(&old));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message().ends_with("field is immutable"));
    }

    #[test]
    fn job_restart_policy_and_template_immutability() {
        let job = |policy: &str, image: &str| json!({"spec": {"template": {"spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": image}]}}}});
        assert!(validate_job(&job("Never", "x"), None).is_empty());
        let errs = validate_job(&job("Always", "x"), None);
        assert_eq!(
            errs[0].message(),
            "Required value: valid values: \"OnFailure\", \"Never\""
        );
        let errs = validate_job(&job("Never", "y"), Some(&job("Never", "x")));
        assert_eq!(errs[0].field, "spec.template");
    }

    #[test]
    fn cron_schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 * * MON-FRI",
            "@hourly",
            "@every 1h",
            "CRON_TZ=UTC 0 * * * *",
        ] {
            assert!(valid_schedule(ok), "{ok}");
        }
        for bad in ["", "* * *", "@sometimes", "a b c d e f", "TZ=UTC"] {
            assert!(!valid_schedule(bad), "{bad}");
        }
        let cj = json!({"spec": {"schedule": "bogus", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}}}}}});
        let errs = validate_cronjob(&cj);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.schedule");
    }
}
