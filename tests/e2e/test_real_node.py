"""The real nodes: containers really run there (kubelet, containerd, runc, a CNI bridge and
kube-proxy in a network namespace per node), pulling images from the local registry. Every
assertion is about what a container did, not what a fake said."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.e2e.conveyor import Conveyor, conveyor_cli, job_status, pipeline, run
from tests.e2e.gitrepo import go_app_repo, new_repo
from tests.e2e.realnode import Answer, RealNodes, pod, serve
from tests.e2e.support import Clusters, wait_for_object, wait_until


def pod_ended(core: client.CoreV1Api, namespace: str, name: str, timeout: float = 120) -> Any:
    return wait_for_object(
        core.list_namespaced_pod,
        name,
        lambda p: p.status.phase in ("Succeeded", "Failed"),
        namespace=namespace,
        timeout=timeout,
    )


def pod_running(core: client.CoreV1Api, namespace: str, name: str, timeout: float = 120) -> Any:
    return wait_for_object(
        core.list_namespaced_pod,
        name,
        lambda p: (
            p.status.phase == "Running" and all(c.ready for c in p.status.container_statuses or [])
        ),
        namespace=namespace,
        timeout=timeout,
    )


def test_each_cluster_has_a_tainted_real_node_beside_its_kwok_nodes(
    clusters: Clusters, real: RealNodes
) -> None:
    for cluster, info in real.nodes.items():
        core = client.CoreV1Api(clusters.api(cluster))
        node = core.read_node(info["name"])
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status == "True", (cluster, ready.message)
        assert node.metadata.labels["conveyor.dev/node"] == "real"
        assert any(
            t.key == "conveyor.dev/real-node" and t.effect == "NoSchedule" for t in node.spec.taints
        )
        assert node.status.node_info.container_runtime_version.startswith("containerd://")
        assert node.status.node_info.kubelet_version == "v1.37.2"
        addresses = {a.type: a.address for a in node.status.addresses}
        assert addresses["InternalIP"] == info["ip"]
        kwok = core.list_node(label_selector="type=kwok").items
        assert len(kwok) == 2, [n.metadata.name for n in kwok]


def test_a_pod_that_does_not_tolerate_the_taint_never_lands_there(
    clusters: Clusters, namespace: str, real: RealNodes
) -> None:
    core = client.CoreV1Api(clusters.api("ci"))
    body = pod("picky", "true", real)
    del body["spec"]["tolerations"]
    core.create_namespaced_pod(namespace, body)
    unschedulable = wait_for_object(
        core.list_namespaced_pod,
        "picky",
        lambda p: any(
            c.type == "PodScheduled" and c.reason == "Unschedulable"
            for c in p.status.conditions or []
        ),
        namespace=namespace,
    )
    assert unschedulable.spec.node_name is None


def test_a_container_really_runs_and_its_exit_code_and_log_are_its_own(
    clusters: Clusters, namespace: str, real: RealNodes
) -> None:
    core = client.CoreV1Api(clusters.api("ci"))
    script = (
        'echo "hello from $(hostname)"; echo "kernel $(uname -r)"; '
        "echo to-stderr >&2; cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 3"
    )
    core.create_namespaced_pod(namespace, pod("runs", script, real))
    ended = pod_ended(core, namespace, "runs")
    assert ended.spec.node_name == real.nodes["ci"]["name"]
    assert ended.status.phase == "Failed"
    assert ended.status.container_statuses[0].state.terminated.exit_code == 3
    log = core.read_namespaced_pod_log("runs", namespace).splitlines()
    # The pod's own host name, the machine's kernel, the pod's own PID 1, and stderr too (the
    # two streams are separate pipes: their lines interleave in no fixed order).
    assert [line for line in log if line != "to-stderr"] == [
        "hello from runs",
        f"kernel {os.uname().release}",
        f"sh -c {script} ",
    ]
    assert "to-stderr" in log


def test_exec_into_a_running_container(clusters: Clusters, namespace: str, real: RealNodes) -> None:
    core = client.CoreV1Api(clusters.api("ci"))
    core.create_namespaced_pod(
        namespace,
        pod("sleeper", "echo started; exec sleep 600", real, terminationGracePeriodSeconds=1),
    )
    pod_running(core, namespace, "sleeper")
    out = clusters.kubectl("ci", "exec", "-n", namespace, "sleeper", "--", "cat", "/etc/hostname")
    assert out.stdout.strip() == "sleeper"


def test_pods_reach_each_other_the_host_and_services_by_cluster_ip(
    clusters: Clusters, namespace: str, real: RealNodes
) -> None:
    core = client.CoreV1Api(clusters.api("ci"))
    server = "mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 8080 -h /www"
    core.create_namespaced_pod(namespace, pod("web", server, real, terminationGracePeriodSeconds=1))
    core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    web = pod_running(core, namespace, "web")
    service_ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    # kube-proxy has programmed the Service once its endpoints list the pod.
    wait_until(
        lambda: any(
            a.ip == web.status.pod_ip
            for s in core.read_namespaced_endpoints("web", namespace).subsets or []
            for a in s.addresses or []
        ),
        what="endpoints of web",
    )
    with serve(real.host_ip, Answer) as port:
        # httpd may not listen yet when its pod runs, nor kube-proxy have programmed the
        # Service when its endpoints appear: each request is retried until it is answered,
        # 40 times at most.
        get = (
            "for i in $(seq 40); do "
            "r=$(printf 'GET /{0} HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {1} {2} | tail -n 1); "
            '[ -n "$r" ] && break; sleep 0.25; done; echo "$r"'
        )
        script = "; ".join(
            [
                "echo pod: $(" + get.format("", web.status.pod_ip, 8080) + ")",
                "echo service: $(" + get.format("", service_ip, 80) + ")",
                "echo host: $(" + get.format("from-pod", real.host_ip, port) + ")",
            ]
        )
        core.create_namespaced_pod(namespace, pod("client", script, real))
        ended = pod_ended(core, namespace, "client")
    log = core.read_namespaced_pod_log("client", namespace).splitlines()
    assert ended.status.phase == "Succeeded", log
    assert log == ["pod: pong", "service: pong", "host: host-ok /from-pod"]


def test_pods_resolve_services_by_dns_name(
    clusters: Clusters, namespace: str, real: RealNodes
) -> None:
    core = client.CoreV1Api(clusters.api("ci"))
    server = "mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 8080 -h /www"
    core.create_namespaced_pod(
        namespace, pod("named", server, real, terminationGracePeriodSeconds=1)
    )
    core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "named"},
            "spec": {"selector": {"app": "named"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    pod_running(core, namespace, "named")
    wait_until(
        lambda: core.read_namespaced_endpoints("named", namespace).subsets,
        what="endpoints of named",
    )
    # bash's /dev/tcp resolves with glibc, through the pod's resolv.conf (search domains). The
    # request is retried (40 times at most) until kube-proxy has programmed the Service.
    script = r"""
for name in named named.$NS.svc.cluster.local kubernetes.default; do
  getent hosts $name | cut -d' ' -f1 | sed "s/^/$name /"
done
for i in $(seq 40); do
  r=$(timeout 5 bash -c 'exec 3<>/dev/tcp/named/80 && printf "GET / HTTP/1.0\r\n\r\n" >&3 &&
    tail -n 1 <&3' 2>/dev/null)
  [ -n "$r" ] && break
  sleep 0.25
done
echo "$r"
timeout 5 bash -c 'exec 4<>/dev/tcp/kubernetes.default/443' && echo api server reachable
"""
    core.create_namespaced_pod(
        namespace,
        pod(
            "resolver",
            script,
            real,
            image="debian:bookworm-slim",
            containers=[
                {
                    "name": "main",
                    "image": "debian:bookworm-slim",
                    "command": ["bash", "-c", script],
                    "env": [{"name": "NS", "value": namespace}],
                }
            ],
        ),
    )
    ended = pod_ended(core, namespace, "resolver")
    log = core.read_namespaced_pod_log("resolver", namespace).splitlines()
    assert ended.status.phase == "Succeeded", log
    service_ip = core.read_namespaced_service("named", namespace).spec.cluster_ip
    assert log == [
        f"named {service_ip}",
        f"named.{namespace}.svc.cluster.local {service_ip}",
        "kubernetes.default 10.96.0.1",
        "pong",
        "api server reachable",
    ]


def test_images_come_from_the_local_registry_under_their_public_names(
    clusters: Clusters, namespace: str, real: RealNodes
) -> None:
    core = client.CoreV1Api(clusters.api("ci"))
    images = {
        "deb": ("debian:bookworm-slim", ". /etc/os-release; echo $VERSION_CODENAME"),
        "git": ("alpine/git:2.47.2", "git --version | cut -d' ' -f1-2"),
        "pinned": ("docker.io/library/busybox:1.36", "echo busybox"),
    }
    for name, (image, script) in images.items():
        core.create_namespaced_pod(namespace, pod(name, script, real, image=image))
    for name, expected in (("deb", "bookworm"), ("git", "git version"), ("pinned", "busybox")):
        ended = pod_ended(core, namespace, name)
        assert ended.status.phase == "Succeeded", name
        assert core.read_namespaced_pod_log(name, namespace).strip() == expected


# --- Conveyor on the real node --------------------------------------------------------------


def test_a_pipeline_job_checks_out_over_http_and_runs_its_script_for_real(
    conveyor: Conveyor,
    clusters: Clusters,
    real: RealNodes,
    git_server: tuple[Path, str],
    tmp_path: Path,
) -> None:
    root, base = git_server
    work = new_repo(tmp_path / "work", {"README": "hello from the repository\n"}, branch="main")
    bare = root / "app.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True)
    sha = work.head()
    placement = real.placement()
    conveyor.create(
        pipeline(
            "real",
            [
                {
                    "name": "greet",
                    "stage": "test",
                    "image": "busybox:1.36",
                    "script": [
                        "cat README",
                        'echo "job $CI_JOB_NAME at $CI_COMMIT_SHA in $(pwd)"',
                        "echo written > out.txt && cat out.txt",
                    ],
                },
                {
                    "name": "fail",
                    "stage": "test",
                    "image": "debian:bookworm-slim",
                    "script": ["echo about to fail", "exit 3"],
                },
            ],
            source={"url": f"{base}/app.git"},
            **placement,
        )
    )
    conveyor.create(run("real-1", "real", ref="main"))
    done = conveyor.wait_finished("real-1", timeout=180)
    assert job_status(done, "greet")["exitCode"] == 0, done["status"]
    assert job_status(done, "fail")["exitCode"] == 3, done["status"]
    assert done["status"]["phase"] == "Failed"
    pods = client.CoreV1Api(clusters.api("ci")).list_namespaced_pod(conveyor.ns).items
    assert {p.spec.node_name for p in pods} == {real.nodes["ci"]["name"]}

    greet = conveyor_cli(clusters, "logs", "real-1", "greet", "-n", conveyor.ns)
    assert greet.returncode == 0, greet.stderr
    lines = greet.stdout.splitlines()
    assert f"checked out main at {sha}" in lines
    assert "hello from the repository" in lines
    assert f"job greet at {sha} in /builds/app" in lines
    assert "written" in lines
    fail = conveyor_cli(clusters, "logs", "real-1", "fail", "-c", "script", "-n", conveyor.ns)
    assert "about to fail" in fail.stdout.splitlines()


def test_the_go_app_test_job_runs_go_test_for_real(
    conveyor: Conveyor,
    clusters: Clusters,
    real: RealNodes,
    git_server: tuple[Path, str],
    tmp_path: Path,
) -> None:
    """The article's test job (golang:alpine, `go test` in src/) on the real node: the Go
    toolchain image from hack/images/ compiles and runs the example's tests."""
    root, base = git_server
    work = go_app_repo(tmp_path / "go-app")
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work.path), str(root / "go-app.git")], check=True
    )
    conveyor.create(
        pipeline(
            "go",
            [
                {
                    "name": "test",
                    "stage": "test",
                    "image": "golang:alpine",
                    "script": ["cd ./src", "go version", "go test -v"],
                    "timeout": "10m",
                }
            ],
            source={"url": f"{base}/go-app.git"},
            **real.placement(),
        )
    )
    conveyor.create(run("go-1", "go", ref="master"))
    done = conveyor.wait_finished("go-1", timeout=600)
    logs = conveyor_cli(clusters, "logs", "go-1", "test", "-c", "script", "-n", conveyor.ns)
    assert job_status(done, "test")["exitCode"] == 0, logs.stdout + logs.stderr
    lines = logs.stdout.splitlines()
    assert any(line.startswith("go version go1.") for line in lines), lines
    assert any(line.startswith("--- PASS: ") for line in lines), lines
    assert any(line.startswith("ok  \tgo-app\t") for line in lines), lines

    # A commit that breaks a test fails the job and the run, with `go test`'s own verdict.
    broken = work.commit(
        "a test that fails",
        {"src/broken_test.go": BROKEN_TEST},
    )
    subprocess.run(
        ["git", "push", "-q", str(root / "go-app.git"), "master"], cwd=work.path, check=True
    )
    conveyor.create(run("go-2", "go", ref="master", revision={"ref": "master", "sha": broken}))
    failed = conveyor.wait_finished("go-2", timeout=600)
    logs = conveyor_cli(clusters, "logs", "go-2", "test", "-c", "script", "-n", conveyor.ns)
    assert failed["status"]["phase"] == "Failed", failed["status"]
    assert job_status(failed, "test")["exitCode"] == 1, logs.stdout + logs.stderr
    lines = logs.stdout.splitlines()
    assert "--- FAIL: TestBroken (0.00s)" in lines, lines
    assert any(line.startswith("FAIL\tgo-app\t") for line in lines), lines


BROKEN_TEST = """package main

import "testing"

func TestBroken(t *testing.T) {
	t.Fatal("broken on purpose")
}
"""


def test_a_service_runs_beside_the_script_and_answers_at_its_alias(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    """GitLab `services`: a native sidecar started before the script, reachable at its alias
    with its own variables; the job ends when the script does."""
    serve_page = (
        "mkdir -p /www && echo served by $GREETING > /www/index.html && "
        "exec httpd -f -p 8080 -h /www"
    )
    ask = (
        "for i in $(seq 40); do r=$(timeout 5 bash -c 'exec 3<>/dev/tcp/web/8080 && "
        'printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && tail -n 1 <&3\' 2>/dev/null); '
        '[ -n "$r" ] && break; sleep 0.25; done; echo "service said: $r"'
    )
    conveyor.create(
        pipeline(
            "svc",
            [
                {
                    "name": "ask",
                    "stage": "test",
                    "image": "debian:bookworm-slim",
                    "services": [
                        {
                            "name": "busybox:1.36",
                            "alias": "web",
                            "entrypoint": ["sh", "-c", serve_page],
                            "variables": {"GREETING": "the sidecar"},
                        }
                    ],
                    "script": [ask],
                }
            ],
            **real.placement(),
        )
    )
    conveyor.create(run("svc-1", "svc"))
    done = conveyor.wait_finished("svc-1", timeout=180)
    logs = conveyor_cli(clusters, "logs", "svc-1", "ask", "-c", "script", "-n", conveyor.ns)
    assert job_status(done, "ask")["exitCode"] == 0, logs.stdout + logs.stderr
    assert "service said: served by the sidecar" in logs.stdout.splitlines()
