//! Busybox test images for the Docker backend, built locally with no registry (feature
//! `testing`).
//!
//! Each image is the host's static busybox (`apt-get install busybox-static`) as a one-layer
//! root file system, imported with Docker's import API and given an entrypoint with the
//! behaviour the [conformance suite](crate::conformance) expects. Images are re-imported only
//! when their content changes (a hash in their environment says which build they are).

use std::path::Path;

use bollard::query_parameters::{CreateImageOptionsBuilder, ListContainersOptionsBuilder};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use super::client::is_not_found;
use super::{DockerRuntime, labels};
use crate::{Error, Result, Runtime};

/// Where the static busybox is read from.
pub const BUSYBOX_PATH: &str = "/bin/busybox";

/// Busybox applets linked into `/bin` of the test images.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "env", "sleep", "wget", "httpd", "tail", "seq", "grep", "sed", "head",
    "true", "false", "ls", "mkdir", "printf", "id", "hostname", "ip", "nc", "dd", "yes", "pwd",
    "stty", "test",
];

/// Environment variable recording which build of a test image Docker holds.
const MARKER_ENV: &str = "SKIFF_TEST_IMAGE";

/// Names of the busybox test images (all present after [`install`]).
#[derive(Debug, Clone)]
pub struct BusyboxImages {
    /// Plain busybox, entrypoint `/bin/sh -c`: give it a script as its argument.
    pub shell: String,
    /// Prints `hello 1`, `warning 1` (stderr), `hello 2`, `hello 3`; exits 0.
    pub hello: String,
    /// Prints its arguments one per line, then its environment.
    pub echo: String,
    /// Exits 3.
    pub exit_3: String,
    /// Sleeps; exits 143 on SIGTERM.
    pub sleep: String,
    /// Busy loop ignoring SIGTERM (PID 1 without a handler).
    pub busy: String,
    /// `tail /dev/zero`: memory grows until the limit kills it.
    pub memory_hog: String,
    /// busybox `httpd` on `127.0.0.1:$PORT`, answering `200 OK`.
    pub listen: String,
    /// `wget http://127.0.0.1:$PORT/` with retries for ~5 s; prints the status line.
    pub connect: String,
    /// Prints `/data/input.txt`.
    pub read_mount: String,
    /// Writes `written` to `/data/output.txt`.
    pub write_mount: String,
    /// Entrypoint that does not exist: the container cannot start.
    pub invalid: String,
}

#[cfg(feature = "conformance")]
impl BusyboxImages {
    /// The images in the shape the conformance suite takes.
    pub fn conformance(&self) -> crate::conformance::TestImages {
        crate::conformance::TestImages {
            hello: self.hello.clone(),
            echo: self.echo.clone(),
            exit_3: self.exit_3.clone(),
            sleep: self.sleep.clone(),
            busy: self.busy.clone(),
            memory_hog: self.memory_hog.clone(),
            listen: self.listen.clone(),
            connect: self.connect.clone(),
            read_mount: Some(self.read_mount.clone()),
            write_mount: Some(self.write_mount.clone()),
        }
    }
}

/// The image set, with names under `skiff-test/`.
fn image_set() -> (BusyboxImages, Vec<(String, Vec<String>)>) {
    let name = |n: &str| format!("skiff-test/busybox-{n}:v1");
    let sh = |script: &str| -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into(), "sh".into()]
    };
    let images = BusyboxImages {
        shell: name("shell"),
        hello: name("hello"),
        echo: name("echo"),
        exit_3: name("exit3"),
        sleep: name("sleep"),
        busy: name("busy"),
        memory_hog: name("memory-hog"),
        listen: name("listen"),
        connect: name("connect"),
        read_mount: name("read-mount"),
        write_mount: name("write-mount"),
        invalid: name("invalid"),
    };
    let entrypoints = vec![
        (images.shell.clone(), vec!["/bin/sh".into(), "-c".into()]),
        (
            images.hello.clone(),
            sh("echo hello 1; echo warning 1 >&2; echo hello 2; echo hello 3"),
        ),
        (
            images.echo.clone(),
            sh(r#"for a in "$@"; do echo "$a"; done; env"#),
        ),
        (images.exit_3.clone(), sh("exit 3")),
        (
            images.sleep.clone(),
            sh(r#"trap "exit 143" TERM INT; sleep 1000000 & wait"#),
        ),
        (
            images.busy.clone(),
            sh(r#"trap "" TERM INT; while :; do :; done"#),
        ),
        (images.memory_hog.clone(), sh("tail /dev/zero")),
        (
            images.listen.clone(),
            sh(r#"exec httpd -f -p "127.0.0.1:${PORT:-8080}" -h /www"#),
        ),
        (
            images.connect.clone(),
            sh(concat!(
                r#"url="http://127.0.0.1:${PORT:-8080}/"; "#,
                r#"for i in $(seq 50); do "#,
                r#"if wget -q -S -O /dev/null "$url" 2>/tmp/headers; then "#,
                r#"grep -m1 "HTTP/" /tmp/headers | sed "s/^ *//"; exit 0; fi; "#,
                r#"sleep 0.1; done; echo "cannot reach $url" >&2; exit 1"#
            )),
        ),
        (images.read_mount.clone(), sh("cat /data/input.txt")),
        (
            images.write_mount.clone(),
            sh("echo written > /data/output.txt"),
        ),
        (images.invalid.clone(), vec!["/does/not/exist".into()]),
    ];
    (images, entrypoints)
}

/// Whether the host has a static busybox to build images from.
pub fn busybox_available() -> bool {
    busybox_binary().is_ok()
}

fn busybox_binary() -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(BUSYBOX_PATH).map_err(|e| Error::io("read busybox", BUSYBOX_PATH, e))?;
    // A dynamic busybox names its loader near the start of the file.
    let head = &bytes[..bytes.len().min(8192)];
    let dynamic = head
        .windows(8)
        .any(|w| w == b"/lib64/l" || w == b"/lib/ld-");
    if &bytes[..4.min(bytes.len())] != b"\x7fELF" || dynamic {
        return Err(Error::InvalidImage {
            image: BUSYBOX_PATH.to_owned(),
            reason: "not a static executable (apt-get install busybox-static)".to_owned(),
        });
    }
    Ok(bytes)
}

/// A root file system: `/bin/busybox`, applet symlinks, `/www/index.html`, `/tmp`, `/data`.
pub fn busybox_rootfs_tar() -> Result<Vec<u8>> {
    busybox_rootfs_tar_with(&[])
}

/// [`busybox_rootfs_tar`] plus extra files (`path`, content), e.g. to make a unique layer.
pub fn busybox_rootfs_tar_with(extra: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let busybox = busybox_binary()?;
    let pack = |e: std::io::Error| Error::internal("pack busybox root file system", e);
    let mut builder = tar::Builder::new(Vec::new());
    let dir = |builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        header.set_mtime(0);
        builder.append_data(&mut header, path, std::io::empty())
    };
    for (path, mode) in [
        ("bin", 0o755),
        ("www", 0o755),
        ("tmp", 0o1777),
        ("data", 0o755),
    ] {
        dir(&mut builder, path, mode).map_err(pack)?;
    }
    let file = |builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        builder.append_data(&mut header, path, data)
    };
    file(&mut builder, "bin/busybox", 0o755, &busybox).map_err(pack)?;
    file(
        &mut builder,
        "www/index.html",
        0o644,
        b"hello from busybox\n",
    )
    .map_err(pack)?;
    for (path, data) in extra {
        file(&mut builder, path, 0o644, data).map_err(pack)?;
    }
    for applet in APPLETS {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        header.set_mtime(0);
        builder
            .append_link(&mut header, format!("bin/{applet}"), "busybox")
            .map_err(pack)?;
    }
    builder.into_inner().map_err(pack)
}

/// Import every test image that Docker lacks (or holds from another build).
pub async fn install(runtime: &DockerRuntime) -> Result<BusyboxImages> {
    static INSTALLING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _installing = INSTALLING.lock().await;
    let docker = runtime.client().await?;
    let connection = &runtime.inner.connection;
    let rootfs = busybox_rootfs_tar()?;
    let rootfs_digest = format!("{:x}", Sha256::digest(&rootfs));
    let (images, entrypoints) = image_set();
    for (name, entrypoint) in entrypoints {
        let entrypoint_json = serde_json::to_string(&entrypoint)
            .map_err(|e| Error::internal("encode test image entrypoint", e))?;
        let marker = format!(
            "{:x}",
            Sha256::digest(format!("{rootfs_digest}\n{entrypoint_json}"))
        );
        let marker_env = format!("{MARKER_ENV}={marker}");
        match docker.inspect_image(&name).await {
            Ok(found) => {
                let env = found.config.and_then(|c| c.env).unwrap_or_default();
                if env.contains(&marker_env) {
                    continue;
                }
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(connection.error("inspect test image", e)),
        }
        let (repo, tag) = super::pause::split_tag(&name);
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(vec![
                format!("ENTRYPOINT {entrypoint_json}"),
                "ENV PATH=/bin".to_owned(),
                format!("ENV {marker_env}"),
            ])
            .build();
        docker
            .create_image(
                Some(options),
                Some(bollard::body_full(rootfs.clone().into())),
                None,
            )
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| connection.error("import test image", e))?;
        tracing::info!(image = %name, "imported busybox test image");
    }
    Ok(images)
}

/// Write the busybox root file system tarball to `path` (for import tests).
pub fn write_busybox_rootfs(path: &Path) -> Result<()> {
    let tar = busybox_rootfs_tar()?;
    std::fs::write(path, tar).map_err(|e| Error::io("write busybox rootfs", path, e))
}

/// Remove every sandbox and container this runtime instance owns (test cleanup).
pub async fn remove_everything(runtime: &DockerRuntime) -> Result<()> {
    let docker = runtime.client().await?;
    let filters = std::collections::HashMap::from([(
        "label".to_owned(),
        vec![format!(
            "{}={}",
            labels::MANAGED_BY,
            runtime.config().instance
        )],
    )]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let found = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| runtime.inner.connection.error("list containers", e))?;
    for id in found.into_iter().filter_map(|c| c.id) {
        runtime.docker_remove(&docker, &id).await?;
    }
    // Sandboxes first would orphan containers; both are gone now, so this only tidies state.
    for sandbox in runtime.list_sandboxes().await? {
        runtime.remove_sandbox(&sandbox.id).await?;
    }
    Ok(())
}
