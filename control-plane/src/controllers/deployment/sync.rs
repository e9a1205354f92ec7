//! One sync of one Deployment: the API writes (ReplicaSet create/scale/
//! delete, Deployment status and revision annotation) around the pure
//! decisions of `util`, in the order Kubernetes' `sync.go`, `rolling.go` and
//! `recreate.go` make them. The ReplicaSet list and the Deployment status are
//! updated in memory after each write, so later steps see earlier ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::Ctx;
use super::hash::{POD_TEMPLATE_HASH, compute_hash, equal_ignore_hash};
use super::util::{self, reason};
use crate::controllers::error::is_namespace_terminating;
use crate::controllers::error::{Error, KubeResultExt, api_message, is_conflict, is_not_found};
use crate::controllers::events::EventType;
use crate::controllers::owners::{self, LabelMatcher, Owner, controller_of, controller_ref};
use crate::controllers::pods;

/// The state of one sync.
pub(super) struct DeploymentSync<'a> {
    ctx: &'a Ctx,
    /// The Deployment with defaults applied and in-memory status updates.
    d: Deployment,
    /// The original object (for ownership and the controller reference).
    original: Arc<Deployment>,
    /// Status as the API server has it (base of the next status patch).
    written: DeploymentStatus,
    ns: String,
    name: String,
    matcher: LabelMatcher,
    /// ReplicaSets this Deployment owns.
    rss: Vec<ReplicaSet>,
    d_api: Api<Deployment>,
    rs_api: Api<ReplicaSet>,
    requeue: Option<Duration>,
}

fn to_json<T: serde::Serialize>(v: &T, what: &str) -> Result<Value, Error> {
    serde_json::to_value(v).map_err(|source| Error::Json {
        context: format!("serializing {what}"),
        source,
    })
}

impl<'a> DeploymentSync<'a> {
    pub(super) fn new(d: &Arc<Deployment>, ctx: &'a Ctx) -> Result<Self, Error> {
        let ns = d.namespace().unwrap_or_default();
        let name = d.name_any();
        let defaulted = util::with_defaults(d);
        let matcher = LabelMatcher::new(
            defaulted.spec.as_ref().map(|s| &s.selector),
            &format!("deployment {ns}/{name}"),
        )?;
        Ok(DeploymentSync {
            ctx,
            written: d.status.clone().unwrap_or_default(),
            d: defaulted,
            original: d.clone(),
            d_api: Api::namespaced(ctx.client.clone(), &ns),
            rs_api: Api::namespaced(ctx.client.clone(), &ns),
            ns,
            name,
            matcher,
            rss: Vec::new(),
            requeue: None,
        })
    }

    pub(super) fn deployment(&self) -> &Deployment {
        &self.d
    }

    pub(super) fn next_action(&self) -> Action {
        match self.requeue {
            Some(after) => Action::requeue(after),
            None => Action::await_change(),
        }
    }

    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    /// An empty selector would select every pod: Kubernetes refuses to act
    /// and only records the observed generation.
    pub(super) fn selects_everything(&self) -> bool {
        self.matcher.selects_all()
    }

    pub(super) async fn observe_generation_only(&mut self) -> Result<(), Error> {
        let mut status = self.status();
        if status.observed_generation.unwrap_or(0) < self.d.metadata.generation.unwrap_or(0) {
            status.observed_generation = self.d.metadata.generation;
            self.write_status(status).await?;
        }
        Ok(())
    }

    /// Kubernetes' `getReplicaSetsForDeployment`: adopt and release.
    pub(super) async fn claim_replicasets(&mut self) -> Result<(), Error> {
        let candidates: Vec<Arc<ReplicaSet>> = self
            .ctx
            .replicasets
            .state()
            .into_iter()
            .filter(|rs| rs.namespace().as_deref() == Some(self.ns.as_str()))
            .collect();
        let owner = Owner {
            reference: controller_ref(self.original.as_ref()),
            namespace: &self.ns,
            deleting: self.d.metadata.deletion_timestamp.is_some(),
        };
        let uid = self.original.uid().unwrap_or_default();
        let (d_api, name) = (self.d_api.clone(), self.name.clone());
        let owned = owners::claim(
            &self.rs_api,
            &owner,
            &self.matcher,
            candidates,
            || async move { owners::owner_still_current(&d_api, &name, &uid).await },
        )
        .await?;
        self.rss = owned.iter().map(|rs| rs.as_ref().clone()).collect();
        Ok(())
    }

    fn refs(&self, idx: &[usize]) -> Vec<&ReplicaSet> {
        idx.iter().map(|&i| &self.rss[i]).collect()
    }

    fn olds(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.rss.len()).filter(|&i| Some(i) != new).collect()
    }

    fn all(&self, new: Option<usize>) -> Vec<usize> {
        let mut all = self.olds(new);
        all.extend(new);
        all
    }

    /// Writes `status` as a merge patch against what the server has.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        let diff = owners::merge_diff(
            &to_json(&self.written, "status")?,
            &to_json(&status, "status")?,
        );
        if !diff.is_null() {
            self.d_api
                .patch_status(
                    &self.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": diff })),
                )
                .await
                .ctx(|| format!("updating status of deployment {}/{}", self.ns, self.name))?;
            self.written = status.clone();
        }
        self.d.status = Some(status);
        Ok(())
    }

    /// Kubernetes' `SetDeploymentRevision`, written to the Deployment's
    /// metadata (Skiff's `/status` keeps only `.status`).
    async fn set_deployment_revision(&mut self, revision: &str) -> Result<(), Error> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(util::REVISION));
        if current.map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {util::REVISION: revision}}});
        self.d_api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .ctx(|| format!("setting revision of deployment {}/{}", self.ns, self.name))?;
        self.d
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(util::REVISION.into(), revision.into());
        Ok(())
    }

    pub(super) async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if let Some(cond) = util::paused_condition(&self.d, Timestamp::now()) {
            let mut status = self.status();
            util::set_condition(&mut status, cond);
            self.write_status(status).await?;
        }
        Ok(())
    }

    /// Kubernetes' `getNewReplicaSet`: finds (and syncs the annotations of)
    /// or creates the ReplicaSet for the current template.
    async fn sync_new_rs(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let existing = util::find_new(&self.d, &self.rss);
        let old_list: Vec<ReplicaSet> = self
            .olds(existing)
            .into_iter()
            .map(|i| self.rss[i].clone())
            .collect();
        let new_revision = util::max_revision(&old_list) + 1;
        if let Some(i) = existing {
            let mut copy = self.rss[i].clone();
            let annotations_changed =
                util::set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let want_min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = copy.spec.get_or_insert_with(ReplicaSetSpec::default);
            let min_ready_changed =
                spec.min_ready_seconds.unwrap_or(0) != want_min_ready.unwrap_or(0);
            if annotations_changed || min_ready_changed {
                spec.min_ready_seconds = want_min_ready;
                let patch = json!({
                    "metadata": {"annotations": copy.metadata.annotations},
                    "spec": {"minReadySeconds": want_min_ready.unwrap_or(0)},
                });
                let rs_name = copy.name_any();
                let updated = self
                    .rs_api
                    .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .ctx(|| format!("updating annotations of replicaset {}/{rs_name}", self.ns))?;
                self.rss[i] = updated;
                return Ok(Some(i));
            }
            let revision = util::revision(&self.rss[i]).to_string();
            self.set_deployment_revision(&revision).await?;
            let status = self.status();
            if util::has_progress_deadline(&self.d)
                && util::condition(&status, "Progressing").is_none()
            {
                let mut status = status;
                let msg = format!("Found new replica set \"{}\"", self.rss[i].name_any());
                util::set_condition(
                    &mut status,
                    util::new_condition(
                        "Progressing",
                        "True",
                        reason::FOUND_NEW_RS,
                        msg,
                        Timestamp::now(),
                    ),
                );
                self.write_status(status).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        self.create_new_rs(new_revision).await.map(Some)
    }

    async fn create_new_rs(&mut self, new_revision: i64) -> Result<usize, Error> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let status = self.status();
        let hash = compute_hash(&spec.template, status.collision_count);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let rs_name = format!("{}-{hash}", self.name);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(self.ns.clone()),
                owner_references: Some(vec![controller_ref(self.original.as_ref())]),
                labels,
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let olds = self.olds(None);
        let mut all = self.refs(&olds);
        all.push(&rs);
        let replicas = util::new_rs_new_replicas(&self.d, &all, 0);
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(replicas);
        }
        util::set_new_rs_annotations(&self.d, &mut rs, new_revision, false);

        let mut already_exists = false;
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => created,
            Err(e) if is_conflict(&e) => {
                already_exists = true;
                let found = self
                    .rs_api
                    .get(&rs_name)
                    .await
                    .ctx(|| format!("reading existing replicaset {}/{rs_name}", self.ns))?;
                let ours = controller_of(&found.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.original.metadata.uid.as_ref());
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if !(ours && same) {
                    // A hash collision: salt the next hash and retry.
                    let mut status = self.status();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    return Err(e).ctx(|| {
                        format!("replicaset {rs_name} collides with the new template; retrying")
                    });
                }
                found
            }
            Err(e) if is_namespace_terminating(&e) => {
                return Err(e).ctx(|| format!("creating replicaset {rs_name}"));
            }
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set \"{rs_name}\": {}",
                    api_message(&e)
                );
                if util::has_progress_deadline(&self.d) {
                    let mut status = self.status();
                    util::set_condition(
                        &mut status,
                        util::new_condition(
                            "Progressing",
                            "False",
                            reason::FAILED_RS_CREATE,
                            msg.clone(),
                            Timestamp::now(),
                        ),
                    );
                    let _ = self.write_status(status).await;
                }
                self.ctx.recorder.record(
                    self.original.as_ref(),
                    EventType::Warning,
                    reason::FAILED_RS_CREATE,
                    msg,
                );
                return Err(e).ctx(|| format!("creating replicaset {rs_name}"));
            }
        };
        if !already_exists && replicas > 0 {
            self.ctx.recorder.record(
                self.original.as_ref(),
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
            );
        }
        self.set_deployment_revision(&new_revision.to_string())
            .await?;
        if !already_exists && util::has_progress_deadline(&self.d) {
            let mut status = self.status();
            util::set_condition(
                &mut status,
                util::new_condition(
                    "Progressing",
                    "True",
                    reason::NEW_RS_CREATED,
                    format!("Created new replica set \"{rs_name}\""),
                    Timestamp::now(),
                ),
            );
            self.write_status(status).await?;
        }
        self.rss.push(created);
        Ok(self.rss.len() - 1)
    }

    /// Kubernetes' `scaleReplicaSet`: sets the size and the replicas
    /// annotations; true if the size changed.
    async fn scale_rs(&mut self, i: usize, size: i32) -> Result<bool, Error> {
        let rs = &self.rss[i];
        let old = util::rs_replicas(rs);
        let want = util::replicas(&self.d);
        let max = want + util::max_surge(&self.d);
        let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let annotations_changed = util::set_replicas_annotations(&mut annotations, want, max);
        if old == size && !annotations_changed {
            return Ok(false);
        }
        let rs_name = rs.name_any();
        let patch = json!({
            "metadata": {"annotations": {
                util::DESIRED_REPLICAS: want.to_string(),
                util::MAX_REPLICAS: max.to_string(),
            }},
            "spec": {"replicas": size},
        });
        let updated = self
            .rs_api
            .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .ctx(|| format!("scaling replicaset {}/{rs_name} to {size}", self.ns))?;
        self.rss[i] = updated;
        if old != size {
            let direction = if old < size { "up" } else { "down" };
            self.ctx.recorder.record(
                self.original.as_ref(),
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled {direction} replica set {rs_name} from {old} to {size}"),
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Kubernetes' `isScalingEvent`.
    pub(super) async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let new = self.sync_new_rs(false).await?;
        let want = util::replicas(&self.d);
        Ok(self.all(new).into_iter().any(|i| {
            let rs = &self.rss[i];
            util::rs_replicas(rs) > 0
                && util::desired_replicas_annotation(rs).is_some_and(|d| d != want)
        }))
    }

    /// Kubernetes' `sync`: scale (proportionally if needed), clean up when
    /// paused, and update the status.
    pub(super) async fn scale_and_sync_status(&mut self) -> Result<(), Error> {
        let new = self.sync_new_rs(false).await?;
        self.scale(new).await?;
        if self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
            self.cleanup(new).await?;
        }
        self.sync_status(new).await
    }

    async fn scale(&mut self, new: Option<usize>) -> Result<(), Error> {
        let want = util::replicas(&self.d);
        let olds = self.olds(new);
        let pick = util::active_or_latest(new.map(|i| &self.rss[i]), &self.refs(&olds));
        if let Some(pick) = pick {
            let i = match pick {
                util::ActiveOrLatest::New => new.unwrap_or_default(),
                util::ActiveOrLatest::Old(k) => olds[k],
            };
            if util::rs_replicas(&self.rss[i]) != want {
                self.scale_rs(i, want).await?;
            }
            return Ok(());
        }
        if util::is_saturated(&self.d, new.map(|i| &self.rss[i])) {
            for i in olds {
                if util::rs_replicas(&self.rss[i]) > 0 {
                    self.scale_rs(i, 0).await?;
                }
            }
            return Ok(());
        }
        if util::is_rolling(&self.d) {
            let all = self.all(new);
            let plan = util::proportional_plan(&self.d, &self.refs(&all));
            for (k, size) in plan {
                self.scale_rs(all[k], size).await?;
            }
        }
        Ok(())
    }

    async fn cleanup(&mut self, new: Option<usize>) -> Result<(), Error> {
        let olds = self.olds(new);
        let doomed = util::history_to_delete(&self.d, &self.refs(&olds));
        for k in doomed {
            let rs_name = self.rss[olds[k]].name_any();
            match self.rs_api.delete(&rs_name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::debug!(deployment = %self.name, replicaset = %rs_name, "deleted old replicaset")
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(e).ctx(|| format!("deleting old replicaset {}/{rs_name}", self.ns));
                }
            }
        }
        Ok(())
    }

    async fn sync_status(&mut self, new: Option<usize>) -> Result<(), Error> {
        let all = self.all(new);
        let status = util::calculate_status(
            &self.d,
            &self.refs(&all),
            new.map(|i| &self.rss[i]),
            Timestamp::now(),
        );
        if Some(&status) != self.d.status.as_ref() {
            self.write_status(status).await?;
        }
        Ok(())
    }

    /// Kubernetes' `syncRolloutStatus`.
    async fn sync_rollout_status(&mut self, new: Option<usize>) -> Result<(), Error> {
        let all = self.all(new);
        let now = Timestamp::now();
        let status =
            util::rollout_status(&self.d, &self.refs(&all), new.map(|i| &self.rss[i]), now);
        if Some(&status) == self.d.status.as_ref() {
            self.requeue = util::requeue_stuck_after(&self.d, &status, now);
            return Ok(());
        }
        self.write_status(status).await
    }

    pub(super) async fn status_only(&mut self) -> Result<(), Error> {
        let new = self.sync_new_rs(false).await?;
        self.sync_status(new).await
    }

    /// Kubernetes' `rolloutRolling`.
    pub(super) async fn rollout_rolling(&mut self) -> Result<(), Error> {
        let Some(new) = self.sync_new_rs(true).await? else {
            return Ok(());
        };
        let all = self.all(Some(new));
        if let Some(target) = util::reconcile_new_target(&self.d, &self.refs(&all), &self.rss[new])
            && self.scale_rs(new, target).await?
        {
            return self.sync_rollout_status(Some(new)).await;
        }
        if self.reconcile_old(new).await? {
            return self.sync_rollout_status(Some(new)).await;
        }
        if util::is_complete(&self.d, &self.status()) {
            self.cleanup(Some(new)).await?;
        }
        self.sync_rollout_status(Some(new)).await
    }

    /// Kubernetes' `reconcileOldReplicaSets`.
    async fn reconcile_old(&mut self, new: usize) -> Result<bool, Error> {
        let active_old: Vec<usize> = self
            .olds(Some(new))
            .into_iter()
            .filter(|&i| util::rs_replicas(&self.rss[i]) > 0)
            .collect();
        if active_old.is_empty() {
            return Ok(false);
        }
        let all = self.all(Some(new));
        let max_down = util::max_scaled_down(&self.d, &self.refs(&all), &self.rss[new]);
        if max_down <= 0 {
            return Ok(false);
        }
        let mut total = 0;
        for (k, size) in util::cleanup_unhealthy_plan(&self.refs(&active_old), max_down) {
            let i = active_old[k];
            total += util::rs_replicas(&self.rss[i]) - size;
            self.scale_rs(i, size).await?;
        }
        let all = self.all(Some(new));
        for (k, size) in
            util::scale_down_old_plan(&self.d, &self.refs(&all), &self.refs(&active_old))
        {
            let i = active_old[k];
            total += util::rs_replicas(&self.rss[i]) - size;
            self.scale_rs(i, size).await?;
        }
        Ok(total > 0)
    }

    /// Kubernetes' `rolloutRecreate`.
    pub(super) async fn rollout_recreate(&mut self) -> Result<(), Error> {
        let mut new = self.sync_new_rs(false).await?;
        let mut scaled = false;
        for i in self.olds(new) {
            if util::rs_replicas(&self.rss[i]) > 0 {
                scaled |= self.scale_rs(i, 0).await?;
            }
        }
        if scaled || self.old_pods_running(new) {
            return self.sync_rollout_status(new).await;
        }
        if new.is_none() {
            new = self.sync_new_rs(true).await?;
        }
        if let Some(i) = new {
            let want = util::replicas(&self.d);
            self.scale_rs(i, want).await?;
        }
        if util::is_complete(&self.d, &self.status()) {
            self.cleanup(new).await?;
        }
        self.sync_rollout_status(new).await
    }

    /// Kubernetes' `oldPodsRunning`: old ReplicaSets still report pods, or
    /// the cache holds a non-terminal pod of an old ReplicaSet.
    fn old_pods_running(&self, new: Option<usize>) -> bool {
        let olds = self.olds(new);
        if olds
            .iter()
            .map(|&i| self.rss[i].status.as_ref().map_or(0, |s| s.replicas))
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let old_uids: Vec<&str> = olds
            .iter()
            .filter_map(|&i| self.rss[i].metadata.uid.as_deref())
            .collect();
        self.ctx.pods.state().iter().any(|p| {
            p.metadata.namespace.as_deref() == Some(self.ns.as_str())
                && controller_of(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid.as_str()))
                && !matches!(pods::phase(p), "Succeeded" | "Failed")
        })
    }
}
