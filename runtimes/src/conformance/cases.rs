//! The conformance cases. Each takes a fresh [`Harness`] and panics on a violation.
//!
//! Timing assertions are deliberately generous (a debug build on two loaded cores must pass);
//! they catch "never stops" and "not throttled at all", not small regressions.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub use super::exec::{
    attach_round_trip, exec_exit_codes, exec_refused_unless_running, exec_runs_in_the_container,
    exec_stdin_round_trip, exec_with_a_terminal,
};
use super::{Harness, assert_reason, free_port, within};
use crate::spec::{ContainerSpec, Mount};
use crate::status::{ContainerState, ExitReason, SandboxState};
use crate::{Error, RegistryAuth};

const EXIT_LIMIT: Duration = Duration::from_secs(20);

/// Create, inspect, stop and remove a sandbox; a stopped sandbox takes no new containers; its
/// namespace disappears with it.
pub async fn sandbox_lifecycle(h: &Harness) {
    let rt = &h.runtime;
    let id = h.sandbox("lifecycle").await;
    let status = rt.sandbox_status(&id).await.expect("status");
    assert_eq!(status.id, id);
    assert_eq!(status.name, "lifecycle");
    assert_eq!(status.state, SandboxState::Ready);
    if let Some(path) = &status.netns_path {
        assert!(path.exists(), "netns path {} must exist", path.display());
    }
    let listed = rt.list_sandboxes().await.expect("list");
    assert!(listed.iter().any(|s| s.id == id), "list shows the sandbox");

    rt.stop_sandbox(&id).await.expect("stop");
    rt.stop_sandbox(&id).await.expect("stop is idempotent");
    let status = rt.sandbox_status(&id).await.expect("status after stop");
    assert_eq!(status.state, SandboxState::NotReady);
    let refused = rt
        .create_container(&id, &h.spec("late", &h.images.hello))
        .await;
    assert_reason(
        refused,
        &["CreateContainerError"],
        "create in stopped sandbox",
    );

    rt.remove_sandbox(&id).await.expect("remove");
    let gone = rt.sandbox_status(&id).await;
    assert!(
        matches!(gone, Err(Error::SandboxNotFound { .. })),
        "{gone:?}"
    );
    if let Some(path) = &status.netns_path {
        assert!(
            !path.exists(),
            "netns {} removed with sandbox",
            path.display()
        );
    }
    rt.remove_sandbox(&id).await.expect("remove is idempotent");
}

/// A container goes Created → Running → Exited(0, Completed) with sensible timestamps.
pub async fn run_to_completion(h: &Harness) {
    let rt = &h.runtime;
    let sandbox = h.sandbox("complete").await;
    let spec = h.spec("hello", &h.images.hello);
    let id = rt.create_container(&sandbox, &spec).await.expect("create");
    let created = rt.container_status(&id).await.expect("status");
    assert_eq!(created.state, ContainerState::Created);
    assert_eq!(created.name, "hello");
    assert_eq!(created.sandbox_id, sandbox);
    assert_eq!(created.image, h.images.hello);
    let listed = rt.list_containers(Some(&sandbox)).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(
        rt.list_containers(Some("other"))
            .await
            .expect("list")
            .is_empty()
    );

    let before = jiff::Timestamp::now();
    rt.start_container(&id).await.expect("start");
    let done = h.wait(&id, EXIT_LIMIT).await;
    let ContainerState::Exited { started_at, exit } = &done.state else {
        panic!("expected exited, got {:?}", done.state);
    };
    assert_eq!(exit.exit_code, 0, "{exit:?}");
    assert_eq!(exit.reason, ExitReason::Completed);
    let started_at = started_at.expect("a started container has a start time");
    // Allow for coarse clocks: start is not before the request (minus a little).
    assert!(started_at >= before - jiff::SignedDuration::from_millis(50));
    assert!(exit.finished_at >= started_at);
    let again = rt.container_status(&id).await.expect("status");
    assert_eq!(again.state, done.state, "exited state is final");
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// Arguments and environment from the spec reach the guest, in order.
pub async fn args_and_env(h: &Harness) {
    let sandbox = h.sandbox("echo").await;
    let mut spec = h.spec("echo", &h.images.echo);
    spec.args = vec!["first arg".into(), "second".into()];
    spec.env = vec![
        ("GREETING".into(), "hello world".into()),
        ("EMPTY".into(), String::new()),
    ];
    let id = h.run(&sandbox, &spec).await;
    let done = h.wait(&id, EXIT_LIMIT).await;
    assert_eq!(exit_code(&done.state), Some(0));
    let out = h.stdout("echo");
    assert_eq!(
        out.get(..2),
        Some(&["first arg".to_owned(), "second".to_owned()][..]),
        "stdout {out:?}, stderr {:?}, status {done:?}",
        h.stderr("echo")
    );
    assert!(out.contains(&"GREETING=hello world".to_owned()), "{out:?}");
    assert!(out.contains(&"EMPTY=".to_owned()), "{out:?}");
    h.runtime.remove_sandbox(&sandbox).await.expect("remove");
}

/// A non-zero exit is reported with its code and reason `Error`.
pub async fn exit_codes(h: &Harness) {
    let sandbox = h.sandbox("exits").await;
    let id = h.run(&sandbox, &h.spec("three", &h.images.exit_3)).await;
    let done = h.wait(&id, EXIT_LIMIT).await;
    let exit = done.state.exit_info().expect("exited");
    assert_eq!(exit.exit_code, 3);
    assert_eq!(exit.reason, ExitReason::Error);
    h.runtime.remove_sandbox(&sandbox).await.expect("remove");
}

/// Output lands in the CRI log format: parseable records, the right stream tags, order kept
/// within a stream, timestamps not going backwards.
pub async fn logs_in_cri_format(h: &Harness) {
    let sandbox = h.sandbox("logs").await;
    let spec = h.spec("hello", &h.images.hello);
    let id = h.run(&sandbox, &spec).await;
    let status = h.wait(&id, EXIT_LIMIT).await;
    assert_eq!(
        status.log_path, spec.log_path,
        "status reports the log path"
    );
    let path = spec.log_path.clone().expect("log path");
    let raw = std::fs::read_to_string(&path).expect("read log");
    for line in raw.lines() {
        let record = crate::logs::parse_record(line)
            .unwrap_or_else(|| panic!("not a CRI log line: {line:?}"));
        let stamp = line.split(' ').next().unwrap_or_default();
        assert_eq!(
            stamp.len(),
            30,
            "fixed-width RFC 3339 nano timestamp: {stamp}"
        );
        assert!(stamp.ends_with('Z'), "UTC timestamp: {stamp}");
        assert!(!record.partial, "short lines are full records: {line}");
    }
    assert_eq!(h.stdout("hello"), ["hello 1", "hello 2", "hello 3"]);
    assert_eq!(h.stderr("hello"), ["warning 1"]);
    let records = h.records("hello");
    let stamps: Vec<_> = records.iter().map(|r| r.timestamp).collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "timestamps never go backwards");
    h.runtime.remove_sandbox(&sandbox).await.expect("remove");
}

/// A guest that stops when asked stops well within its grace period; one that ignores the
/// request is killed when the grace period ends. Both end `Exited` with a non-zero code.
pub async fn stop_honours_grace_then_kills(h: &Harness) {
    let rt = &h.runtime;
    let sandbox = h.sandbox("stop").await;
    let sleeper = h.run(&sandbox, &h.spec("sleeper", &h.images.sleep)).await;
    let busy = h.run(&sandbox, &h.spec("busy", &h.images.busy)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in [&sleeper, &busy] {
        let state = rt.container_status(id).await.expect("status").state;
        assert!(state.is_running(), "{id} runs before stop: {state:?}");
    }

    let started = Instant::now();
    within(
        Duration::from_secs(15),
        "stop of a cooperative guest",
        rt.stop_container(&sleeper, Duration::from_secs(60)),
    )
    .await
    .expect("stop sleeper");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a guest that honours stop must not wait out its 60 s grace"
    );

    let grace = Duration::from_secs(1);
    let started = Instant::now();
    within(
        Duration::from_secs(15),
        "stop of a guest ignoring stop",
        rt.stop_container(&busy, grace),
    )
    .await
    .expect("stop busy");
    let took = started.elapsed();
    assert!(
        took < grace + Duration::from_secs(10),
        "killed soon after grace: {took:?}"
    );

    for id in [&sleeper, &busy] {
        let state = rt.container_status(id).await.expect("status").state;
        let exit = state.exit_info().expect("exited after stop");
        assert_ne!(
            exit.exit_code, 0,
            "a stopped container does not report success"
        );
        assert_ne!(exit.reason, ExitReason::Completed);
    }
    rt.stop_container(&busy, grace)
        .await
        .expect("stopping an exited container is a no-op");
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// `wait_container` on a running container resolves when it is stopped; stopping a created
/// container that never ran exits it too.
pub async fn wait_sees_stop(h: &Harness) {
    let rt = h.runtime.clone();
    let sandbox = h.sandbox("wait").await;
    let id = h.run(&sandbox, &h.spec("sleeper", &h.images.sleep)).await;
    let waiter = tokio::spawn({
        let rt = rt.clone();
        let id = id.clone();
        async move { rt.wait_container(&id).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "wait resolves only after exit");
    rt.stop_container(&id, Duration::from_secs(5))
        .await
        .expect("stop");
    let status = within(EXIT_LIMIT, "waiter", waiter)
        .await
        .expect("join")
        .expect("wait");
    assert!(status.state.is_exited());

    let never = rt
        .create_container(&sandbox, &h.spec("never", &h.images.sleep))
        .await
        .expect("create");
    rt.stop_container(&never, Duration::from_secs(1))
        .await
        .expect("stop created");
    let state = rt.container_status(&never).await.expect("status").state;
    assert!(state.is_exited(), "{state:?}");
    assert_eq!(state.started_at(), None);
    assert_reason(
        rt.start_container(&never).await,
        &["RunContainerError"],
        "start after stop",
    );
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// A guest allocating past its memory limit ends with reason `OOMKilled`.
pub async fn memory_limit_oom_kills(h: &Harness) {
    if !h.features.memory_limit {
        eprintln!("memory limits not supported by {}", h.runtime.handler());
        return;
    }
    let sandbox = h.sandbox("oom").await;
    let mut spec = h.spec("hog", &h.images.memory_hog);
    spec.resources.memory_limit_bytes = Some(h.memory_limit_bytes);
    let id = h.run(&sandbox, &spec).await;
    let done = h.wait(&id, EXIT_LIMIT).await;
    let exit = done.state.exit_info().expect("exited");
    assert_eq!(exit.reason, ExitReason::OomKilled, "{exit:?}");
    assert_ne!(exit.exit_code, 0);
    h.runtime.remove_sandbox(&sandbox).await.expect("remove");
}

/// A busy guest limited to 100m uses at most about a tenth of a core; an unlimited one running
/// at the same time uses clearly more (when the node has the CPU to give).
pub async fn cpu_limit_throttles(h: &Harness) {
    if !h.features.cpu_limit {
        eprintln!("cpu limits not supported by {}", h.runtime.handler());
        return;
    }
    let rt = &h.runtime;
    let sandbox = h.sandbox("cpu").await;
    let mut limited = h.spec("limited", &h.images.busy);
    limited.resources.cpu_millicores = Some(100);
    let limited = h.run(&sandbox, &limited).await;
    let free = h.run(&sandbox, &h.spec("free", &h.images.busy)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let l0 = rt.container_stats(&limited).await.expect("stats");
    let f0 = rt.container_stats(&free).await.expect("stats");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let l1 = rt.container_stats(&limited).await.expect("stats");
    let f1 = rt.container_stats(&free).await.expect("stats");
    let wall = started.elapsed().as_secs_f64();
    let share = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e9 / wall;
    let limited_share = share(l0.cpu_usage_nanos, l1.cpu_usage_nanos);
    let free_share = share(f0.cpu_usage_nanos, f1.cpu_usage_nanos);
    eprintln!("cpu share: limited {limited_share:.3}, unlimited {free_share:.3}");
    assert!(
        limited_share > 0.0,
        "the limited guest still runs: {limited_share:.3}"
    );
    assert!(limited_share < 0.3, "100m limit holds: {limited_share:.3}");
    // On a node so loaded that even the unlimited guest gets less than the limit, there is
    // nothing to compare; the cap above was still checked.
    if free_share > 0.3 {
        assert!(
            free_share > limited_share * 1.5,
            "unlimited {free_share:.3} vs limited {limited_share:.3}"
        );
    } else {
        eprintln!("node too loaded to compare limited and unlimited guests");
    }
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// Two containers of one pod talk over `127.0.0.1`; the pod's listener is reachable from a
/// thread inside the pod's namespace (how the kubelet probes).
pub async fn pod_shares_localhost(h: &Harness) {
    let rt = &h.runtime;
    let sandbox = h.sandbox("shared").await;
    let port = free_port().to_string();
    let mut server = h.spec("server", &h.images.listen);
    server.env.push(("PORT".into(), port.clone()));
    let mut client = h.spec("client", &h.images.connect);
    client.env.push(("PORT".into(), port.clone()));
    let server_id = h.run(&sandbox, &server).await;
    let client_id = h.run(&sandbox, &client).await;
    let done = h.wait(&client_id, EXIT_LIMIT).await;
    assert_eq!(
        exit_code(&done.state),
        Some(0),
        "client: {:?} / {:?}",
        h.stdout("client"),
        h.stderr("client")
    );
    let out = h.stdout("client");
    assert!(
        out.iter().any(|l| l.contains("200 OK")),
        "client saw {out:?}"
    );

    let status = rt.sandbox_status(&sandbox).await.expect("status");
    if let Some(path) = status.netns_path {
        let ns = crate::netns::Netns::open(&path).expect("open pod netns");
        let port: u16 = port.parse().expect("port");
        let reply = ns.run(move || http_get(port)).expect("enter pod netns");
        let reply = reply.expect("probe from inside the pod's namespace");
        assert!(reply.contains("200 OK"), "{reply}");
    }
    rt.stop_container(&server_id, Duration::from_secs(1))
        .await
        .expect("stop server");
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// A pod's localhost listener is unreachable from the host namespace and from another pod.
pub async fn pods_are_isolated(h: &Harness) {
    let rt = &h.runtime;
    let pod_a = h.sandbox("isolated-a").await;
    if !h.has_pod_network(&pod_a, "pods_are_isolated").await {
        rt.remove_sandbox(&pod_a).await.expect("remove");
        return;
    }
    let pod_b = h.sandbox("isolated-b").await;
    let port = free_port();
    let mut server = h.spec("server", &h.images.listen);
    server.env.push(("PORT".into(), port.to_string()));
    h.run(&pod_a, &server).await;
    // Proof the server is up: a sibling in pod A gets through.
    let mut sibling = h.spec("sibling", &h.images.connect);
    sibling.env.push(("PORT".into(), port.to_string()));
    let sibling = h.run(&pod_a, &sibling).await;
    assert_eq!(
        exit_code(&h.wait(&sibling, EXIT_LIMIT).await.state),
        Some(0)
    );

    let from_host = tokio::task::spawn_blocking(move || http_get(port))
        .await
        .expect("join");
    assert!(from_host.is_err(), "host reached the pod: {from_host:?}");

    let mut stranger = h.spec("stranger", &h.images.connect);
    stranger.env.push(("PORT".into(), port.to_string()));
    let stranger = h.run(&pod_b, &stranger).await;
    let done = h.wait(&stranger, EXIT_LIMIT).await;
    assert_ne!(
        exit_code(&done.state),
        Some(0),
        "another pod reached the listener: {:?}",
        h.stdout("stranger")
    );
    rt.remove_sandbox(&pod_a).await.expect("remove a");
    rt.remove_sandbox(&pod_b).await.expect("remove b");
}

/// Mounted directories are visible at their container path; read-only mounts refuse writes,
/// read-write ones accept them. Backends without mounts must refuse specs that have some.
pub async fn mounts(h: &Harness) {
    let rt = &h.runtime;
    let sandbox = h.sandbox("mounts").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("input.txt"), "from the host\n").expect("write input");
    let mount = |read_only| Mount {
        host_path: dir.path().to_owned(),
        container_path: "/data".into(),
        read_only,
    };
    let (Some(read), Some(write), true) = (
        &h.images.read_mount,
        &h.images.write_mount,
        h.features.mounts,
    ) else {
        let mut spec = h.spec("mounted", &h.images.hello);
        spec.mounts.push(mount(true));
        assert_reason(
            rt.create_container(&sandbox, &spec).await,
            &["CreateContainerError"],
            "mounts on a backend without mount support",
        );
        rt.remove_sandbox(&sandbox).await.expect("remove");
        return;
    };

    let mut reader = h.spec("reader", read);
    reader.mounts.push(mount(true));
    let id = h.run(&sandbox, &reader).await;
    assert_eq!(exit_code(&h.wait(&id, EXIT_LIMIT).await.state), Some(0));
    assert_eq!(h.stdout("reader"), ["from the host"]);

    let mut ro_writer = h.spec("ro-writer", write);
    ro_writer.mounts.push(mount(true));
    let id = h.run(&sandbox, &ro_writer).await;
    assert_ne!(exit_code(&h.wait(&id, EXIT_LIMIT).await.state), Some(0));
    assert!(
        !dir.path().join("output.txt").exists(),
        "read-only mount was written"
    );

    let mut rw_writer = h.spec("rw-writer", write);
    rw_writer.mounts.push(mount(false));
    let id = h.run(&sandbox, &rw_writer).await;
    assert_eq!(exit_code(&h.wait(&id, EXIT_LIMIT).await.state), Some(0));
    let written = std::fs::read_to_string(dir.path().join("output.txt")).expect("output");
    assert_eq!(written.trim_end(), "written");
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// Removing twice, removing unknown ids and removing a running container all succeed.
pub async fn remove_is_idempotent(h: &Harness) {
    let rt = &h.runtime;
    let sandbox = h.sandbox("remove").await;
    let done = h.run(&sandbox, &h.spec("hello", &h.images.hello)).await;
    h.wait(&done, EXIT_LIMIT).await;
    rt.remove_container(&done).await.expect("remove exited");
    rt.remove_container(&done).await.expect("remove again");
    assert!(rt.container_status(&done).await.is_err());

    let running = h.run(&sandbox, &h.spec("sleeper", &h.images.sleep)).await;
    within(
        Duration::from_secs(15),
        "remove of a running container",
        rt.remove_container(&running),
    )
    .await
    .expect("remove running");
    assert!(
        rt.list_containers(Some(&sandbox))
            .await
            .expect("list")
            .is_empty()
    );

    rt.remove_container("no-such-container")
        .await
        .expect("remove unknown container");
    let busy = h.run(&sandbox, &h.spec("busy", &h.images.busy)).await;
    within(
        Duration::from_secs(20),
        "remove of a sandbox with a running container",
        rt.remove_sandbox(&sandbox),
    )
    .await
    .expect("remove sandbox");
    assert!(
        rt.container_status(&busy).await.is_err(),
        "containers go with the sandbox"
    );
    rt.remove_sandbox(&sandbox).await.expect("remove again");
    rt.remove_sandbox("no-such-sandbox")
        .await
        .expect("remove unknown sandbox");
}

/// Every per-id operation reports unknown ids as not found.
pub async fn unknown_ids_are_not_found(h: &Harness) {
    let rt = &h.runtime;
    let id = "0123456789abcdef0123456789abcdef";
    let not_found = |r: Result<(), Error>, what: &str| match r {
        Err(e) if e.is_not_found() => {}
        other => panic!("{what}: expected not found, got {other:?}"),
    };
    not_found(rt.container_status(id).await.map(drop), "status");
    not_found(rt.start_container(id).await, "start");
    not_found(rt.stop_container(id, Duration::ZERO).await, "stop");
    not_found(rt.wait_container(id).await.map(drop), "wait");
    not_found(rt.container_stats(id).await.map(drop), "stats");
    not_found(rt.sandbox_status(id).await.map(drop), "sandbox status");
    let created = rt
        .create_container(id, &h.spec("orphan", &h.images.hello))
        .await;
    assert!(
        matches!(created, Err(Error::SandboxNotFound { .. })),
        "{created:?}"
    );
}

/// Invalid specs, missing images, unrunnable images and illegal transitions fail cleanly.
pub async fn invalid_and_unsupported_specs(h: &Harness) {
    let rt = &h.runtime;
    let sandbox = h.sandbox("invalid").await;
    let mut relative = h.spec("relative", &h.images.hello);
    relative.working_dir = Some("not/absolute".into());
    assert_reason(
        rt.create_container(&sandbox, &relative).await,
        &["CreateContainerConfigError"],
        "relative working dir",
    );
    let mut missing_mount = h.spec("missing", &h.images.hello);
    missing_mount.mounts.push(Mount {
        host_path: "/definitely/not/a/dir".into(),
        container_path: "/data".into(),
        read_only: true,
    });
    assert_reason(
        rt.create_container(&sandbox, &missing_mount).await,
        &["CreateContainerConfigError", "CreateContainerError"],
        "missing mount source",
    );
    let absent = ContainerSpec::new("absent", "skiff-test/not-present:v0");
    let result = rt.create_container(&sandbox, &absent).await;
    assert!(
        matches!(result, Err(Error::ImageNotFound { .. })),
        "{result:?}"
    );
    if let Some(invalid) = &h.invalid_image {
        let spec = h.spec("invalid", invalid);
        let result = match rt.create_container(&sandbox, &spec).await {
            Ok(id) => rt.start_container(&id).await,
            Err(e) => Err(e),
        };
        assert_reason(result, &["CreateContainerError"], "unrunnable image");
    }
    let id = h.run(&sandbox, &h.spec("twice", &h.images.sleep)).await;
    assert_reason(
        rt.start_container(&id).await,
        &["RunContainerError"],
        "second start",
    );
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// Images: status of present and absent images, listing, and a pull of an unknown image
/// failing with `ErrImagePull`.
pub async fn images(h: &Harness) {
    let rt = &h.runtime;
    let present = rt.image_status(&h.images.hello).await.expect("status");
    let present = present.expect("hello image is present");
    assert!(present.id.starts_with("sha256:"), "{}", present.id);
    assert!(
        rt.image_status("skiff-test/absent:v0")
            .await
            .expect("status")
            .is_none()
    );
    let listed = rt.list_images().await.expect("list");
    assert!(listed.iter().any(|i| i.id == present.id), "{listed:?}");
    assert_reason(
        rt.pull_image("127.0.0.1:1/skiff-test/absent:v0", &RegistryAuth::Anonymous)
            .await,
        &["ErrImagePull"],
        "pull from nowhere",
    );
    rt.remove_image("skiff-test/absent:v0")
        .await
        .expect("removing an absent image is a no-op");
}

fn exit_code(state: &ContainerState) -> Option<i32> {
    state.exit_info().map(|e| e.exit_code)
}

/// A minimal blocking HTTP GET to `127.0.0.1:port`, returning the status line.
fn http_get(port: u16) -> std::io::Result<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply.lines().next().unwrap_or_default().to_owned())
}

/// `remove_orphans` removes the sandboxes (and containers) of pods that are not kept, leaves
/// the kept pod running, and finds nothing more on a second call.
pub async fn remove_orphans_keeps_live_pods(h: &Harness) {
    let rt = &h.runtime;
    let kept_sandbox = h.sandbox("kept").await;
    let kept_uid = rt
        .sandbox_status(&kept_sandbox)
        .await
        .expect("kept sandbox status")
        .uid;
    let kept = h.run(&kept_sandbox, &h.spec("kept", &h.images.sleep)).await;
    let orphan_sandbox = h.sandbox("orphan").await;
    let orphan = h
        .run(&orphan_sandbox, &h.spec("orphan", &h.images.sleep))
        .await;

    let keep = std::collections::HashSet::from([kept_uid]);
    let removed = within(EXIT_LIMIT, "remove_orphans", rt.remove_orphans(&keep))
        .await
        .expect("remove orphans");
    let removed_ids: Vec<&str> = removed.sandboxes.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(removed_ids, [orphan_sandbox.as_str()], "{removed:?}");
    assert_eq!(removed.sandboxes[0].name, "orphan");
    let gone = rt.sandbox_status(&orphan_sandbox).await;
    assert!(
        matches!(gone, Err(Error::SandboxNotFound { .. })),
        "{gone:?}"
    );
    let gone = rt.container_status(&orphan).await;
    assert!(
        matches!(gone, Err(Error::ContainerNotFound { .. })),
        "the orphan's container goes with it: {gone:?}"
    );
    let status = rt.container_status(&kept).await.expect("kept container");
    assert!(
        status.state.is_running(),
        "the kept pod runs on: {status:?}"
    );

    let again = rt.remove_orphans(&keep).await.expect("second call");
    assert!(again.is_empty(), "nothing left to remove: {again:?}");
    rt.remove_sandbox(&kept_sandbox).await.expect("remove");
}
