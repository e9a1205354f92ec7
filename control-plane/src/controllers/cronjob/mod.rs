//! The CronJob controller (Kubernetes' `cronjob-controller` v2): creates a
//! Job named `<cronjob>-<minutes since epoch>` at each scheduled time,
//! honouring `concurrencyPolicy` (Allow / Forbid / Replace),
//! `startingDeadlineSeconds`, `suspend` and `timeZone`, tracks
//! `status.active` / `lastScheduleTime` / `lastSuccessfulTime`, and keeps
//! `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` finished Jobs.
//!
//! Start at [`reconcile`]; the schedule arithmetic is in [`logic`].

pub mod logic;

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::error::{Error, KubeResultExt, api_message, is_conflict, is_not_found};
use super::events::{EventType, Recorder};
use super::informer::Informer;
use super::job::logic::finished;
use super::owners::{self, controller_of, controller_ref};
use super::{Shared, run_controller};

/// State shared by CronJob reconciles.
pub struct Ctx {
    client: Client,
    jobs: Store<Job>,
    recorder: Recorder,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let cj_informer: Informer<CronJob> = shared.informers.get();
    let job_informer: Informer<Job> = shared.informers.get();
    let (cj_stream, job_stream) = (cj_informer.stream(), job_informer.stream());
    cj_informer.ready().await;
    job_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        jobs: job_informer.store(),
        recorder: Recorder::new(shared.client.clone(), "cronjob-controller"),
    });
    let controller = Controller::for_stream(cj_stream, cj_informer.store()).watches_stream(
        job_stream,
        |job: Job| {
            let r = controller_of(&job.metadata).filter(|r| r.kind == "CronJob")?;
            Some(ObjectRef::<CronJob>::new(&r.name).within(&job.namespace().unwrap_or_default()))
        },
    );
    run_controller(
        "cronjob",
        controller,
        shared.config.concurrent_syncs,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn finish_time(job: &Job) -> Timestamp {
    job.status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref().or(s.start_time.as_ref()))
        .or(job.metadata.creation_timestamp.as_ref())
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

fn until(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO) + Duration::from_millis(100)
}

/// One level-triggered sync of a CronJob (Kubernetes' `syncCronJob`).
pub async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let uid = cj.uid().unwrap_or_default();
    let now = Timestamp::now();
    let spec = cj.spec.clone().unwrap_or_default();
    let cj_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let old = cj.status.clone().unwrap_or_default();
    let mut status = old.clone();

    let owned: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
        .filter(|j| controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
        .collect();
    let was_active = |j: &Job| old.active.iter().flatten().any(|r| r.uid == j.metadata.uid);
    let mut active = Vec::new();
    let (mut succeeded, mut failed) = (Vec::new(), Vec::new());
    for job in &owned {
        match finished(job).map(|c| c.type_.clone()) {
            None if job.metadata.deletion_timestamp.is_none() => active.push(job_ref(job)),
            None => {}
            Some(kind) => {
                if was_active(job) {
                    ctx.recorder.record(
                        cj.as_ref(),
                        EventType::Normal,
                        "SawCompletedJob",
                        format!("Saw completed job: {}, condition: {kind}", job.name_any()),
                    );
                }
                if kind == "Complete" {
                    let t = finish_time(job);
                    if status.last_successful_time.as_ref().is_none_or(|l| l.0 < t) {
                        status.last_successful_time = Some(Time(t));
                    }
                    succeeded.push((job.name_any(), t));
                } else {
                    failed.push((job.name_any(), finish_time(job)));
                }
            }
        }
    }
    active.sort_by(|a, b| a.name.cmp(&b.name));
    status.active = (!active.is_empty()).then_some(active.clone());

    // History limits.
    let mut doomed =
        logic::history_to_delete(succeeded, spec.successful_jobs_history_limit.unwrap_or(3));
    doomed.extend(logic::history_to_delete(
        failed,
        spec.failed_jobs_history_limit.unwrap_or(1),
    ));
    for job_name in doomed {
        match job_api.delete(&job_name, &DeleteParams::background()).await {
            Ok(_) => ctx.recorder.record(
                cj.as_ref(),
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted job {job_name}"),
            ),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).ctx(|| format!("deleting old job {ns}/{job_name}")),
        }
    }

    if cj.metadata.deletion_timestamp.is_some() || spec.suspend.unwrap_or(false) {
        write_status(&cj_api, &name, &old, &status).await?;
        return Ok(Action::await_change());
    }
    let schedule = match logic::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(msg) => {
            ctx.recorder
                .record(cj.as_ref(), EventType::Warning, "InvalidSchedule", msg);
            write_status(&cj_api, &name, &old, &status).await?;
            return Ok(Action::await_change());
        }
    };
    let mut earliest = old
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    if let Some(deadline) = spec.starting_deadline_seconds {
        earliest = earliest.max(now - SignedDuration::from_secs(deadline));
    }
    let next = schedule.next_after(now);
    let requeue = |next: Option<Timestamp>| {
        next.map_or(Action::await_change(), |t| Action::requeue(until(t, now)))
    };
    let (scheduled, missed) = schedule.most_recent(earliest, now);
    if missed > logic::TOO_MANY_MISSED {
        ctx.recorder.record(
            cj.as_ref(),
            EventType::Warning,
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
        );
    }
    let Some(scheduled) = scheduled else {
        write_status(&cj_api, &name, &old, &status).await?;
        return Ok(requeue(next));
    };
    if let Some(deadline) = spec.starting_deadline_seconds
        && scheduled + SignedDuration::from_secs(deadline) < now
    {
        ctx.recorder.record(
            cj.as_ref(),
            EventType::Warning,
            "MissSchedule",
            format!("Missed scheduled time to start a job: {scheduled}"),
        );
        write_status(&cj_api, &name, &old, &status).await?;
        return Ok(requeue(next));
    }
    let job_name = logic::job_name(&name, scheduled);
    let already = owned.iter().any(|j| j.name_any() == job_name);
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if !already && !active.is_empty() {
        match policy {
            "Forbid" => {
                write_status(&cj_api, &name, &old, &status).await?;
                return Ok(requeue(next));
            }
            "Replace" => {
                for r in &active {
                    let Some(n) = r.name.as_deref() else { continue };
                    match job_api.delete(n, &DeleteParams::background()).await {
                        Ok(_) => ctx.recorder.record(
                            cj.as_ref(),
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("Deleted job {n}"),
                        ),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e).ctx(|| format!("replacing job {ns}/{n}")),
                    }
                }
                status.active = None;
            }
            _ => {}
        }
    }
    if !already {
        let template = spec.job_template.clone();
        let meta = template.metadata.clone().unwrap_or_default();
        let mut annotations = meta.annotations.clone().unwrap_or_default();
        annotations.insert(logic::SCHEDULED_TIMESTAMP.into(), scheduled.to_string());
        let job = Job {
            metadata: ObjectMeta {
                name: Some(job_name.clone()),
                namespace: Some(ns.clone()),
                labels: meta.labels.clone(),
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref(cj.as_ref())]),
                ..ObjectMeta::default()
            },
            spec: template.spec.clone(),
            status: None,
        };
        match job_api.create(&PostParams::default(), &job).await {
            Ok(created) => {
                ctx.recorder.record(
                    cj.as_ref(),
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created job {job_name}"),
                );
                status
                    .active
                    .get_or_insert_with(Vec::new)
                    .push(job_ref(&created));
            }
            Err(e) if is_conflict(&e) => {}
            Err(e) => {
                ctx.recorder.record(
                    cj.as_ref(),
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating job: {}", api_message(&e)),
                );
                return Err(e).ctx(|| format!("creating job {ns}/{job_name}"));
            }
        }
    }
    status.last_schedule_time = Some(Time(scheduled));
    write_status(&cj_api, &name, &old, &status).await?;
    Ok(requeue(next))
}

async fn write_status(
    api: &Api<CronJob>,
    name: &str,
    old: &CronJobStatus,
    new: &CronJobStatus,
) -> Result<(), Error> {
    owners::patch_status(api, name, old, new, &format!("cronjob {name}")).await?;
    Ok(())
}
