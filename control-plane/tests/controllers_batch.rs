//! Job and CronJob controllers against the in-process API server; the test
//! plays the kubelet by finishing pods through pods/status.

mod controllers_common;

use std::time::Duration;

use anyhow::Result;
use controllers_common::{eventually, start_with};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(15);

async fn start_batch() -> Result<controllers_common::Cluster> {
    start_with(&["job", "cronjob", "garbagecollector"], |c| {
        c.job_backoff_base = Duration::from_millis(200);
        c.job_backoff_max = Duration::from_secs(1);
    })
    .await
}

fn job_json(name: &str, spec: serde_json::Value) -> Result<Job> {
    let mut spec = spec;
    spec["template"] = json!({
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "task.wasm"}]}
    });
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name}, "spec": spec}),
    )?)
}

async fn job_pods(client: &Client, job: &str) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let pods = api
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await?
        .items;
    Ok(pods)
}

async fn finish(client: &Client, pod: &Pod, phase: &str) -> Result<()> {
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let now = jiff::Timestamp::now().to_string();
    let exit = if phase == "Succeeded" { 0 } else { 1 };
    let patch = json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "c", "image": "task.wasm", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit, "finishedAt": now, "startedAt": now}}
    }]}});
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

fn condition(job: &Job, type_: &str) -> Option<(String, Option<String>)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn finish_running(client: &Client, job: &str, phase: &str) -> Result<usize> {
    let mut n = 0;
    for p in job_pods(client, job).await? {
        let ph = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if ph != "Succeeded" && ph != "Failed" && p.metadata.deletion_timestamp.is_none() {
            finish(client, &p, phase).await?;
            n += 1;
        }
    }
    Ok(n)
}

#[tokio::test]
async fn job_runs_to_completion_with_parallelism() -> Result<()> {
    let cluster = start_batch().await?;
    let client = cluster.client.clone();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    jobs.create(
        &PostParams::default(),
        &job_json("calc", json!({"completions": 3, "parallelism": 2}))?,
    )
    .await?;
    eventually("2 parallel pods", T, || async {
        Ok((job_pods(&client, "calc").await?.len() == 2).then_some(()))
    })
    .await?;
    let job = eventually("complete", T, || async {
        finish_running(&client, "calc", "Succeeded").await?;
        let j = jobs.get("calc").await?;
        Ok(condition(&j, "Complete").is_some().then_some(j))
    })
    .await?;
    assert_eq!(
        condition(&job, "Complete"),
        Some(("True".into(), Some("CompletionsReached".into())))
    );
    let s = job.status.clone().unwrap_or_default();
    assert_eq!((s.succeeded, s.active), (Some(3), Some(0)));
    assert!(s.completion_time.is_some() && s.start_time.is_some());
    assert_eq!(
        job_pods(&client, "calc").await?.len(),
        3,
        "never more pods than completions"
    );
    Ok(())
}

#[tokio::test]
async fn failing_job_stops_at_backoff_limit() -> Result<()> {
    let cluster = start_batch().await?;
    let client = cluster.client.clone();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    jobs.create(
        &PostParams::default(),
        &job_json("flaky", json!({"backoffLimit": 2}))?,
    )
    .await?;
    let job = eventually("failed", T, || async {
        finish_running(&client, "flaky", "Failed").await?;
        let j = jobs.get("flaky").await?;
        Ok(condition(&j, "Failed").is_some().then_some(j))
    })
    .await?;
    assert_eq!(
        condition(&job, "Failed"),
        Some(("True".into(), Some("BackoffLimitExceeded".into())))
    );
    assert_eq!(
        job.status.as_ref().and_then(|s| s.failed),
        Some(3),
        "backoffLimit 2 allows 3 attempts"
    );
    assert_eq!(job_pods(&client, "flaky").await?.len(), 3);
    Ok(())
}

#[tokio::test]
async fn indexed_job_and_ttl_after_finished() -> Result<()> {
    let cluster = start_batch().await?;
    let client = cluster.client.clone();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    jobs.create(
        &PostParams::default(),
        &job_json(
            "idx",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        )?,
    )
    .await?;
    let pods = eventually("3 indexed pods", T, || async {
        let pods = job_pods(&client, "idx").await?;
        Ok((pods.len() == 3).then_some(pods))
    })
    .await?;
    let mut indexes: Vec<String> = pods
        .iter()
        .filter_map(|p| {
            p.annotations()
                .get("batch.kubernetes.io/job-completion-index")
                .cloned()
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    for p in &pods {
        let idx = p
            .annotations()
            .get("batch.kubernetes.io/job-completion-index")
            .cloned();
        let env = p
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].env.clone())
            .unwrap_or_default();
        assert!(
            env.iter()
                .any(|e| e.name == "JOB_COMPLETION_INDEX" && e.value == idx)
        );
        assert_eq!(
            p.labels().get("batch.kubernetes.io/job-completion-index"),
            idx.as_ref()
        );
    }
    let job = eventually("complete", T, || async {
        finish_running(&client, "idx", "Succeeded").await?;
        let j = jobs.get("idx").await?;
        Ok(condition(&j, "Complete").is_some().then_some(j))
    })
    .await?;
    assert_eq!(
        job.status
            .as_ref()
            .and_then(|s| s.completed_indexes.clone())
            .as_deref(),
        Some("0-2")
    );
    // The TTL is set only now: with it from the start, a loaded machine could miss the
    // second in which the finished Job exists. Kubernetes' TTL controller honours a TTL
    // added to a finished Job too.
    jobs.patch(
        "idx",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ttlSecondsAfterFinished": 1}})),
    )
    .await?;
    eventually("deleted after its TTL", T, || async {
        Ok(jobs.get_opt("idx").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn cronjob_creates_jobs_and_honours_concurrency_policy() -> Result<()> {
    let cluster = start_batch().await?;
    let client = cluster.client.clone();
    let cjs: Api<CronJob> = Api::default_namespaced(client.clone());
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "t.wasm"}]}}}}
        }
    }))?;
    let cj = cjs.create(&PostParams::default(), &cj).await?;
    // An unfinished job of this CronJob from an earlier run.
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let mut old = job_json("tick-1", json!({}))?;
    old.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "batch/v1".into(),
            kind: "CronJob".into(),
            name: "tick".into(),
            uid: cj.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    ]);
    jobs.create(&PostParams::default(), &old).await?;
    // Pretend the last run was three minutes ago: a run is due now.
    let due = || async {
        let three_min_ago =
            (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(180)).to_string();
        cjs.patch_status(
            "tick",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lastScheduleTime": three_min_ago}})),
        )
        .await
    };
    due().await?;
    eventually("the old job listed as active", T, || async {
        let s = cjs.get("tick").await?.status.unwrap_or_default();
        Ok(s.active
            .is_some_and(|a| a.iter().any(|r| r.name.as_deref() == Some("tick-1")))
            .then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        jobs.list(&ListParams::default()).await?.items.len(),
        1,
        "Forbid: no overlapping run"
    );

    // Replace: the old job goes, a new one named after the minute comes.
    cjs.patch(
        "tick",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"concurrencyPolicy": "Replace"}})),
    )
    .await?;
    due().await?;
    let job = eventually("replacement job", T, || async {
        let list = jobs.list(&ListParams::default()).await?.items;
        let live: Vec<Job> = list
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .collect();
        Ok((live.len() == 1 && live[0].name_any() != "tick-1").then(|| live[0].clone()))
    })
    .await?;
    let minutes: i64 = job.name_any().trim_start_matches("tick-").parse()?;
    let now_minutes = jiff::Timestamp::now().as_second() / 60;
    assert!(
        minutes == now_minutes || minutes == now_minutes - 1,
        "named after the scheduled minute"
    );
    assert_eq!(
        job.owner_references().first().map(|o| o.kind.as_str()),
        Some("CronJob")
    );
    assert!(
        job.annotations()
            .contains_key("batch.kubernetes.io/cronjob-scheduled-timestamp")
    );
    eventually("status", T, || async {
        let s = cjs.get("tick").await?.status.unwrap_or_default();
        Ok((s.active.map(|a| a.len()) == Some(1) && s.last_schedule_time.is_some()).then_some(()))
    })
    .await?;
    Ok(())
}
