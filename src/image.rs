//! `skiff image import|pull|list|rm`: the node's local image store.
//!
//! Wasm images live in the content-addressed store under `<data dir>/images`
//! (shared with `skiff up`'s node); a pod naming `name:tag` runs the imported
//! module with no pull.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use skiff_runtimes::images::ImageStore;
use skiff_runtimes::images::pull::Puller;

use crate::cli::DataDirArgs;

/// Image subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Add a local image under NAME: a .wasm file goes to the wasm store (`app.wasm app:v1`);
    /// a `docker save` archive or a root file system tarball goes to Docker.
    Import {
        #[command(flatten)]
        data: DataDirArgs,
        /// The file.
        file: PathBuf,
        /// The image reference it is known by.
        name: String,
        /// dockerd's socket, for OCI images.
        #[arg(long, default_value = "/var/run/docker.sock")]
        docker_socket: PathBuf,
    },
    /// Pull a wasm OCI artifact from a registry (plain HTTP for localhost registries).
    Pull {
        #[command(flatten)]
        data: DataDirArgs,
        /// The reference, e.g. `127.0.0.1:5000/hello:latest`.
        reference: String,
        /// Registries to reach over plain HTTP besides localhost.
        #[arg(long)]
        insecure_registry: Vec<String>,
    },
    /// List local images.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Remove an image reference.
    #[command(alias = "remove")]
    Rm {
        #[command(flatten)]
        data: DataDirArgs,
        /// The reference.
        name: String,
    },
}

/// Whether `file` starts with the wasm magic (`\0asm`), module or component.
fn is_wasm(file: &std::path::Path) -> anyhow::Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let n = f.read(&mut magic)?;
    Ok(n == 4 && &magic == b"\0asm")
}

/// Runs an image subcommand.
pub async fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Import {
            data,
            file,
            name,
            docker_socket,
        } => {
            if is_wasm(&file)? {
                let store = ImageStore::open(&data.resolve())?;
                let rec = store
                    .import(&file, &name)
                    .with_context(|| format!("importing {}", file.display()))?;
                println!("imported {} {} ({} bytes)", rec.name, rec.digest, rec.size);
            } else {
                use skiff_runtimes::Runtime;
                let docker = skiff_runtimes::docker::DockerRuntime::new(
                    skiff_runtimes::docker::DockerConfig {
                        socket: docker_socket,
                        ..skiff_runtimes::docker::DockerConfig::new("skiff")
                    },
                );
                let info = docker.import_image(&file, &name).await.with_context(|| {
                    format!(
                        "importing {} into Docker (is dockerd running?)",
                        file.display()
                    )
                })?;
                println!(
                    "imported {} {} ({} bytes) into Docker",
                    info.tags.first().map(String::as_str).unwrap_or(&name),
                    info.id,
                    info.size
                );
            }
        }
        ImageCommand::Pull {
            data,
            reference,
            insecure_registry,
        } => {
            let store = ImageStore::open(&data.resolve())?;
            let puller = Puller::new(insecure_registry);
            println!("pulling {reference} ...");
            let pulled = puller
                .pull(&reference, &Default::default())
                .await
                .with_context(|| format!("pulling {reference}"))?;
            let rec = store.import_bytes(&pulled.bytes, &reference)?;
            println!("pulled {} {} ({} bytes)", rec.name, rec.digest, rec.size);
        }
        ImageCommand::List { data } => {
            let store = ImageStore::open(&data.resolve())?;
            println!("{:<50} {:<20} {:>10}", "IMAGE", "DIGEST", "SIZE");
            for rec in store.list()? {
                let short = rec.digest.trim_start_matches("sha256:");
                println!(
                    "{:<50} {:<20} {:>10}",
                    rec.name,
                    &short[..short.len().min(12)],
                    rec.size
                );
            }
        }
        ImageCommand::Rm { data, name } => {
            ImageStore::open(&data.resolve())?.remove(&name)?;
            println!("removed {name}");
        }
    }
    Ok(())
}
