//! The stock kubectl against a real `skiff apiserver` over HTTPS.

mod common;

use std::time::Duration;

use common::{Cluster, assert_ok, eventually};

const MULTI_DOC: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web}
data:
  greeting: hello
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  labels: {app: web, tier: front}
spec:
  containers:
  - name: app
    image: hello:latest
    ports: [{containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: hello:latest
"#;

fn write(cluster: &Cluster, name: &str, text: &str) -> String {
    let path = cluster.dir.path().join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.to_string_lossy().into_owned()
}

#[test]
fn cluster_information_commands() {
    let c = Cluster::start("apiserver", &["--store", "memory"]);
    let version = c.ok(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&version).expect("version json");
    assert_eq!(v["serverVersion"]["major"], "1", "{version}");

    let info = c.ok(&["cluster-info"]);
    assert!(
        info.contains("Kubernetes control plane is running at https://127.0.0.1"),
        "{info}"
    );

    let resources = c.ok(&["api-resources"]);
    for needle in [
        "pods",
        "po ",
        "deployments",
        "deploy",
        "apps/v1",
        "customresourcedefinitions",
        "leases",
        "runtimeclasses",
        "cronjobs",
        "statefulsets",
    ] {
        assert!(
            resources.contains(needle),
            "api-resources lacks {needle}:\n{resources}"
        );
    }
    let versions = c.ok(&["api-versions"]);
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "coordination.k8s.io/v1",
        "node.k8s.io/v1",
        "apiextensions.k8s.io/v1",
    ] {
        assert!(
            versions.lines().any(|l| l == gv),
            "api-versions lacks {gv}:\n{versions}"
        );
    }
    assert_eq!(c.ok(&["get", "--raw", "/healthz"]), "ok");
    let ns = c.ok(&["get", "namespaces"]);
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(name), "{ns}");
    }
    assert!(
        ns.starts_with("NAME") && ns.contains("STATUS") && ns.contains("Active"),
        "{ns}"
    );
}

#[test]
fn create_get_label_scale_patch_delete() {
    let c = Cluster::start("apiserver", &["--store", "memory"]);
    let file = write(&c, "multi.yaml", MULTI_DOC);
    let out = c.ok(&["create", "-f", &file]);
    assert!(out.contains("configmap/settings created"), "{out}");
    assert!(out.contains("pod/web-0 created"), "{out}");
    assert!(out.contains("deployment.apps/web created"), "{out}");

    // A duplicate create is AlreadyExists.
    let dup = c.kubectl(&["create", "-f", &file]);
    assert!(!dup.status.success());
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(
        err.contains("AlreadyExists") && err.contains("\"web-0\" already exists"),
        "{err}"
    );

    // Server-side printing.
    let pods = c.ok(&["get", "pods"]);
    let header: Vec<&str> = pods
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    assert!(
        pods.contains("web-0") && pods.contains("0/1") && pods.contains("Pending"),
        "{pods}"
    );
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains("NOMINATED NODE") && wide.contains("READINESS GATES"),
        "{wide}"
    );
    let deploy = c.ok(&["get", "deploy"]);
    assert!(
        deploy.contains("UP-TO-DATE") && deploy.contains("AVAILABLE"),
        "{deploy}"
    );

    let yaml = c.ok(&["get", "pod", "web-0", "-o", "yaml"]);
    for needle in [
        "uid:",
        "resourceVersion:",
        "creationTimestamp:",
        "restartPolicy: Always",
        "dnsPolicy: ClusterFirst",
    ] {
        assert!(yaml.contains(needle), "pod yaml lacks {needle}:\n{yaml}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "web", "-o", "json"])).expect("json");
    assert_eq!(json["metadata"]["generation"], 1);
    assert_eq!(json["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(c.ok(&["get", "pods", "-o", "name"]).trim(), "pod/web-0");
    assert_eq!(
        c.ok(&["get", "cm", "-l", "app=web", "-o", "name"]).trim(),
        "configmap/settings"
    );
    assert_eq!(
        c.ok(&["get", "pods", "-l", "tier notin (back)", "-o", "name"])
            .trim(),
        "pod/web-0"
    );
    assert_eq!(
        c.ok(&["get", "pods", "-l", "!tier", "-o", "name"]).trim(),
        ""
    );
    let all = c.ok(&["get", "pods", "-A"]);
    assert!(
        all.starts_with("NAMESPACE") && all.contains("default") && all.contains("web-0"),
        "{all}"
    );

    // label / annotate
    assert!(
        c.ok(&["label", "pod", "web-0", "env=prod"])
            .contains("pod/web-0 labeled")
    );
    let relabel = c.kubectl(&["label", "pod", "web-0", "env=dev"]);
    assert!(
        !relabel.status.success(),
        "relabel without --overwrite must fail"
    );
    c.ok(&["label", "pod", "web-0", "env=dev", "--overwrite"]);
    assert_eq!(
        c.ok(&["get", "pods", "-l", "env=dev", "-o", "name"]).trim(),
        "pod/web-0"
    );
    c.ok(&["label", "pod", "web-0", "env-"]);
    assert_eq!(c.ok(&["get", "pods", "-l", "env", "-o", "name"]).trim(), "");
    assert!(
        c.ok(&["annotate", "pod", "web-0", "note=hi"])
            .contains("annotated")
    );

    // scale (merge patch on /scale), and generation bumps on spec change only.
    assert!(
        c.ok(&["scale", "deployment", "web", "--replicas=5"])
            .contains("scaled")
    );
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "web", "-o", "json"])).expect("json");
    assert_eq!(json["spec"]["replicas"], 5);
    assert_eq!(json["metadata"]["generation"], 2);
    c.ok(&[
        "scale",
        "deployment",
        "web",
        "--current-replicas=5",
        "--replicas=3",
    ]);
    let stale = c.kubectl(&[
        "scale",
        "deployment",
        "web",
        "--current-replicas=5",
        "--replicas=4",
    ]);
    assert!(
        !stale.status.success(),
        "scale with a wrong --current-replicas must fail"
    );
    c.ok(&["annotate", "deploy", "web", "x=y"]);
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "web", "-o", "json"])).expect("json");
    assert_eq!(
        json["metadata"]["generation"], 3,
        "annotations must not bump generation"
    );

    // Every patch type.
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"hello:v2"}]}}}}"#,
    ]);
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"m":"1"}}}"#,
    ]);
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "web", "-o", "json"])).expect("json");
    assert_eq!(
        json["spec"]["template"]["spec"]["containers"][0]["image"],
        "hello:v2"
    );
    assert_eq!(
        json["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(json["metadata"]["labels"]["m"], "1");
    assert_eq!(json["spec"]["replicas"], 1);

    // describe shows the object and its events section.
    let describe = c.ok(&["describe", "pod", "web-0"]);
    assert!(
        describe.contains("Name:")
            && describe.contains("web-0")
            && describe.contains("hello:latest"),
        "{describe}"
    );
    assert!(
        c.ok(&["describe", "deployment", "web"])
            .contains("Replicas:")
    );

    // delete waits for the object to be gone.
    let out = c.ok(&["delete", "pod", "web-0"]);
    assert!(out.contains("pod \"web-0\" deleted"), "{out}");
    let gone = c.kubectl(&["get", "pod", "web-0"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));
    c.ok(&["delete", "-f", &file, "--ignore-not-found"]);
    let left = c.ok(&["get", "deploy,cm", "-o", "name"]);
    assert!(
        !left.contains("deployment.apps/web") && !left.contains("configmap/settings"),
        "{left}"
    );
}

#[test]
fn apply_client_side_and_server_side() {
    let c = Cluster::start("apiserver", &["--store", "memory"]);
    let v1 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a: \"1\"\n";
    let v2 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  labels: {tier: web}\ndata:\n  a: \"2\"\n";
    let f1 = write(&c, "v1.yaml", v1);
    let f2 = write(&c, "v2.yaml", v2);
    assert!(
        c.ok(&["apply", "-f", &f1])
            .contains("configmap/app created")
    );
    assert!(
        c.ok(&["apply", "-f", &f1])
            .contains("configmap/app unchanged")
    );
    assert!(
        c.ok(&["apply", "-f", &f2])
            .contains("configmap/app configured")
    );
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "cm", "app", "-o", "json"])).expect("json");
    assert_eq!(json["data"]["a"], "2");
    assert_eq!(json["metadata"]["labels"]["tier"], "web");
    assert!(
        json["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    let ssa = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ssa\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: ssa}\n  template:\n    metadata:\n      labels: {app: ssa}\n    spec:\n      containers:\n      - name: app\n        image: hello:latest\n";
    let f3 = write(&c, "ssa.yaml", ssa);
    assert!(
        c.ok(&["apply", "--server-side", "-f", &f3])
            .contains("serverside-applied")
    );
    let json: serde_json::Value = serde_json::from_str(&c.ok(&[
        "get",
        "deploy",
        "ssa",
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .expect("json");
    let managers: Vec<&str> = json["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(managers.contains(&"kubectl"), "{managers:?}");
    // Another manager changing replicas makes a second server-side apply conflict.
    c.ok(&["scale", "deploy", "ssa", "--replicas=4"]);
    let conflict = c.kubectl(&["apply", "--server-side", "-f", &f3]);
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        !conflict.status.success() && err.contains("conflict"),
        "{err}"
    );
    assert_ok(
        &c.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &f3]),
        &["apply --force-conflicts"],
    );
    let dry = c.ok(&["apply", "--server-side", "--dry-run=server", "-f", &f3]);
    assert!(dry.contains("server dry run"), "{dry}");
}

#[test]
fn generator_commands_send_protobuf() {
    let c = Cluster::start("apiserver", &["--store", "memory"]);
    assert!(
        c.ok(&["create", "namespace", "team-a"])
            .contains("namespace/team-a created")
    );
    c.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "team-a",
        "--from-literal=k=v",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "pw",
        "-n",
        "team-a",
        "--from-literal=password=s3cret",
    ]);
    c.ok(&[
        "create",
        "deployment",
        "dep",
        "-n",
        "team-a",
        "--image=hello:latest",
        "--replicas=3",
        "--port=8080",
    ]);
    c.ok(&["create", "serviceaccount", "robot", "-n", "team-a"]);
    c.ok(&[
        "create",
        "service",
        "clusterip",
        "svc",
        "-n",
        "team-a",
        "--tcp=80:8080",
    ]);
    c.ok(&[
        "create",
        "job",
        "once",
        "-n",
        "team-a",
        "--image=hello:latest",
    ]);
    let cm: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "cm", "cfg", "-n", "team-a", "-o", "json"]))
            .expect("json");
    assert_eq!(cm["data"]["k"], "v");
    let secret: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "secret", "pw", "-n", "team-a", "-o", "json"]))
            .expect("json");
    assert_eq!(secret["data"]["password"], "czNjcmV0");
    let dep: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "dep", "-n", "team-a", "-o", "json"]))
            .expect("json");
    assert_eq!(dep["spec"]["replicas"], 3);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );
    let svc = c.ok(&["get", "svc", "svc", "-n", "team-a"]);
    assert!(svc.contains("ClusterIP") && svc.contains("80/TCP"), "{svc}");
    // A create in a missing namespace is refused.
    let missing = c.kubectl(&["create", "configmap", "x", "-n", "nope"]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && err.contains("namespaces \"nope\" not found"),
        "{err}"
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let c = Cluster::start("apiserver", &["--store", "memory"]);
    let unknown = write(
        &c,
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\nbogus: 1\n",
    );
    let out = c.kubectl(&["create", "-f", &unknown]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown field") && err.contains("bogus"),
        "{err}"
    );
    assert!(
        c.kubectl(&["get", "cm", "x"]).status.code() != Some(0),
        "nothing stored"
    );

    let bad_name = write(
        &c,
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    );
    let out = c.kubectl(&["create", "-f", &bad_name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Invalid") && err.contains("metadata.name"),
        "{err}"
    );

    let out = c.kubectl(&["get", "--raw", "/api/v1/namespaces/default/nothings"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    let out = c.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n",
    );
    assert!(!out.status.success());
    // The server keeps serving.
    c.ok(&["get", "ns", "default"]);
}

#[test]
fn watch_prints_changes() {
    let c = Cluster::start("apiserver", &["--store", "memory"]);
    c.ok(&["create", "configmap", "w1", "--from-literal=a=b"]);
    let mut child = std::process::Command::new("kubectl")
        .args(["--kubeconfig"])
        .arg(&c.kubeconfig)
        .args(["get", "configmaps", "-w", "--request-timeout=20s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl -w");
    std::thread::sleep(Duration::from_millis(1500));
    c.ok(&["create", "configmap", "w2", "--from-literal=a=b"]);
    c.ok(&["delete", "configmap", "w1"]);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("w1") && text.contains("w2"), "{text}");
}

#[test]
fn custom_resources_are_served_after_their_crd() {
    let c = Cluster::start("apiserver", &["--store", "memory"]);
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue]}
"#;
    let f = write(&c, "crd.yaml", crd);
    c.ok(&["apply", "-f", &f]);
    assert!(eventually(Duration::from_secs(10), || {
        c.kubectl(&["get", "widgets"]).status.success()
    }));
    let w = write(
        &c,
        "w.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n  color: red\n",
    );
    c.ok(&["apply", "-f", &w]);
    let table = c.ok(&["get", "wd"]);
    assert!(
        table.contains("SIZE") && table.contains("w1") && table.contains('3'),
        "{table}"
    );
    let bad = write(
        &c,
        "bad.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w2\nspec:\n  size: 0\n  color: green\n",
    );
    let out = c.kubectl(&["apply", "-f", &bad]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("spec.size") && err.contains("spec.color"),
        "{err}"
    );
    c.ok(&["delete", "crd", "widgets.example.com"]);
}

#[test]
fn explain_uses_openapi_v3() {
    let c = Cluster::start("apiserver", &["--store", "memory"]);
    let out = c.ok(&["explain", "pod.spec.containers"]);
    assert!(
        out.contains("KIND:") && out.contains("Pod") && out.contains("image"),
        "{out}"
    );
}

#[test]
fn every_kubectl_version_works() {
    let c = Cluster::start("apiserver", &["--store", "memory"]);
    let bins = common::versioned_kubectls();
    if std::env::var_os("CI").is_some() {
        assert!(
            !bins.is_empty(),
            "no versioned kubectl binaries found beside kubectl"
        );
    }
    for (i, bin) in bins.iter().enumerate() {
        let run = |args: &[&str]| {
            let out = c.kubectl_bin(bin, args);
            assert_ok(&out, args);
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let name = format!("v{i}");
        let f = write(
            &c,
            &format!("{name}.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"),
        );
        run(&["version"]);
        run(&["get", "pods"]);
        run(&["create", "-f", &f]);
        run(&["apply", "-f", &f]);
        let got = run(&["get", "configmap", &name]);
        assert!(got.contains(&name), "{}: {got}", bin.display());
        run(&["delete", "configmap", &name]);
    }
}
