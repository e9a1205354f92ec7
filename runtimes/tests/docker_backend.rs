//! Docker-specific behaviour beyond the shared suite: the pause sandbox and its network
//! namespace, the labels that let a restarted node adopt its containers (and resume their
//! logs), Kubernetes command/working-dir semantics, and the benchmark.

mod docker_support;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use docker_support::{DaemonProxy, cleanly, eventually, runtime_or_skip, unique};
use skiff_runtimes::docker::bench::{DockerBenchOptions, run_docker_bench};
use skiff_runtimes::docker::{DockerConfig, DockerRuntime, labels, pause};
use skiff_runtimes::logs::{Stream, lines_of, read_records};
use skiff_runtimes::{ContainerSpec, ExitReason, Runtime, SandboxSpec, SandboxState};

async fn docker_api() -> bollard::Docker {
    bollard::Docker::connect_with_socket_defaults()
        .expect("connect")
        .negotiate_version()
        .await
        .expect("negotiate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_is_a_pause_container_holding_the_pod_netns() {
    let what = "docker pause sandbox";
    let Some((shared, _)) = runtime_or_skip(what).await else {
        return;
    };
    // A pause image name of this test's own, so importing it disturbs no one.
    let mut config = DockerConfig::new(shared.config().instance.clone());
    config.pause_image = format!("skiff-test/pause:{}", unique());
    let runtime = DockerRuntime::new(config.clone());
    cleanly(&runtime, async {
        let mut spec = SandboxSpec::new("web");
        spec.namespace = "prod".into();
        spec.uid = "uid-123".into();
        let id = runtime.create_sandbox(&spec).await.expect("sandbox");

        let image = runtime
            .image_status(&config.pause_image)
            .await
            .expect("status")
            .expect("the pause image was imported on first use");
        assert!(image.size > 0);

        let docker = docker_api().await;
        let inspect = docker.inspect_container(&id, None).await.expect("inspect");
        let host = inspect.host_config.clone().expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        let container_config = inspect.config.clone().expect("config");
        assert_eq!(
            container_config.image.as_deref(),
            Some(config.pause_image.as_str())
        );
        let pod_labels = container_config.labels.expect("labels");
        assert_eq!(pod_labels[labels::POD_UID], "uid-123");
        assert_eq!(pod_labels[labels::KIND], labels::KIND_SANDBOX);

        let status = runtime.sandbox_status(&id).await.expect("status");
        assert_eq!(status.state, SandboxState::Ready);
        assert_eq!(
            (status.name.as_str(), status.namespace.as_str()),
            ("web", "prod")
        );
        let netns = status.netns_path.expect("a pod netns");
        let pid = inspect.state.and_then(|s| s.pid).expect("pid");
        assert_eq!(
            netns,
            std::path::PathBuf::from(format!("/proc/{pid}/ns/net"))
        );
        let pod_ns = std::fs::metadata(&netns).expect("netns").ino();
        let host_ns = std::fs::metadata("/proc/self/ns/net")
            .expect("own netns")
            .ino();
        assert_ne!(pod_ns, host_ns, "the pod has its own network namespace");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
        assert_eq!(comm.trim(), "pause");

        // The pause process ends on SIGTERM at once: stopping a sandbox is quick.
        let started = std::time::Instant::now();
        runtime.stop_sandbox(&id).await.expect("stop");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let stopped = runtime.sandbox_status(&id).await.expect("status");
        assert_eq!(stopped.state, SandboxState::NotReady);
        runtime.remove_sandbox(&id).await.expect("remove");
        runtime
            .remove_image(&config.pause_image)
            .await
            .expect("remove test pause image");
        assert_eq!(pause::PAUSE_IMAGE, "skiff/pause:3.10");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_adopts_its_containers_and_resumes_their_logs() {
    let what = "docker adoption";
    let Some((cleanup, images)) = runtime_or_skip(what).await else {
        return;
    };
    let instance = cleanup.config().instance.clone();
    cleanly(&cleanup, async {
        let first = DockerRuntime::new(DockerConfig::new(instance.clone()));
        let logs = tempfile::tempdir().expect("logs");
        let log_path = logs.path().join("counter.log");
        let mut pod = SandboxSpec::new("counter-pod");
        pod.uid = "uid-adopt".into();
        let sandbox = first.create_sandbox(&pod).await.expect("sandbox");
        let mut spec = ContainerSpec::new("counter", &images.shell);
        spec.args = vec!["i=0; while :; do i=$((i+1)); echo line $i; sleep 0.1; done".to_owned()];
        spec.log_path = Some(log_path.clone());
        spec.labels.insert("app".into(), "counter".into());
        let id = first
            .create_container(&sandbox, &spec)
            .await
            .expect("create");
        first.start_container(&id).await.expect("start");
        let lines = || lines_of(&read_records(&log_path).unwrap_or_default(), Stream::Stdout);
        assert!(
            eventually(Duration::from_secs(10), || async { lines().len() >= 3 }).await,
            "the counter logs"
        );

        // The node goes away; the container keeps running in Docker.
        drop(first);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = lines().len();

        // Another node instance sees nothing of it.
        let stranger = DockerRuntime::new(DockerConfig::new(format!("other-{}", unique())));
        assert!(stranger.list_sandboxes().await.expect("list").is_empty());
        assert!(stranger.container_status(&id).await.is_err());

        // The restarted node (same instance name) finds everything by its labels.
        let second = DockerRuntime::new(DockerConfig::new(instance));
        let sandboxes = second.list_sandboxes().await.expect("list sandboxes");
        assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
        assert_eq!(sandboxes[0].id, sandbox);
        assert_eq!(sandboxes[0].uid, "uid-adopt");
        assert_eq!(sandboxes[0].name, "counter-pod");
        let containers = second.list_containers(Some(&sandbox)).await.expect("list");
        assert_eq!(containers.len(), 1, "{containers:?}");
        let adopted = &containers[0];
        assert_eq!(
            (adopted.id.as_str(), adopted.name.as_str()),
            (id.as_str(), "counter")
        );
        assert!(adopted.state.is_running(), "{adopted:?}");
        assert_eq!(adopted.log_path.as_deref(), Some(log_path.as_path()));

        // Its logs continue in the same file, without repeating lines.
        assert!(
            eventually(Duration::from_secs(10), || async {
                lines().len() >= before + 5
            })
            .await,
            "logging resumed after adoption ({before} lines before)"
        );
        second
            .stop_container(&id, Duration::from_secs(5))
            .await
            .expect("stop adopted container");
        let all = lines();
        let numbers: Vec<u64> = all
            .iter()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect();
        assert_eq!(numbers.len(), all.len(), "only counter lines: {all:?}");
        assert!(
            numbers.windows(2).all(|w| w[1] > w[0]),
            "no line written twice: {numbers:?}"
        );

        let docker = docker_api().await;
        let found = docker.inspect_container(&id, None).await.expect("inspect");
        let found: HashMap<String, String> = found.config.and_then(|c| c.labels).expect("labels");
        assert_eq!(found[labels::CONTAINER_NAME], "counter");
        assert_eq!(found[labels::SANDBOX_ID], sandbox);
        assert_eq!(found[labels::POD_UID], "uid-adopt");
        assert_eq!(found["app"], "counter", "caller labels are kept");
        second.remove_sandbox(&sandbox).await.expect("remove");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_args_and_working_dir_follow_kubernetes() {
    let what = "docker command semantics";
    let Some((runtime, images)) = runtime_or_skip(what).await else {
        return;
    };
    cleanly(&runtime, async {
        let logs = tempfile::tempdir().expect("logs");
        let sandbox = runtime
            .create_sandbox(&SandboxSpec::new("cmd"))
            .await
            .expect("sandbox");
        let run = |name: &str, spec: ContainerSpec| {
            let runtime = runtime.clone();
            let sandbox = sandbox.clone();
            let mut spec = spec;
            spec.log_path = Some(logs.path().join(format!("{name}.log")));
            async move {
                let id = runtime
                    .create_container(&sandbox, &spec)
                    .await
                    .expect("create");
                runtime.start_container(&id).await.expect("start");
                let done = runtime.wait_container(&id).await.expect("wait");
                let records = read_records(spec.log_path.as_deref().expect("log")).expect("log");
                (done, lines_of(&records, Stream::Stdout))
            }
        };

        // `command` replaces the image's entrypoint; `workingDir` is the start directory.
        let mut spec = ContainerSpec::new("override", &images.hello);
        spec.command = vec!["/bin/sh".into(), "-c".into(), "pwd; echo \"$0 $1\"".into()];
        spec.args = vec!["first".into(), "second".into()];
        spec.working_dir = Some("/www".into());
        let (done, out) = run("override", spec).await;
        assert_eq!(done.state.exit_info().map(|e| e.exit_code), Some(0));
        assert_eq!(out, ["/www", "first second"]);

        // `args` alone replace only the image's cmd, keeping its entrypoint.
        let mut spec = ContainerSpec::new("args", &images.shell);
        spec.args = vec!["echo from args".into()];
        let (_, out) = run("args", spec).await;
        assert_eq!(out, ["from args"]);
        runtime.remove_sandbox(&sandbox).await.expect("remove");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_containers_never_lose_their_output() {
    // A container that exits as its log stream is being opened is the racy case for
    // Docker's follow mode; every run's output must still be complete when wait returns.
    let what = "docker short-lived logs";
    let Some((runtime, images)) = runtime_or_skip(what).await else {
        return;
    };
    cleanly(&runtime, async {
        let logs = tempfile::tempdir().expect("logs");
        let sandbox = runtime
            .create_sandbox(&SandboxSpec::new("quick"))
            .await
            .expect("sandbox");
        // Several at once, several times: the race needs an exit to coincide with the
        // opening of the log stream.
        for round in 0..4 {
            let runs = (0..6).map(|n| {
                let (runtime, sandbox, shell) = (&runtime, &sandbox, &images.shell);
                let path = logs.path().join(format!("quick-{round}-{n}.log"));
                async move {
                    let mut spec = ContainerSpec::new(format!("quick-{round}-{n}"), shell);
                    spec.args = vec![format!("echo out {n}; echo err {n} >&2")];
                    spec.log_path = Some(path.clone());
                    let id = runtime
                        .create_container(sandbox, &spec)
                        .await
                        .expect("create");
                    runtime.start_container(&id).await.expect("start");
                    runtime.wait_container(&id).await.expect("wait");
                    let records = read_records(&path).expect("log");
                    assert_eq!(lines_of(&records, Stream::Stdout), [format!("out {n}")]);
                    assert_eq!(lines_of(&records, Stream::Stderr), [format!("err {n}")]);
                    runtime.remove_container(&id).await.expect("remove");
                }
            });
            futures::future::join_all(runs).await;
        }
        runtime.remove_sandbox(&sandbox).await.expect("remove");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_cannot_start_ends_as_container_cannot_run() {
    let what = "docker failed start";
    let Some((runtime, images)) = runtime_or_skip(what).await else {
        return;
    };
    cleanly(&runtime, async {
        let sandbox = runtime
            .create_sandbox(&SandboxSpec::new("broken"))
            .await
            .expect("sandbox");
        let id = runtime
            .create_container(&sandbox, &ContainerSpec::new("broken", &images.invalid))
            .await
            .expect("create");
        let error = runtime
            .start_container(&id)
            .await
            .expect_err("no entrypoint");
        assert_eq!(error.reason(), "CreateContainerError", "{error}");
        assert!(error.to_string().contains("/does/not/exist"), "{error}");
        let status = tokio::time::timeout(Duration::from_secs(10), runtime.wait_container(&id))
            .await
            .expect("a failed start is final")
            .expect("wait");
        let exit = status.state.exit_info().expect("exited");
        assert_eq!(exit.reason, ExitReason::ContainerCannotRun, "{exit:?}");
        assert_ne!(exit.exit_code, 0);
        assert_eq!(status.state.started_at(), None);
        runtime.remove_sandbox(&sandbox).await.expect("remove");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_measures_create_to_running() {
    let what = "docker bench";
    let Some((runtime, _)) = runtime_or_skip(what).await else {
        return;
    };
    cleanly(&runtime, async {
        let report = run_docker_bench(
            &runtime,
            DockerBenchOptions {
                latency_samples: 5,
                sandbox_samples: 2,
            },
        )
        .await
        .expect("bench");
        eprintln!("{report}");
        assert_eq!(report.latency_samples, 5);
        assert!(
            report.create_to_running_p50_us > 1000.0,
            "Docker takes milliseconds: {report}"
        );
        assert!(report.create_to_running_p99_us >= report.create_to_running_p50_us);
        assert!(report.sandbox_create_p50_us > 0.0 && report.remove_p50_us > 0.0);
        assert!(report.daemon.contains("API"), "{}", report.daemon);
        assert!(
            runtime.list_sandboxes().await.expect("list").is_empty(),
            "bench cleans up"
        );
    })
    .await;
}

/// A kubelet killed without stopping its pods leaves pause and app containers running; the
/// next runtime of the same node removes those no live pod owns (and containers whose pause
/// container is gone), keeps the live pod's, and never touches another node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_removes_what_no_live_pod_owns() {
    let what = "docker orphan cleanup";
    let Some((cleanup, images)) = runtime_or_skip(what).await else {
        return;
    };
    let instance = cleanup.config().instance.clone();
    let stranger = DockerRuntime::new(DockerConfig::new(format!("other-{}", unique())));
    let test = async {
        let first = DockerRuntime::new(DockerConfig::new(instance.clone()));
        let pod = |name: &str, uid: &str| {
            let mut spec = SandboxSpec::new(name);
            spec.uid = uid.to_owned();
            spec
        };
        let sleeper = ContainerSpec::new("app", &images.sleep);
        let run = |runtime: DockerRuntime, spec: SandboxSpec| {
            let sleeper = sleeper.clone();
            async move {
                let sandbox = runtime.create_sandbox(&spec).await.expect("sandbox");
                let id = runtime
                    .create_container(&sandbox, &sleeper)
                    .await
                    .expect("create");
                runtime.start_container(&id).await.expect("start");
                (sandbox, id)
            }
        };
        let (gone_sandbox, gone_app) = run(first.clone(), pod("gone", "uid-gone")).await;
        let (live_sandbox, live_app) = run(first.clone(), pod("live", "uid-live")).await;
        let (lost_sandbox, lost_app) = run(first.clone(), pod("lost", "uid-live-2")).await;
        // Another node on the same daemon, with a pod of the same UID.
        let (other_sandbox, other_app) = run(stranger.clone(), pod("gone", "uid-gone")).await;

        // Someone removed one pod's pause container behind the node's back.
        let docker = docker_api().await;
        let force = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
            .force(true)
            .build();
        docker
            .remove_container(&lost_sandbox, Some(force))
            .await
            .expect("remove a pause container");

        // The kubelet dies: nothing is stopped.
        drop(first);

        let second = DockerRuntime::new(DockerConfig::new(instance.clone()));
        let keep = std::collections::HashSet::from(["uid-live".to_owned()]);
        let removed = second.remove_orphans(&keep).await.expect("remove orphans");
        let sandboxes: Vec<&str> = removed.sandboxes.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(sandboxes, [gone_sandbox.as_str()], "{removed:?}");
        assert_eq!(removed.sandboxes[0].uid, "uid-gone");
        assert_eq!(
            removed.containers,
            std::slice::from_ref(&lost_app),
            "{removed:?}"
        );

        let exists = |id: String| {
            let docker = docker.clone();
            async move { docker.inspect_container(&id, None).await.is_ok() }
        };
        for id in [&gone_sandbox, &gone_app, &lost_app] {
            assert!(!exists(id.clone()).await, "{id} was removed from Docker");
        }
        let running = |id: String| {
            let docker = docker.clone();
            async move {
                let found = docker.inspect_container(&id, None).await.expect("inspect");
                found.state.and_then(|s| s.running).unwrap_or(false)
            }
        };
        for id in [&live_sandbox, &live_app] {
            assert!(running(id.clone()).await, "the live pod's {id} runs on");
        }
        for id in [&other_sandbox, &other_app] {
            assert!(
                running(id.clone()).await,
                "another node's {id} is untouched"
            );
        }
        let listed = second.list_sandboxes().await.expect("list");
        let listed: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(listed, [live_sandbox.as_str()]);
        assert!(
            second
                .remove_orphans(&keep)
                .await
                .expect("again")
                .is_empty()
        );
    };
    cleanly(&cleanup, cleanly(&stranger, test)).await;
}

/// Read `stdout` until it contains `want` (or fail after 15 s); returns what was read.
async fn read_until(
    stdout: &mut skiff_runtimes::streaming::BoxedRead,
    seen: &mut String,
    want: &str,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while !seen.contains(want) {
            let n = stdout.read(&mut buf).await.expect("read exec output");
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(
        found.is_ok() && seen.contains(want),
        "waiting for {want:?}, got {seen:?}"
    );
}

/// A terminal exec is created with the client's first size (`ConsoleSize`, which daemons
/// with API 1.42+ start the process at; older ones get it as a resize at once), and later
/// resizes reach the running command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_terminal_gets_the_clients_first_size_then_resizes() {
    use skiff_runtimes::{ExecSpec, TerminalSize};
    let what = "docker exec terminal size";
    let Some((cleanup, images)) = runtime_or_skip(what).await else {
        return;
    };
    let mut proxy = DaemonProxy::new();
    let traffic = proxy.start_recording();
    let runtime = DockerRuntime::new(DockerConfig {
        socket: proxy.socket.clone(),
        ..DockerConfig::new(cleanup.config().instance.clone())
    });
    cleanly(&cleanup, async {
        let sandbox = runtime
            .create_sandbox(&SandboxSpec::new("tty-size"))
            .await
            .expect("sandbox");
        let id = runtime
            .create_container(&sandbox, &ContainerSpec::new("sleeper", &images.sleep))
            .await
            .expect("create");
        runtime.start_container(&id).await.expect("start");

        // busybox `stty size` prints nothing (or `0 0`) while the terminal has no size.
        let script = r#"size() { stty size 2>/dev/null; }
until s=$(size) && [ -n "$s" ] && [ "$s" != "0 0" ]; do sleep 0.02; done
echo "first $s"
while [ "$(size)" = "$s" ]; do sleep 0.02; done
echo "then $(size)""#;
        let mut session = runtime
            .exec(&id, &ExecSpec::new(["sh", "-c", script]).with_tty())
            .await
            .expect("exec");
        let resize = session.resize.take().expect("a terminal can be resized");
        resize
            .send(TerminalSize {
                width: 132,
                height: 43,
            })
            .await
            .expect("first size");
        let mut stdout = session.stdout.take().expect("stdout");
        let mut seen = String::new();
        read_until(&mut stdout, &mut seen, "first 43 132").await;
        resize
            .send(TerminalSize {
                width: 100,
                height: 50,
            })
            .await
            .expect("resize");
        read_until(&mut stdout, &mut seen, "then 50 100").await;
        let code = tokio::time::timeout(Duration::from_secs(15), session.exit)
            .await
            .expect("exits in time");
        assert_eq!(code.expect("exit code"), 0, "{seen:?}");
        let sent = String::from_utf8_lossy(&traffic.lock()).into_owned();
        assert!(
            sent.contains(r#""ConsoleSize":[43,132]"#),
            "the exec is created with the first size"
        );

        // Standard input reaches a terminal exec, even when written before it started.
        let mut session = runtime
            .exec(
                &id,
                &ExecSpec::new(["sh", "-c", "read line; echo \"got $line\""])
                    .with_tty()
                    .with_stdin(),
            )
            .await
            .expect("exec with stdin");
        let mut stdin = session.stdin.take().expect("stdin");
        tokio::io::AsyncWriteExt::write_all(&mut stdin, b"typed\n")
            .await
            .expect("write stdin");
        let resize = session.resize.take().expect("resize");
        resize
            .send(TerminalSize {
                width: 80,
                height: 24,
            })
            .await
            .expect("size");
        let mut stdout = session.stdout.take().expect("stdout");
        let mut seen = String::new();
        read_until(&mut stdout, &mut seen, "got typed").await;
        drop(stdin);
        assert_eq!(session.exit.await.expect("exit"), 0, "{seen:?}");

        // Without a size the command still runs (after a short wait), at 0×0.
        let mut session = runtime
            .exec(&id, &ExecSpec::new(["echo", "no size"]).with_tty())
            .await
            .expect("exec");
        let _keep_resize_open = session.resize.take();
        let mut stdout = session.stdout.take().expect("stdout");
        let mut seen = String::new();
        read_until(&mut stdout, &mut seen, "no size").await;
        assert_eq!(session.exit.await.expect("exit"), 0);
        runtime.remove_sandbox(&sandbox).await.expect("remove");
    })
    .await;
}
