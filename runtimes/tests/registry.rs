//! Pulling wasm OCI artifacts from a real registry: Debian's `docker-registry` on loopback,
//! filled with oci-client pushes. Also the pull-policy helper end to end, and a push from the
//! wasm store read back with progress.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth as OciAuth;
use skiff_runtimes::images::pull::{
    WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE_V1,
};
use skiff_runtimes::images::{
    ArtifactKind, ImageStore, ProgressEvent, PullPolicy, Puller, TransferProgress, ensure_image,
};
use skiff_runtimes::wasmtime::{WasmtimeConfig, WasmtimeRuntime};
use skiff_runtimes::{ContainerSpec, NetworkMode, RegistryAuth, Runtime, SandboxSpec};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A `docker-registry` process serving a temporary directory on 127.0.0.1.
struct Registry {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Option<Registry> {
        if !std::path::Path::new(REGISTRY_BINARY).exists() {
            assert!(
                !common::ci(),
                "CI=true: {REGISTRY_BINARY} is missing (apt-get install -y docker-registry)"
            );
            eprintln!("skipping: {REGISTRY_BINARY} not installed");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = skiff_runtimes::conformance::free_port();
        let address = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {address}\n",
            dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry {
            child,
            address,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&registry.address).is_err() {
            assert!(Instant::now() < deadline, "registry did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }

    async fn push(&self, repository: &str, layer_type: &str, bytes: Vec<u8>) -> String {
        let reference = format!("{}/{repository}", self.address);
        let client = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        });
        let layers = [ImageLayer::new(bytes, layer_type.to_owned(), None)];
        let config = Config::new(b"{}".to_vec(), WASM_CONFIG_MEDIA_TYPE.to_owned(), None);
        client
            .push(
                &reference.parse().expect("reference"),
                &layers,
                config,
                &OciAuth::Anonymous,
                None,
            )
            .await
            .expect("push");
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_wasm_artifacts_and_applies_pull_policies() {
    common::init_tracing();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(registry) = Registry::start() else {
        return;
    };
    let hello = common::fixture("hello");
    let current = registry
        .push("skiff/hello:v1", WASM_LAYER_MEDIA_TYPE, hello.clone())
        .await;
    let legacy = registry
        .push(
            "skiff/hello-legacy:v1",
            WASM_LAYER_MEDIA_TYPE_V1,
            hello.clone(),
        )
        .await;
    let not_wasm = registry
        .push(
            "skiff/tarball:v1",
            "application/vnd.oci.image.layer.v1.tar",
            b"not a wasm layer".to_vec(),
        )
        .await;

    let data = tempfile::tempdir().expect("tempdir");
    let rt = WasmtimeRuntime::new(WasmtimeConfig {
        max_containers: 16,
        ..WasmtimeConfig::new(data.path())
    })
    .expect("runtime");
    let anonymous = RegistryAuth::Anonymous;

    // Never: absent → ErrImageNeverPull; nothing is fetched.
    let never = ensure_image(&rt, &current, PullPolicy::Never, &anonymous).await;
    assert_eq!(never.err().map(|e| e.reason()), Some("ErrImageNeverPull"));
    // IfNotPresent: absent → pulled.
    let pulled = ensure_image(&rt, &current, PullPolicy::IfNotPresent, &anonymous)
        .await
        .expect("pull");
    assert_eq!(pulled.id, skiff_runtimes::images::sha256_digest(&hello));
    assert!(rt.image_status(&current).await.expect("status").is_some());
    // Both layer media types work.
    let old = rt
        .pull_image(&legacy, &anonymous)
        .await
        .expect("pull legacy");
    assert_eq!(old.id, pulled.id);
    // A non-wasm artifact is refused with ErrImagePull.
    let refused = rt.pull_image(&not_wasm, &anonymous).await;
    let refused = refused.expect_err("not wasm");
    assert_eq!(refused.reason(), "ErrImagePull");
    assert!(refused.to_string().contains("wasm"), "{refused}");

    // The pulled image runs.
    let sandbox = rt
        .create_sandbox(&SandboxSpec::new("pulled").with_network(NetworkMode::Host))
        .await
        .expect("sandbox");
    let logs = tempfile::tempdir().expect("tempdir");
    let mut spec = ContainerSpec::new("hello", &current);
    spec.log_path = Some(logs.path().join("hello.log"));
    let id = rt.create_container(&sandbox, &spec).await.expect("create");
    rt.start_container(&id).await.expect("start");
    let done = rt.wait_container(&id).await.expect("wait");
    assert_eq!(done.state.exit_info().map(|e| e.exit_code), Some(0));
    rt.remove_sandbox(&sandbox).await.expect("remove");

    // Always with the registry gone still runs the local copy.
    drop(registry);
    let fallback = ensure_image(&rt, &current, PullPolicy::Always, &anonymous).await;
    assert_eq!(
        fallback.expect("fall back to the local image").id,
        pulled.id
    );
    // ... but an absent image cannot be conjured.
    let missing = ensure_image(&rt, &not_wasm, PullPolicy::Always, &anonymous).await;
    assert_eq!(missing.err().map(|e| e.reason()), Some("ErrImagePull"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_wasm_image_pulls_back_with_progress() {
    common::init_tracing();
    let Some(registry) = Registry::start() else {
        return;
    };
    let hello = common::fixture("hello");
    let data = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(data.path()).expect("store");
    let local = store.import_bytes(&hello, "hello:v1").expect("import");

    let puller = Puller::default();
    let reference = format!("{}/skiff/pushed:v1", registry.address);
    let mut pushed_events = Vec::new();
    let pushed = puller
        .push_wasm(
            &reference,
            store.read_blob(&local.digest).expect("blob"),
            &RegistryAuth::Anonymous,
            &mut |e| pushed_events.push(e.clone()),
        )
        .await
        .expect("push");
    assert_eq!(pushed.layer_digest, local.digest);
    assert_eq!(pushed.size, hello.len() as u64);
    assert!(pushed.manifest_digest.starts_with("sha256:"), "{pushed:?}");
    assert!(
        pushed_events.iter().any(|e| e.status == "Pushed"),
        "{pushed_events:?}"
    );
    // Pushing again finds the layer there.
    let mut again = Vec::new();
    let second = puller
        .push_wasm(
            &reference,
            hello.clone(),
            &RegistryAuth::Anonymous,
            &mut |e| again.push(e.clone()),
        )
        .await
        .expect("push again");
    assert_eq!(second.manifest_digest, pushed.manifest_digest);
    assert!(
        again.iter().any(|e| e.status == "Layer already exists"),
        "{again:?}"
    );

    // The registry says what it is, and a pull returns the same bytes with progress.
    let kind = puller
        .artifact_kind(&reference, &RegistryAuth::Anonymous)
        .await
        .expect("kind");
    assert_eq!(kind, ArtifactKind::Wasm);
    let mut events: Vec<ProgressEvent> = Vec::new();
    let mut progress = TransferProgress::default();
    let pulled = puller
        .pull_with_progress(&reference, &RegistryAuth::Anonymous, &mut |e| {
            progress.update(e);
            events.push(e.clone());
        })
        .await
        .expect("pull");
    assert_eq!(pulled.bytes, hello);
    assert_eq!(pulled.media_type, WASM_LAYER_MEDIA_TYPE);
    assert_eq!(
        pulled.manifest_digest.as_deref(),
        Some(pushed.manifest_digest.as_str())
    );
    assert!(
        events
            .iter()
            .any(|e| e.status == "Downloading" && e.total == Some(hello.len() as u64)),
        "{events:?}"
    );
    assert_eq!(progress.layers(), (1, 1), "{events:?}");
    assert_eq!(progress.bytes_done(), hello.len() as u64);
    // The digest reference works too.
    let by_digest = format!(
        "{}/skiff/pushed@{}",
        registry.address, pushed.manifest_digest
    );
    assert_eq!(
        puller
            .pull(&by_digest, &RegistryAuth::Anonymous)
            .await
            .expect("pull by digest")
            .bytes,
        hello
    );

    // A container image (a tar layer) is told apart.
    let tarball = registry
        .push(
            "skiff/tarball:v1",
            "application/vnd.oci.image.layer.v1.tar",
            b"not a wasm layer".to_vec(),
        )
        .await;
    // That push used the wasm config type; a plain image config makes it a container image.
    let image = format!("{}/skiff/image:v1", registry.address);
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    client
        .push(
            &image.parse().expect("reference"),
            &[ImageLayer::oci_v1(b"layer".to_vec(), None)],
            Config::oci_v1(b"{}".to_vec(), None),
            &OciAuth::Anonymous,
            None,
        )
        .await
        .expect("push an image");
    let kind = puller
        .artifact_kind(&image, &RegistryAuth::Anonymous)
        .await
        .expect("kind");
    assert_eq!(kind, ArtifactKind::ContainerImage);
    assert_eq!(
        puller
            .artifact_kind(&tarball, &RegistryAuth::Anonymous)
            .await
            .expect("kind"),
        ArtifactKind::Wasm,
        "the wasm config type marks an artifact as wasm"
    );
    let missing = puller
        .artifact_kind(
            &format!("{}/skiff/missing:v1", registry.address),
            &RegistryAuth::Anonymous,
        )
        .await;
    assert!(missing.is_err(), "{missing:?}");
}
