//! `skiff image import|pull|push|tag|list|rm`: the node's images, in both of its stores, behind
//! one interface.
//!
//! Wasm images live in the content-addressed store under `<data dir>/images` (shared with
//! `skiff up`'s node); OCI container images live in Docker's store. `import` and `pull` pick
//! the store from the content (wasm magic; the registry manifest's media types), `push` and
//! `rm` from where the reference is found, and `list` shows both. `--runtime` overrides the
//! choice. Pulls and pushes show progress on stderr: one bar on a terminal, plain lines
//! otherwise.

mod progress;
mod table;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use skiff_runtimes::docker::{DockerConfig, DockerRuntime};
use skiff_runtimes::images::{ArtifactKind, ImageStore, Puller};
use skiff_runtimes::{RegistryAuth, Runtime};

use self::progress::ProgressView;
use crate::cli::DataDirArgs;

/// Which store an image command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Store {
    /// Decide from the image (its content, its registry manifest, where it is found).
    #[default]
    Auto,
    /// The wasm store (Wasmtime's images).
    Wasmtime,
    /// Docker's store (OCI container images).
    Docker,
}

/// Flags shared by the commands that reach a registry or Docker.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    #[command(flatten)]
    data: DataDirArgs,
    /// Which store: auto, wasmtime or docker.
    #[arg(long, value_enum, default_value_t = Store::Auto)]
    runtime: Store,
    /// dockerd's socket, for OCI images.
    #[arg(long, default_value = "/var/run/docker.sock")]
    docker_socket: PathBuf,
}

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
    /// Pull an image: a wasm artifact into the wasm store, a container image into Docker
    /// (plain HTTP for localhost registries).
    Pull {
        #[command(flatten)]
        store: StoreArgs,
        /// The reference, e.g. `127.0.0.1:5000/hello:latest`.
        reference: String,
        /// Registries to reach over plain HTTP besides localhost.
        #[arg(long)]
        insecure_registry: Vec<String>,
    },
    /// Push a local image to the registry its reference names: a wasm image as a wasm OCI
    /// artifact, a Docker image through Docker.
    Push {
        #[command(flatten)]
        store: StoreArgs,
        /// The reference, e.g. `127.0.0.1:5000/hello:v1` (tag it so first).
        reference: String,
        /// Registries to reach over plain HTTP besides localhost.
        #[arg(long)]
        insecure_registry: Vec<String>,
    },
    /// Give a local image another name, e.g. the registry to push it to (in every store that
    /// has it, unless --runtime says).
    Tag {
        #[command(flatten)]
        store: StoreArgs,
        /// The image's current reference.
        source: String,
        /// The new reference, e.g. `127.0.0.1:5000/hello:v1`.
        target: String,
    },
    /// List the images of both stores.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        data: DataDirArgs,
        /// dockerd's socket, for OCI images.
        #[arg(long, default_value = "/var/run/docker.sock")]
        docker_socket: PathBuf,
    },
    /// Remove an image reference (from every store that has it, unless --runtime says).
    #[command(alias = "remove")]
    Rm {
        #[command(flatten)]
        store: StoreArgs,
        /// The reference.
        name: String,
    },
}

/// A Docker client for image commands (it creates no containers).
fn docker_at(socket: &Path) -> DockerRuntime {
    DockerRuntime::new(DockerConfig {
        socket: socket.to_path_buf(),
        ..DockerConfig::new("skiff")
    })
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
                let docker = docker_at(&docker_socket);
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
            store,
            reference,
            insecure_registry,
        } => pull(store, &reference, Puller::new(insecure_registry)).await?,
        ImageCommand::Push {
            store,
            reference,
            insecure_registry,
        } => push(store, &reference, Puller::new(insecure_registry)).await?,
        ImageCommand::List {
            data,
            docker_socket,
        } => list(&data, &docker_socket).await?,
        ImageCommand::Tag {
            store,
            source,
            target,
        } => tag(store, &source, &target).await?,
        ImageCommand::Rm { store, name } => remove(store, &name).await?,
    }
    Ok(())
}

/// Pull into the store the image belongs in.
async fn pull(args: StoreArgs, reference: &str, puller: Puller) -> anyhow::Result<()> {
    let auth = RegistryAuth::Anonymous;
    let docker = docker_at(&args.docker_socket);
    let store = match args.runtime {
        Store::Auto => match puller.artifact_kind(reference, &auth).await {
            Ok(ArtifactKind::Wasm) => Store::Wasmtime,
            Ok(ArtifactKind::ContainerImage) => Store::Docker,
            // Docker may reach registries this process cannot (its own mirrors and
            // credentials): let it try.
            Err(error) if docker.available().await => {
                eprintln!("cannot read {reference}'s manifest here ({error}); asking Docker");
                Store::Docker
            }
            Err(error) => {
                return Err(error).with_context(|| format!("pulling {reference}"));
            }
        },
        chosen => chosen,
    };
    let mut view = ProgressView::new("pulling", reference);
    let mut show = |event: &skiff_runtimes::images::ProgressEvent| view.event(event);
    if store == Store::Docker {
        let pulled = docker
            .pull_image_with_progress(reference, &auth, &mut show)
            .await;
        view.finish();
        let info = pulled.with_context(|| format!("pulling {reference} into Docker"))?;
        println!(
            "pulled {reference} {} ({}) into Docker",
            table::short_id(&info.id),
            table::human_size(info.size)
        );
    } else {
        let image_store = ImageStore::open(&args.data.resolve())?;
        let pulled = puller.pull_with_progress(reference, &auth, &mut show).await;
        view.finish();
        let pulled = pulled.with_context(|| format!("pulling {reference}"))?;
        let record = image_store.import_bytes(&pulled.bytes, reference)?;
        println!(
            "pulled {} {} ({}) into the wasm store",
            record.name,
            record.digest,
            table::human_size(record.size)
        );
    }
    Ok(())
}

/// Whether Docker has `reference`; `None` (with a note) when Docker cannot be asked.
async fn docker_has(docker: &DockerRuntime, reference: &str, quiet: bool) -> Option<bool> {
    match docker.image_status(reference).await {
        Ok(found) => Some(found.is_some()),
        Err(error) => {
            if !quiet {
                eprintln!("docker: {error}");
            }
            None
        }
    }
}

/// Push from the store that has the image.
async fn push(args: StoreArgs, reference: &str, puller: Puller) -> anyhow::Result<()> {
    let auth = RegistryAuth::Anonymous;
    let image_store = ImageStore::open(&args.data.resolve())?;
    let docker = docker_at(&args.docker_socket);
    let wasm = image_store.resolve(reference)?;
    let store = match args.runtime {
        Store::Auto => {
            let in_docker = docker_has(&docker, reference, wasm.is_some()).await == Some(true);
            match (&wasm, in_docker) {
                (Some(_), true) => bail!(
                    "{reference} is in both the wasm store and Docker: choose one with \
                     --runtime wasmtime or --runtime docker"
                ),
                (Some(_), false) => Store::Wasmtime,
                (None, true) => Store::Docker,
                (None, false) => bail!(
                    "no local image {reference} in the wasm store or Docker (see skiff image list)"
                ),
            }
        }
        chosen => chosen,
    };
    let mut view = ProgressView::new("pushing", reference);
    let mut show = |event: &skiff_runtimes::images::ProgressEvent| view.event(event);
    if store == Store::Docker {
        let pushed = docker.push_image(reference, &auth, &mut show).await;
        view.finish();
        pushed.with_context(|| format!("pushing {reference} from Docker"))?;
        println!("pushed {reference} from Docker");
    } else {
        let Some(record) = wasm else {
            view.finish();
            bail!("no image {reference} in the wasm store (see skiff image list)");
        };
        let bytes = image_store.read_blob(&record.digest)?;
        let pushed = puller.push_wasm(reference, bytes, &auth, &mut show).await;
        view.finish();
        let pushed = pushed.with_context(|| format!("pushing {reference}"))?;
        println!(
            "pushed {reference} {} ({}) from the wasm store",
            pushed.manifest_digest,
            table::human_size(pushed.size)
        );
    }
    Ok(())
}

/// Both stores in one table; Docker's absence is a note, not an error.
async fn list(data: &DataDirArgs, docker_socket: &Path) -> anyhow::Result<()> {
    let image_store = ImageStore::open(&data.resolve())?;
    let mut rows = table::wasm_rows(&image_store.list()?);
    let docker = docker_at(docker_socket);
    match docker.list_images().await {
        Ok(images) => rows.extend(table::docker_rows(&images)),
        Err(error) => eprintln!("docker images not listed: {error}"),
    }
    print!("{}", table::render(&rows));
    Ok(())
}

/// Tag in the stores that have the source image.
async fn tag(args: StoreArgs, source: &str, target: &str) -> anyhow::Result<()> {
    let mut tagged = Vec::new();
    if args.runtime != Store::Docker {
        let image_store = ImageStore::open(&args.data.resolve())?;
        if image_store.tag(source, target)?.is_some() {
            tagged.push("the wasm store");
        }
    }
    if args.runtime != Store::Wasmtime {
        let docker = docker_at(&args.docker_socket);
        // Docker being away matters only when the wasm store had nothing.
        let quiet = args.runtime == Store::Auto && !tagged.is_empty();
        if docker_has(&docker, source, quiet).await == Some(true) {
            docker
                .tag_image(source, target)
                .await
                .with_context(|| format!("tagging {source} in Docker"))?;
            tagged.push("Docker");
        }
    }
    if tagged.is_empty() {
        bail!("no image {source} (see skiff image list)");
    }
    println!("tagged {source} as {target} in {}", tagged.join(" and "));
    Ok(())
}

/// Remove a reference from the stores that have it.
async fn remove(args: StoreArgs, name: &str) -> anyhow::Result<()> {
    let mut removed = Vec::new();
    if args.runtime != Store::Docker {
        let image_store = ImageStore::open(&args.data.resolve())?;
        if image_store.resolve(name)?.is_some() {
            image_store.remove(name)?;
            removed.push("the wasm store");
        }
    }
    if args.runtime != Store::Wasmtime {
        let docker = docker_at(&args.docker_socket);
        let quiet = args.runtime == Store::Auto && !removed.is_empty();
        if docker_has(&docker, name, quiet).await == Some(true) {
            docker
                .remove_image(name)
                .await
                .with_context(|| format!("removing {name} from Docker"))?;
            removed.push("Docker");
        }
    }
    if removed.is_empty() {
        bail!("no image {name} (see skiff image list)");
    }
    println!("removed {name} from {}", removed.join(" and "));
    Ok(())
}
