//! The Job controller (Kubernetes' `job-controller`, plus the
//! `ttl-after-finished` controller): runs pods to `completions` with
//! `parallelism` (NonIndexed or Indexed with the completion-index
//! annotation, label and `JOB_COMPLETION_INDEX`), replaces failed pods after
//! an exponential backoff until `backoffLimit`, enforces
//! `activeDeadlineSeconds`, honours `suspend`, sets the Complete/Failed
//! conditions, and deletes finished Jobs after `ttlSecondsAfterFinished`.
//!
//! Start at [`reconcile`]; the arithmetic is in [`logic`].

pub mod logic;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::api::DeleteParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::error::{Error, KubeResultExt, is_not_found};
use super::events::{EventType, Recorder};
use super::expectations::{Expectations, seen_pod};
use super::informer::Informer;
use super::owners::{self, LabelMatcher, Owner, controller_of, controller_ref};
use super::pods::{self, PodControl, is_active};
use super::replicaset::logic::{BURST_REPLICAS, compare_for_deletion, slow_start_batch};
use super::{Shared, run_controller};
use logic::{COMPLETION_INDEX, COMPLETION_INDEX_ENV, Counts, Failure};

/// Label with the Job's UID on its pods.
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// Label with the Job's name on its pods.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// State shared by Job reconciles.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    expectations: Expectations,
    recorder: Recorder,
    backoff_base: Duration,
    backoff_max: Duration,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let job_informer: Informer<Job> = shared.informers.get();
    let pod_informer: Informer<Pod> = shared.informers.get();
    let (job_stream, pod_stream) = (job_informer.stream(), pod_informer.stream());
    job_informer.ready().await;
    pod_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        pods: pod_informer.store(),
        expectations: Expectations::default(),
        recorder: Recorder::new(shared.client.clone(), "job-controller"),
        backoff_base: shared.config.job_backoff_base,
        backoff_max: shared.config.job_backoff_max,
    });
    let controller = Controller::for_stream(job_stream, job_informer.store()).watches_stream(
        pod_stream,
        |pod: Pod| {
            let r = controller_of(&pod.metadata).filter(|r| r.kind == "Job")?;
            Some(ObjectRef::<Job>::new(&r.name).within(&pod.namespace().unwrap_or_default()))
        },
    );
    run_controller(
        "job",
        controller,
        shared.config.concurrent_syncs,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

fn matcher(job: &Job) -> Result<LabelMatcher, Error> {
    let what = format!(
        "job {}/{}",
        job.namespace().unwrap_or_default(),
        job.name_any()
    );
    match job.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(sel) => LabelMatcher::new(Some(sel), &what),
        None => {
            let sel = LabelSelector {
                match_labels: Some(
                    [(CONTROLLER_UID.to_string(), job.uid().unwrap_or_default())].into(),
                ),
                match_expressions: None,
            };
            LabelMatcher::new(Some(&sel), &what)
        }
    }
}

fn index_of(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse()
        .ok()
}

/// When a finished pod finished: its latest container termination, else
/// its creation.
fn finish_time(pod: &Pod) -> Option<Timestamp> {
    let terminated = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max();
    terminated.or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// One level-triggered sync of a Job (Kubernetes' `syncJob`).
pub async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let key = format!("{ns}/{name}");
    let now = Timestamp::now();
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(done) = logic::finished(&job) {
        return ttl_after_finished(
            &job,
            &job_api,
            done.last_transition_time.as_ref().map(|t| t.0),
            now,
        )
        .await;
    }
    let needs_sync = ctx
        .expectations
        .satisfied(&key, |n| seen_pod(&ctx.pods, &ns, n));
    let candidates: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = Owner {
        reference: controller_ref(job.as_ref()),
        namespace: &ns,
        deleting: job.metadata.deletion_timestamp.is_some(),
    };
    let uid = job.uid().unwrap_or_default();
    let owned = owners::claim(&pod_api, &owner, &matcher(&job)?, candidates, || {
        owners::owner_still_current(&job_api, &name, &uid)
    })
    .await?;

    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_active(p)).cloned().collect();
    let succeeded_pods: Vec<&Arc<Pod>> = owned
        .iter()
        .filter(|p| pods::phase(p) == "Succeeded")
        .collect();
    let failed_pods: Vec<&Arc<Pod>> = owned
        .iter()
        .filter(|p| pods::phase(p) == "Failed")
        .collect();
    let indexed = logic::is_indexed(&job);
    let completions = logic::completions(&job);
    let mut done_indexes = logic::parse_indexes(old.completed_indexes.as_deref().unwrap_or(""));
    if indexed {
        done_indexes.extend(succeeded_pods.iter().filter_map(|p| index_of(p)));
        done_indexes.retain(|i| completions.is_none_or(|c| *i < c));
    }
    let mut counts = Counts {
        active: active.len() as i32,
        succeeded: if indexed {
            done_indexes.len() as i32
        } else {
            old.succeeded.unwrap_or(0).max(succeeded_pods.len() as i32)
        },
        failed: old.failed.unwrap_or(0).max(failed_pods.len() as i32),
    };
    let mut requeue: Option<Duration> = None;

    if logic::is_suspended(&job) {
        delete_pods(&ctx, &job, &key, &pod_api, &active).await?;
        counts.active = 0;
        logic::set_condition(
            &mut conditions,
            logic::condition("Suspended", "True", "JobSuspended", "Job suspended", now),
        );
        status.start_time = None;
    } else {
        if conditions
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "True")
        {
            logic::set_condition(
                &mut conditions,
                logic::condition("Suspended", "False", "JobResumed", "Job resumed", now),
            );
            status.start_time = None;
        }
        if status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
        let mut with_start = (*job).clone();
        with_start.status = Some(status.clone());
        let failure = if logic::exceeds_backoff_limit(&job, counts.failed) {
            Some(Failure::BackoffLimitExceeded)
        } else if logic::past_deadline(&with_start, now) {
            Some(Failure::DeadlineExceeded)
        } else {
            None
        };
        let complete = if indexed {
            completions.is_some_and(|c| done_indexes.len() as i32 >= c)
        } else {
            logic::is_complete(&job, counts)
        };
        if let Some(f) = failure {
            delete_pods(&ctx, &job, &key, &pod_api, &active).await?;
            counts.active = 0;
            logic::set_condition(
                &mut conditions,
                logic::condition("FailureTarget", "True", f.reason(), f.message(), now),
            );
            logic::set_condition(
                &mut conditions,
                logic::condition("Failed", "True", f.reason(), f.message(), now),
            );
            ctx.recorder.record(
                job.as_ref(),
                EventType::Warning,
                f.reason(),
                f.message().to_string(),
            );
        } else if complete {
            delete_pods(&ctx, &job, &key, &pod_api, &active).await?;
            counts.active = 0;
            let msg = "Reached expected number of succeeded pods";
            logic::set_condition(
                &mut conditions,
                logic::condition("SuccessCriteriaMet", "True", "CompletionsReached", msg, now),
            );
            logic::set_condition(
                &mut conditions,
                logic::condition("Complete", "True", "CompletionsReached", msg, now),
            );
            status.completion_time = Some(Time(now));
            ctx.recorder.record(
                job.as_ref(),
                EventType::Normal,
                "Completed",
                "Job completed".into(),
            );
        } else {
            if let Some(left) = logic::remaining_deadline(&with_start, now) {
                requeue = Some(left + Duration::from_millis(100));
            }
            if needs_sync && job.metadata.deletion_timestamp.is_none() {
                let wait = backoff_remaining(&ctx, &succeeded_pods, &failed_pods, now);
                if let Some(w) = wait {
                    requeue = Some(requeue.map_or(w, |r| r.min(w)));
                }
                let created = manage(
                    &ctx,
                    &job,
                    &key,
                    &pod_api,
                    &active,
                    &done_indexes,
                    counts,
                    wait.is_some(),
                )
                .await?;
                counts.active += created;
            }
        }
    }

    status.active = Some(counts.active);
    status.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
    status.succeeded = Some(counts.succeeded);
    status.failed = Some(counts.failed);
    status.completed_indexes = indexed.then(|| logic::format_indexes(&done_indexes));
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    write_status(&job_api, &name, &old, &status).await?;
    Ok(match requeue {
        Some(after) => Action::requeue(after),
        None if !needs_sync => Action::requeue(Duration::from_secs(5)),
        None => Action::await_change(),
    })
}

/// How long new pods must still wait after recent failures, if at all.
fn backoff_remaining(
    ctx: &Ctx,
    succeeded: &[&Arc<Pod>],
    failed: &[&Arc<Pod>],
    now: Timestamp,
) -> Option<Duration> {
    let last_success = succeeded.iter().filter_map(|p| finish_time(p)).max();
    let recent: Vec<Timestamp> = failed
        .iter()
        .filter_map(|p| finish_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last_failure = recent.iter().max()?;
    let delay = logic::backoff_delay(recent.len() as i32, ctx.backoff_base, ctx.backoff_max);
    let ready_at = *last_failure + SignedDuration::try_from(delay).unwrap_or(SignedDuration::ZERO);
    (ready_at > now)
        .then(|| Duration::try_from(ready_at.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// Creates or deletes pods towards the wanted active count; returns the
/// number created.
#[allow(clippy::too_many_arguments)]
async fn manage(
    ctx: &Ctx,
    job: &Job,
    key: &str,
    pod_api: &Api<Pod>,
    active: &[Arc<Pod>],
    done: &BTreeSet<i32>,
    counts: Counts,
    in_backoff: bool,
) -> Result<i32, Error> {
    let now = Timestamp::now();
    if logic::is_indexed(job) {
        let completions = logic::completions(job).unwrap_or(0);
        // Duplicates and pods of completed indexes go first.
        let mut seen = BTreeSet::new();
        let mut extra = Vec::new();
        for p in active {
            match index_of(p) {
                Some(i) if i < completions && !done.contains(&i) && seen.insert(i) => {}
                _ => extra.push(p.clone()),
            }
        }
        delete_pods(ctx, job, key, pod_api, &extra).await?;
        let want = logic::parallelism(job)
            .min(completions - done.len() as i32)
            .max(0);
        let room = (want - seen.len() as i32).max(0) as usize;
        if in_backoff || room == 0 {
            return Ok(0);
        }
        let indexes = logic::indexes_to_start(completions, done, &seen, room.min(BURST_REPLICAS));
        return create_pods(
            ctx,
            job,
            key,
            pod_api,
            indexes.into_iter().map(Some).collect(),
        )
        .await;
    }
    let want = logic::want_active(job, counts);
    if counts.active > want {
        let mut victims: Vec<Arc<Pod>> = active.to_vec();
        victims.sort_by(|a, b| compare_for_deletion(a, 0, b, 0, now));
        victims.truncate((counts.active - want) as usize);
        delete_pods(ctx, job, key, pod_api, &victims).await?;
        return Ok(0);
    }
    if in_backoff || counts.active == want {
        return Ok(0);
    }
    let n = ((want - counts.active) as usize).min(BURST_REPLICAS);
    create_pods(ctx, job, key, pod_api, vec![None; n]).await
}

async fn create_pods(
    ctx: &Ctx,
    job: &Job,
    key: &str,
    pod_api: &Api<Pod>,
    indexes: Vec<Option<i32>>,
) -> Result<i32, Error> {
    let Some(template) = job.spec.as_ref().map(|s| s.template.clone()) else {
        return Ok(0);
    };
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let mut order = indexes.clone();
    order.reverse();
    let queue = std::sync::Mutex::new(order);
    let control = PodControl {
        api: pod_api,
        recorder: &ctx.recorder,
        owner: job,
    };
    let (created, err) = slow_start_batch(indexes.len(), 1, || {
        let next = queue.lock().map(|mut q| q.pop()).ok().flatten().flatten();
        let prefix = match next {
            Some(i) => format!("{name}-{i}-"),
            None => format!("{name}-"),
        };
        let mut pod = pods::pod_from_template(
            &template,
            &job.namespace().unwrap_or_default(),
            &prefix,
            Some(controller_ref(job)),
        );
        let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in [
            (CONTROLLER_UID, &uid),
            ("controller-uid", &uid),
            (JOB_NAME, &name),
            ("job-name", &name),
        ] {
            labels.entry(k.to_string()).or_insert_with(|| v.clone());
        }
        if let Some(i) = next {
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            pod.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(COMPLETION_INDEX.into(), i.to_string());
            if let Some(spec) = pod.spec.as_mut() {
                if spec.hostname.is_none() {
                    spec.hostname = Some(format!("{name}-{i}"));
                }
                let env = EnvVar {
                    name: COMPLETION_INDEX_ENV.into(),
                    value: Some(i.to_string()),
                    value_from: None,
                };
                for c in spec
                    .containers
                    .iter_mut()
                    .chain(spec.init_containers.iter_mut().flatten())
                {
                    c.env.get_or_insert_with(Vec::new).push(env.clone());
                }
            }
        }
        let control = &control;
        async move { control.create(&pod).await }
    })
    .await;
    let created: Vec<String> = created.into_iter().flatten().collect();
    let n = created.len() as i32;
    ctx.expectations.expect_creations(key, created);
    if let Some(e) = err {
        return Err(e).ctx(|| format!("creating pods for job {key}"));
    }
    Ok(n)
}

async fn delete_pods(
    ctx: &Ctx,
    job: &Job,
    key: &str,
    pod_api: &Api<Pod>,
    victims: &[Arc<Pod>],
) -> Result<(), Error> {
    let control = PodControl {
        api: pod_api,
        recorder: &ctx.recorder,
        owner: job,
    };
    control
        .delete_expected(&ctx.expectations, key, victims, &DeleteParams::background())
        .await
}

async fn write_status(
    api: &Api<Job>,
    name: &str,
    old: &JobStatus,
    new: &JobStatus,
) -> Result<(), Error> {
    owners::patch_status(api, name, old, new, &format!("job {name}")).await?;
    Ok(())
}

/// Kubernetes' `ttl-after-finished` controller for one finished Job.
async fn ttl_after_finished(
    job: &Job,
    api: &Api<Job>,
    finished_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<Action, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let finished_at = finished_at
        .or_else(|| {
            job.status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map(|t| t.0)
        })
        .unwrap_or(now);
    let expires = finished_at + SignedDuration::from_secs(i64::from(ttl));
    if expires > now {
        let wait = Duration::try_from(expires.duration_since(now)).unwrap_or(Duration::ZERO);
        return Ok(Action::requeue(wait + Duration::from_millis(100)));
    }
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..DeleteParams::foreground()
    };
    match api.delete(&job.name_any(), &dp).await {
        Ok(_) => {
            tracing::info!(job = %job.name_any(), "deleted finished job after its TTL");
            Ok(Action::await_change())
        }
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(e).ctx(|| format!("deleting finished job {}", job.name_any())),
    }
}
