//! Images on the Docker backend against a real dockerd and a registry on loopback (Debian's
//! `docker-registry`): push and pull with progress, pull errors, pull policies, import of root
//! file system tarballs and `docker save` archives. Never the internet.

mod docker_support;

use std::time::Duration;

use docker_support::{LocalRegistry, cleanly, runtime_or_skip, unique};
use futures::TryStreamExt;
use skiff_runtimes::docker::{DockerRuntime, ProgressEvent, TransferProgress, testing};
use skiff_runtimes::images::{PullPolicy, ensure_image};
use skiff_runtimes::{ContainerSpec, RegistryAuth, Runtime, SandboxSpec};

/// Run `command` in a fresh sandbox from `image` and return its stdout lines.
async fn run_output(runtime: &DockerRuntime, image: &str, command: &[&str]) -> Vec<String> {
    let logs = tempfile::tempdir().expect("log dir");
    let sandbox = runtime
        .create_sandbox(&SandboxSpec::new("image-check"))
        .await
        .expect("sandbox");
    let mut spec = ContainerSpec::new("check", image);
    spec.command = command.iter().map(|s| s.to_string()).collect();
    spec.log_path = Some(logs.path().join("check.log"));
    let id = runtime
        .create_container(&sandbox, &spec)
        .await
        .expect("create");
    runtime.start_container(&id).await.expect("start");
    let done = tokio::time::timeout(Duration::from_secs(20), runtime.wait_container(&id))
        .await
        .expect("exits in time")
        .expect("wait");
    assert_eq!(
        done.state.exit_info().map(|e| e.exit_code),
        Some(0),
        "{done:?}"
    );
    let records = skiff_runtimes::logs::read_records(&logs.path().join("check.log")).expect("log");
    runtime
        .remove_sandbox(&sandbox)
        .await
        .expect("remove sandbox");
    skiff_runtimes::logs::lines_of(&records, skiff_runtimes::logs::Stream::Stdout)
}

/// `len` pseudo-random bytes (xorshift), which gzip cannot shrink.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Import a busybox root file system with a unique marker file (so its layer exists nowhere
/// else) under `name`.
async fn import_unique(runtime: &DockerRuntime, name: &str, marker: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = testing::busybox_rootfs_tar_with(&[
        ("marker", marker.as_bytes()),
        // Enough incompressible bytes that the transfer reports progress along the way.
        ("padding", &noise(3 << 20)),
    ])
    .expect("rootfs");
    let file = dir.path().join("rootfs.tar");
    std::fs::write(&file, tar).expect("write rootfs");
    let info = runtime.import_image(&file, name).await.expect("import");
    assert!(info.id.starts_with("sha256:"), "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_with_progress_from_a_loopback_registry() {
    let what = "docker registry push/pull";
    let Some((runtime, _)) = runtime_or_skip(what).await else {
        return;
    };
    let Some(registry) = LocalRegistry::start_or_skip(what) else {
        return;
    };
    cleanly(&runtime, async {
        let marker = unique();
        let image = format!("{}/skiff-test/progress:{marker}", registry.address);
        import_unique(&runtime, &image, &marker).await;

        let mut pushed = Vec::new();
        runtime
            .push_image(&image, &RegistryAuth::Anonymous, &mut |e| {
                pushed.push(e.clone())
            })
            .await
            .expect("push to the loopback registry");
        assert!(
            pushed.iter().any(|e| e.status.contains("digest: sha256:")),
            "push reports the manifest digest: {pushed:?}"
        );

        // Forget it locally (its unique layer goes too), then pull it back.
        runtime.remove_image(&image).await.expect("remove local");
        assert!(
            runtime
                .image_status(&image)
                .await
                .expect("status")
                .is_none()
        );
        let mut events: Vec<ProgressEvent> = Vec::new();
        let mut progress = TransferProgress::default();
        let info = runtime
            .pull_image_with_progress(&image, &RegistryAuth::Anonymous, &mut |e| {
                progress.update(e);
                events.push(e.clone());
            })
            .await
            .expect("pull");
        assert!(info.tags.contains(&image), "{info:?}");
        assert!(
            events
                .iter()
                .any(|e| e.status == "Downloading" && e.total.is_some()),
            "byte progress while downloading: {events:?}"
        );
        let (layers, done) = progress.layers();
        assert!(
            layers >= 1 && done == layers,
            "all layers finish: {events:?}"
        );
        assert!(
            progress.bytes_known() >= 3 << 20,
            "{}",
            progress.bytes_known()
        );
        assert_eq!(progress.bytes_done(), progress.bytes_known());

        // The pulled content is what was pushed, and it runs.
        let out = run_output(&runtime, &image, &["/bin/cat", "/marker"]).await;
        assert_eq!(out, vec![marker.clone()]);
        runtime.remove_image(&image).await.expect("remove");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pulls_are_err_image_pull_with_a_clear_message() {
    let what = "docker pull errors";
    let Some((runtime, _)) = runtime_or_skip(what).await else {
        return;
    };
    let Some(registry) = LocalRegistry::start_or_skip(what) else {
        return;
    };
    let missing = format!("{}/skiff-test/missing:v1", registry.address);
    let error = runtime
        .pull_image(&missing, &RegistryAuth::Anonymous)
        .await
        .expect_err("no such repository");
    assert_eq!(error.reason(), "ErrImagePull", "{error}");
    let text = error.to_string();
    assert!(text.contains(&missing), "names the image: {text}");
    assert!(
        text.contains("not found") || text.contains("unknown"),
        "says why: {text}"
    );

    let port = docker_support::free_port();
    let nowhere = format!("127.0.0.1:{port}/skiff-test/app:v1");
    let error = runtime
        .pull_image(&nowhere, &RegistryAuth::Anonymous)
        .await
        .expect_err("nothing listens");
    assert_eq!(error.reason(), "ErrImagePull", "{error}");
    assert!(
        error.to_string().contains("connection refused"),
        "says why: {error}"
    );

    let error = runtime
        .pull_image("Not/A Valid:name", &RegistryAuth::Anonymous)
        .await
        .expect_err("invalid");
    assert_eq!(error.reason(), "InvalidImageName", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_policies_decide_when_to_pull() {
    let what = "docker pull policies";
    let Some((runtime, _)) = runtime_or_skip(what).await else {
        return;
    };
    let Some(registry) = LocalRegistry::start_or_skip(what) else {
        return;
    };
    cleanly(&runtime, async {
        let tag = unique();
        let image = format!("{}/skiff-test/policy:{tag}", registry.address);
        let auth = RegistryAuth::Anonymous;

        let never = ensure_image(&runtime, &image, PullPolicy::Never, &auth).await;
        assert_eq!(never.expect_err("absent").reason(), "ErrImageNeverPull");
        let absent = ensure_image(&runtime, &image, PullPolicy::IfNotPresent, &auth).await;
        assert_eq!(absent.expect_err("not pushed").reason(), "ErrImagePull");

        // v1 in the registry, v1 locally.
        import_unique(&runtime, &image, "one").await;
        runtime
            .push_image(&image, &auth, &mut |_| {})
            .await
            .expect("push v1");
        let v1 = runtime
            .image_status(&image)
            .await
            .expect("status")
            .expect("v1");

        // The registry moves on to v2; the node still has v1.
        let staging = format!("skiff-test/policy-staging:{tag}");
        import_unique(&runtime, &staging, "two").await;
        runtime.tag_image(&staging, &image).await.expect("tag v2");
        runtime
            .push_image(&image, &auth, &mut |_| {})
            .await
            .expect("push v2");
        let v2 = runtime
            .image_status(&image)
            .await
            .expect("status")
            .expect("v2");
        assert_ne!(v1.id, v2.id);
        runtime
            .tag_image(&v1.id, &image)
            .await
            .expect("back to v1 locally");

        let kept = ensure_image(&runtime, &image, PullPolicy::IfNotPresent, &auth)
            .await
            .expect("present");
        assert_eq!(kept.id, v1.id, "IfNotPresent uses the local image");
        let kept = ensure_image(&runtime, &image, PullPolicy::Never, &auth)
            .await
            .expect("present");
        assert_eq!(kept.id, v1.id, "Never uses the local image");
        let pulled = ensure_image(&runtime, &image, PullPolicy::Always, &auth)
            .await
            .expect("pull");
        assert_eq!(
            pulled.id, v2.id,
            "Always pulls the registry's current image"
        );

        for name in [&image, &staging] {
            runtime.remove_image(name).await.expect("remove");
        }
        let _ = runtime.remove_image(&v1.id).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_rootfs_tarballs_and_saved_image_archives() {
    let what = "docker image import";
    let Some((runtime, _)) = runtime_or_skip(what).await else {
        return;
    };
    cleanly(&runtime, async {
        let tag = unique();
        let dir = tempfile::tempdir().expect("tempdir");

        // A root file system tarball becomes a one-layer image.
        let rootfs = dir.path().join("rootfs.tar");
        let tar = testing::busybox_rootfs_tar_with(&[("marker", tag.as_bytes())]).expect("tar");
        std::fs::write(&rootfs, tar).expect("write");
        let imported = format!("skiff-test/imported:{tag}");
        let info = runtime
            .import_image(&rootfs, &imported)
            .await
            .expect("import");
        assert!(info.tags.iter().any(|t| t == &imported), "{info:?}");
        let listed = runtime.list_images().await.expect("list");
        assert!(
            listed
                .iter()
                .any(|i| i.id == info.id && i.tags.contains(&imported))
        );
        let out = run_output(&runtime, &imported, &["/bin/cat", "/marker"]).await;
        assert_eq!(out, vec![tag.clone()]);

        // `docker save` output is loaded and tagged with the new name.
        let docker = bollard::Docker::connect_with_socket_defaults()
            .expect("connect")
            .negotiate_version()
            .await
            .expect("negotiate");
        let saved: Vec<u8> = docker
            .export_image(&imported)
            .map_ok(|chunk| chunk.to_vec())
            .try_concat()
            .await
            .expect("save image");
        let archive = dir.path().join("saved.tar");
        std::fs::write(&archive, saved).expect("write archive");
        assert_eq!(
            skiff_runtimes::docker::images::archive_kind(&archive).expect("kind"),
            skiff_runtimes::docker::images::ArchiveKind::ImageArchive
        );
        runtime.remove_image(&imported).await.expect("remove");
        let reloaded = format!("skiff-test/reloaded:{tag}");
        let loaded = runtime
            .import_image(&archive, &reloaded)
            .await
            .expect("load");
        assert_eq!(loaded.id, info.id, "same image, new name");
        assert!(loaded.tags.contains(&reloaded), "{loaded:?}");

        for name in [&imported, &reloaded] {
            runtime.remove_image(name).await.expect("remove");
        }
        assert!(
            runtime
                .image_status(&reloaded)
                .await
                .expect("status")
                .is_none()
        );
        runtime
            .remove_image(&reloaded)
            .await
            .expect("removing an absent image is fine");

        let garbage = dir.path().join("garbage.tar");
        std::fs::write(&garbage, b"not an archive at all").expect("write");
        let error = runtime
            .import_image(&garbage, &format!("skiff-test/garbage:{tag}"))
            .await
            .expect_err("garbage is no image");
        assert!(!error.to_string().is_empty());
    })
    .await;
}
