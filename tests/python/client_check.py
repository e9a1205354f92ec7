"""Drives Skiff's API server with the official Python `kubernetes` client.

Usage: client_check.py KUBECONFIG. Exits non-zero with a message on the first
behaviour that differs from Kubernetes.
"""
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def expect(cond, msg):
    if not cond:
        print("FAIL:", msg, file=sys.stderr)
        sys.exit(1)


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    names = [ns.metadata.name for ns in core.list_namespace().items]
    expect("kube-system" in names, f"namespaces: {names}")

    ns = "py-client"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

    # Create, read, conflict on a stale resourceVersion.
    cm = core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg", labels={"app": "py"}), data={"a": "1"}))
    expect(cm.metadata.uid and cm.metadata.resource_version, "create returns uid and resourceVersion")
    stale = cm.metadata.resource_version
    cm.data["a"] = "2"
    core.replace_namespaced_config_map("cfg", ns, cm)
    cm.metadata.resource_version = stale
    try:
        core.replace_namespaced_config_map("cfg", ns, cm)
        expect(False, "stale update must fail")
    except ApiException as e:
        expect(e.status == 409, f"stale update status {e.status}")

    try:
        core.read_namespaced_config_map("missing", ns)
        expect(False, "missing object must 404")
    except ApiException as e:
        expect(e.status == 404, f"missing status {e.status}")

    # Patch (strategic merge is the client's default for dicts).
    core.patch_namespaced_config_map("cfg", ns, {"metadata": {"labels": {"patched": "yes"}}})
    got = core.read_namespaced_config_map("cfg", ns)
    expect(got.metadata.labels.get("patched") == "yes" and got.data["a"] == "2", f"patched: {got.metadata.labels}")

    # Label selectors and a Deployment with the typed models.
    sel = core.list_namespaced_config_map(ns, label_selector="app=py,patched in (yes)")
    expect([i.metadata.name for i in sel.items] == ["cfg"], "label selector")
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="hello:latest")]))))
    created = apps.create_namespaced_deployment(ns, dep)
    expect(created.spec.strategy.type == "RollingUpdate", "deployment defaults")
    scale = apps.read_namespaced_deployment_scale("web", ns)
    expect(scale.spec.replicas == 2, "scale subresource")

    # Watch: events for objects created after the watch starts.
    seen = []
    w = watch.Watch()
    rv = core.list_namespaced_config_map(ns).metadata.resource_version

    def watcher():
        for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["object"].metadata.name == "late" and ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="late")))
    core.delete_namespaced_config_map("late", ns)
    t.join(15)
    expect(("ADDED", "late") in seen and ("DELETED", "late") in seen, f"watch events: {seen}")

    core.delete_namespace(ns)
    print("python client: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
