//! The scheduler and controller manager, in process (`skiff up`) or as their
//! own processes (`skiff scheduler`, `skiff controller-manager`) talking to an
//! API server through a kubeconfig.

use std::path::Path;

use anyhow::Context;
use skiff_control_plane::{controllers, scheduler};

/// Runs the scheduler until it fails, logging the failure.
pub async fn run_scheduler(client: kube::Client, config: scheduler::SchedulerConfig) {
    if let Err(err) = scheduler::run(client, config).await {
        tracing::error!(%err, "scheduler stopped");
    }
}

/// Runs the controller manager until it fails, logging the failure.
pub async fn run_controller_manager(
    client: kube::Client,
    config: controllers::ControllerManagerConfig,
) {
    if let Err(err) = controllers::run(client, config).await {
        tracing::error!(%err, "controller manager stopped");
    }
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading kubeconfig")?;
    Ok(kube::Client::try_from(config)?)
}

/// `skiff scheduler --kubeconfig PATH`.
pub async fn scheduler_main(kubeconfig: &Path, leader_elect: bool) -> anyhow::Result<()> {
    let client = client_from_kubeconfig(kubeconfig).await?;
    let mut config = scheduler::SchedulerConfig::default();
    config.leader_election.enabled = leader_elect;
    println!("skiff: scheduler started (leader election: {leader_elect})");
    scheduler::run(client, config).await?;
    Ok(())
}

/// `skiff controller-manager --kubeconfig PATH`.
pub async fn controller_manager_main(
    args: crate::cli::ControllerManagerArgs,
) -> anyhow::Result<()> {
    let leader_elect = args.component.leader_elect;
    let client = client_from_kubeconfig(&args.component.kubeconfig).await?;
    let config = args
        .controllers
        .apply(controllers::ControllerManagerConfig {
            leader_elect,
            ..Default::default()
        });
    println!("skiff: controller manager started (leader election: {leader_elect})");
    controllers::run(client, config).await?;
    Ok(())
}
