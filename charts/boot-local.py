#!/usr/bin/env python3
"""`make story-cluster`: boot the Helm chart's configuration as a cluster of local processes
and run the product's acceptance story (`caretrail demo`) against it.

No Kubernetes here, so this does what the kubelet would, one machine over:

 1. renders charts/caretrail with ci/local-boot-values.yaml (`helm template`);
 2. for every workload — the migration Job, each ledger StatefulSet pod, one pod per
    Deployment — takes the container's command, args and environment exactly as rendered
    (ConfigMap envFrom, Secret refs resolved to this run's test values, field refs,
    Kubernetes' $(VAR) expansion) and rewrites only what cannot be the same on one machine:
    Service and pod DNS names → 127.0.0.1 with a free port per process, listen address and
    ports, volume mount paths (PVCs, emptyDirs, Secret files written to a temp dir), the image's
    /usr/local/bin → the built binaries. The table it prints is every rewrite; anything not in
    it is passed as rendered. Services with several ready endpoints (the ledger's) get a small
    TCP proxy that forwards to ready endpoints only, as kube-proxy would;
 3. prepares a fresh PostgreSQL database owned by the plain role caretrail_app, a bus prefix
    of its own on RabbitMQ, the Garage bucket;
 4. runs the migration Job's command, starts the ledger pods, then identity, consent,
    object-store and audit, then the gateway (--parallel: all at once, like a first install),
    and waits for each readiness probe;
 5. runs `caretrail demo` through the gateway with the credentials identity wrote
    (CARETRAIL_SEED_DEMO_FILE, set by the values file through identity.extraEnv);
 6. kills the ledger leader with SIGKILL, waits for a new leader, runs the story again, then
    restarts the killed pod on its volume (as the StatefulSet would) and waits until it has
    caught up (--no-leader-kill skips this);
 7. always stops everything (SIGTERM, then SIGKILL), drops the database, deletes the run's
    queues and exchanges and the objects it stored.

Exit status 0 only when every step passed. `--dry-run` stops after the rewrite table (no
binaries, database or broker needed).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHART = HERE / "caretrail"
VALUES = CHART / "ci" / "local-boot-values.yaml"
SECRETS_EXAMPLE = REPO / "infra" / "k8s" / "secrets.example.yaml"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "caretrail"
RELEASE, NAMESPACE = "caretrail", "caretrail-local"
IMAGE_BIN = "/usr/local/bin/"

# Local infrastructure (infra/start-*.sh) and its fixed test credentials.
PG_ADMIN_URL = os.environ.get("CARETRAIL_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
APP_ROLE, APP_PASSWORD = "caretrail_app", "caretrail"
AMQP_URL = os.environ.get("CARETRAIL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
S3_ACCESS_KEY = os.environ.get("CARETRAIL_S3_ACCESS_KEY", "GK31c2f218a2e44f485b94239e")
S3_SECRET_KEY = os.environ.get(
    "CARETRAIL_S3_SECRET_KEY", "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835")

# Start order without --parallel: the ledger first (it needs a majority to be ready), then
# the services, then the gateway.
WAVES = [["ledger"], ["identity", "consent", "object-store", "audit"], ["gateway"]]

T0 = time.monotonic()


def say(msg: str = "") -> None:
    print(msg, flush=True)


def step(msg: str) -> None:
    say(f"\n==> {msg} ({time.monotonic() - T0:.1f}s)")


class Failure(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def http_get(url: str, headers: dict | None = None, timeout: float = 2.0) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError):
        return 0, ""


def mask(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


# --------------------------------------------------------------------------------------
# Kubernetes semantics the kubelet applies to a container.
# --------------------------------------------------------------------------------------

# $(VAR) expansion exactly as the rendered-manifest checks apply it.
sys.path.insert(0, str(Path(__file__).resolve().parent / "caretrail" / "tests"))
from check_rendered import k8s_expand  # noqa: E402


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


class Pod:
    """One pod of a workload: its container as rendered, then as it runs here."""

    def __init__(self, workload: dict, name: str, ordinal: int | None):
        self.workload = workload
        self.kind = workload["kind"]
        self.name = name
        self.ordinal = ordinal
        spec = workload["spec"]["template"]["spec"]
        self.labels = workload["spec"]["template"]["metadata"].get("labels", {})
        self.component = self.labels.get("app.kubernetes.io/component", "")
        containers = spec["containers"]
        if len(containers) != 1:
            raise Failure(f"{name}: expected one container, found {len(containers)}")
        self.container = containers[0]
        self.pod_spec = spec
        self.rendered_env: dict[str, str] = {}   # after Secret/field resolution and $(VAR)
        self.env: dict[str, str] = {}            # what the process gets
        self.command: list[str] = []
        self.rendered_command: list[str] = []
        self.ports: dict[str, int] = {}          # container port name → local port
        self.container_ports: dict[str, int] = {}
        self.mounts: dict[str, Path] = {}        # mountPath → local directory
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.log: Path | None = None
        self.binary = ""
        self.started_at = 0.0
        self.ready_at: float | None = None
        self.killed = False
        self.node_id: int | None = None

    @property
    def probe_url(self) -> str | None:
        probe = self.container.get("readinessProbe", {}).get("httpGet")
        if not probe:
            return None
        port = probe["port"]
        local = self.ports[port] if isinstance(port, str) else self.ports[self.port_name(port)]
        return f"http://127.0.0.1:{local}{probe.get('path', '/')}"

    def port_name(self, number: int) -> str:
        for n, p in self.container_ports.items():
            if p == number:
                return n
        raise Failure(f"{self.name}: no container port {number}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        url = self.probe_url
        return self.alive() and url is not None and http_get(url, timeout=1.5)[0] == 200


def workloads(docs):
    for d in docs:
        if d.get("kind") in ("Deployment", "StatefulSet", "Job"):
            yield d


def pods_of(docs) -> list[Pod]:
    hpas = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs if d.get("kind") == "HorizontalPodAutoscaler"}
    pods = []
    for wl in workloads(docs):
        name = wl["metadata"]["name"]
        if wl["kind"] == "Job":
            pods.append(Pod(wl, f"{name}-job", None))
        elif wl["kind"] == "StatefulSet":
            pods += [Pod(wl, f"{name}-{i}", i) for i in range(wl["spec"]["replicas"])]
        else:
            n = wl["spec"].get("replicas")
            if n is None:
                n = hpas[name]["spec"]["minReplicas"]
            pods += [Pod(wl, name if n == 1 else f"{name}-{i}", None) for i in range(n)]
    return pods


def resolve_env(pod: Pod, docs, secret_values: dict[tuple[str, str], str]) -> None:
    """The container's environment as the kubelet builds it: envFrom, then env in order,
    each value $(VAR)-expanded against what precedes it."""
    cms = {c["metadata"]["name"]: c.get("data", {}) for c in docs if c.get("kind") == "ConfigMap"}
    env: dict[str, str] = {}
    c = pod.container
    for src in c.get("envFrom", []):
        ref = src.get("configMapRef")
        if not ref or ref["name"] not in cms:
            raise Failure(f"{pod.name}: unsupported or missing envFrom {src}")
        env.update({k: str(v) for k, v in cms[ref["name"]].items()})
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = k8s_expand(str(e["value"]), env)
            continue
        vf = e.get("valueFrom", {})
        if "secretKeyRef" in vf:
            key = (vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"])
            if key not in secret_values:
                raise Failure(f"{pod.name}: {e['name']} reads Secret {key[0]} key {key[1]}, which boot-local.py does not define")
            env[e["name"]] = secret_values[key]
        elif "fieldRef" in vf:
            path = vf["fieldRef"]["fieldPath"]
            fields = {"metadata.name": pod.name, "metadata.namespace": NAMESPACE}
            if path not in fields:
                raise Failure(f"{pod.name}: unsupported fieldRef {path}")
            env[e["name"]] = fields[path]
        else:
            raise Failure(f"{pod.name}: env {e['name']} has an unsupported source")
    pod.rendered_env = env
    pod.rendered_command = [k8s_expand(a, env) for a in c.get("command", []) + c.get("args", [])]
    pod.container_ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    found = re.findall(re.escape(IMAGE_BIN) + r"(caretrail[a-z-]*)", " ".join(pod.rendered_command))
    if len(set(found)) != 1:
        raise Failure(f"{pod.name}: cannot tell which binary runs: {pod.rendered_command}")
    pod.binary = found[0]


# --------------------------------------------------------------------------------------
# The rewrite: Service DNS, ports, paths. Everything else passes through.
# --------------------------------------------------------------------------------------

class Rewrites:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str, str]] = []   # pod, item, rendered, local, why

    def add(self, pod: Pod, item: str, rendered: str, local: str, why: str) -> None:
        self.rows.append((pod.name, item, rendered, local.replace(str(pod.dir), "$POD"), why))

    def print(self, pods: list[Pod], work: Path, bin_dir: Path) -> None:
        def short(text: str) -> str:
            return text.replace(str(work), "$WORK").replace(str(bin_dir), "$BIN")

        def who(names: list[str]) -> str:
            if set(names) == {p.name for p in pods}:
                return "every pod"
            if set(names) == {p.name for p in pods if p.kind != "Job"}:
                return "every pod but the Job"
            out: dict[str, list[str]] = {}
            for n in names:
                n = n.removeprefix(f"{RELEASE}-")
                m = re.fullmatch(r"(.*)-(\d+)", n)
                out.setdefault(m.group(1) if m else n, []).append(m.group(2) if m else "")
            return ", ".join(k if ids == [""] else f"{k}-{ids[0]}" if len(ids) == 1
                             else f"{k}-{{{','.join(ids)}}}" for k, ids in out.items())

        say(f"Rewritten for one machine ($WORK = {work}, $POD = $WORK/pods/<pod>, $BIN = {bin_dir});\n"
            "every other variable, the command and its arguments are passed exactly as rendered:")
        order = ["Service DNS", "listen", "container port", "volume", "image"]
        grouped: dict[tuple[str, str, str, str], list[str]] = {}
        for pod, item, rendered, local, why in self.rows:
            grouped.setdefault((why, item, rendered, local), []).append(pod)
        sections: dict[str, list] = {}
        for (why, item, rendered, local), names in grouped.items():
            sections.setdefault(why, []).append((who(names), item, short(rendered), short(local)))
        for why in sorted(sections, key=lambda w: next((i for i, o in enumerate(order) if w.startswith(o)), 99)):
            say(f"  {why}:")
            for names, item, rendered, local in sections[why]:
                line = f"    {item:<36} {rendered} → {local}"
                if len(line) + len(names) + 5 <= 150:
                    say(f"{line}   ({names})")
                else:
                    say(f"    {item}   ({names})\n        {rendered}\n      → {local}")
        say("  unchanged: " + ", ".join(
            f"{p.name.removeprefix(RELEASE + '-')} {sum(1 for k in p.rendered_env if p.env.get(k) == p.rendered_env[k])}"
            f"/{len(p.rendered_env)}" for p in pods) + " variables")


def service_map(docs, pods: list[Pod], domain: str):
    """(host, port) → list of (pod, local port name) for every Service and, for headless
    Services of a StatefulSet, every pod's own DNS name."""
    targets: dict[tuple[str, int], list[tuple[Pod, str]]] = {}
    for svc in (d for d in docs if d.get("kind") == "Service"):
        name = svc["metadata"]["name"]
        selector = svc["spec"].get("selector", {})
        members = [p for p in pods if p.kind != "Job" and selects(selector, p.labels)]
        headless = svc["spec"].get("clusterIP") == "None"
        for sp in svc["spec"]["ports"]:
            target = sp.get("targetPort", sp["port"])
            def pname(p: Pod):
                return target if isinstance(target, str) else p.port_name(target)
            hosts = [name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}.svc.{domain}"]
            if not headless:
                for h in hosts:
                    targets[(h, sp["port"])] = [(p, pname(p)) for p in members]
            # Pod DNS names under the StatefulSet's governing (headless) Service.
            for p in members:
                if p.kind == "StatefulSet" and p.workload["spec"].get("serviceName") == name:
                    for h in hosts:
                        targets[(f"{p.name}.{h}", sp["port"])] = [(p, pname(p))]
    return targets


class Proxy:
    """kube-proxy's part for a Service with several endpoints: forwards each connection to a
    ready endpoint (round robin), skipping dead and not-ready ones."""

    def __init__(self, name: str, endpoints: list[tuple[Pod, str]]):
        self.name = name
        self.endpoints = endpoints
        self.port = free_port()
        self.ready: set[str] = set()
        self.stop = threading.Event()
        self.rr = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def start(self) -> None:
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        threading.Thread(target=self._probe, daemon=True).start()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def _probe(self) -> None:
        while not self.stop.is_set():
            self.ready = {p.name for p, _ in self.endpoints if p.ready()}
            self.stop.wait(1.0)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        live = [(p, n) for p, n in self.endpoints if p.name in self.ready and p.alive()]
        upstream = None
        for k in range(len(live)):
            p, n = live[(self.rr + k) % len(live)]
            try:
                upstream = socket.create_connection(("127.0.0.1", p.ports[n]), timeout=3)
                upstream.settimeout(None)
                break
            except OSError:
                continue
        self.rr += 1
        if upstream is None:
            client.close()
            return

        def pipe(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        t.start()
        pipe(client, upstream)
        t.join()
        client.close()
        upstream.close()


def plan(docs, pods: list[Pod], domain: str, bin_dir: Path, work: Path, rw: Rewrites) -> list[Proxy]:
    """Allocates ports and directories and rewrites each pod's environment and command."""
    for p in pods:
        p.dir = work / "pods" / p.name
        p.ports = {n: free_port() for n in p.container_ports}
    targets = service_map(docs, pods, domain)
    proxies: list[Proxy] = []
    local_addr: dict[tuple[str, int], str] = {}
    for (host, port), eps in targets.items():
        if len(eps) == 1:
            p, n = eps[0]
            local_addr[(host, port)] = f"127.0.0.1:{p.ports[n]}"
        elif eps:
            key = tuple(sorted((p.name, n) for p, n in eps))
            proxy = next((x for x in proxies if tuple(sorted((p.name, n) for p, n in x.endpoints)) == key), None)
            if proxy is None:
                proxy = Proxy(host.split(".")[0], eps)
                proxies.append(proxy)
            local_addr[(host, port)] = f"127.0.0.1:{proxy.port}"
    # Longest names first so that a Service's name never matches inside a pod's DNS name.
    dns = sorted(local_addr, key=lambda hp: -len(hp[0]))
    dns_re = re.compile("|".join(
        rf"(?<![A-Za-z0-9.-]){re.escape(h)}:{p}(?![0-9])" for h, p in dns))
    by_text = {f"{h}:{p}": v for (h, p), v in local_addr.items()}

    for p in pods:
        # Volumes: each mount becomes a directory of this pod (PVCs keep theirs across restarts).
        volumes = {v["name"]: v for v in p.pod_spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in p.workload["spec"].get("volumeClaimTemplates", [])}
        for m in p.container.get("volumeMounts", []):
            local = p.dir / "volumes" / m["name"]
            p.mounts[m["mountPath"]] = local
            v = volumes.get(m["name"])
            if m["name"] in claims or (v and "persistentVolumeClaim" in v):
                kind = "PVC"
            elif v and "emptyDir" in v:
                kind = "emptyDir"
            elif v and "secret" in v:
                kind = "Secret"
            else:
                raise Failure(f"{p.name}: unsupported volume {m['name']}")
            rw.add(p, f"mount {m['name']} ({kind})", m["mountPath"],
                   str(local), "volume → a directory under $WORK")
        mounts = sorted(p.mounts.items(), key=lambda kv: -len(kv[0]))

        def repath(value: str) -> str:
            for mp, local in mounts:
                if value == mp or value.startswith(mp.rstrip("/") + "/"):
                    return str(local) + value[len(mp.rstrip("/")):]
            return value

        env = {}
        for k, v in p.rendered_env.items():
            new, why = v, []
            # Listen addresses and ports: loopback and a free port per process.
            if k.endswith("_HOST") and v == "0.0.0.0":
                new, why = "127.0.0.1", ["listen address → loopback"]
            elif k.endswith("_PORT") and v.isdigit() and int(v) in p.container_ports.values():
                new, why = str(p.ports[p.port_name(int(v))]), ["container port → a free port per process"]
            else:
                replaced = dns_re.sub(lambda m: by_text[m.group(0)], new)
                if replaced != new:
                    new, why = replaced, ["Service DNS → 127.0.0.1 and the port of the process (or proxy)"]
                pathed = repath(new)
                if pathed != new:
                    new, why = pathed, why + ["volume → a directory under $WORK"]
            if re.search(rf"\.svc\.{re.escape(domain)}|\.svc[:/]", new):
                raise Failure(f"{p.name}: {k}={new} still names a cluster address")
            env[k] = new
            if new != v:
                rw.add(p, k, v, new, ", ".join(why))
        p.env = env
        host_bin = str(bin_dir / p.binary)
        p.command = [a.replace(IMAGE_BIN + p.binary, host_bin) for a in p.rendered_command]
        if p.command != p.rendered_command:
            rw.add(p, "command", IMAGE_BIN + p.binary, host_bin, "image binary → the built binary")
    return proxies


def ledger_node_id(pod: Pod) -> str:
    """Runs the container's own command with the binary replaced by a stub printing the node
    id it would start with."""
    with tempfile.TemporaryDirectory() as tmp:
        stub = Path(tmp) / "stub"
        stub.write_text('#!/bin/sh\nprintf "%s" "$CARETRAIL_LEDGER_NODE_ID"\n')
        stub.chmod(0o755)
        cmd = [a.replace(IMAGE_BIN + pod.binary, str(stub)) for a in pod.rendered_command]
        r = subprocess.run(cmd, env={"PATH": "/usr/bin:/bin", **pod.rendered_env},
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise Failure(f"{pod.name}: the container command failed: {r.stderr.strip()}")
        return r.stdout.strip()


# --------------------------------------------------------------------------------------
# Secrets: this run's test values, keyed as infra/k8s/secrets.example.yaml keys them.
# --------------------------------------------------------------------------------------

def example_secret_keys() -> set[tuple[str, str]]:
    keys = set()
    for d in yaml.safe_load_all(SECRETS_EXAMPLE.read_text()):
        if d and d.get("kind") == "Secret":
            for k in list(d.get("stringData", {})) + list(d.get("data", {})):
                keys.add((d["metadata"]["name"], k))
    return keys


def make_secrets(database: str, checkpoint_pem: str) -> dict[tuple[str, str], str]:
    values = {
        ("caretrail-database", "database-url"):
            f"postgres://{APP_ROLE}:{APP_PASSWORD}@127.0.0.1:5432/{database}",
        ("caretrail-bus", "bus-url"): AMQP_URL,
        ("caretrail-s3", "access-key-id"): S3_ACCESS_KEY,
        ("caretrail-s3", "secret-access-key"): S3_SECRET_KEY,
        ("caretrail-master-key", "master-key"): secrets.token_hex(32),
        ("caretrail-keyring", "keyring.json"):
            json.dumps({"primary": "k1", "keys": {"k1": secrets.token_hex(32)}}),
        ("caretrail-ledger-cluster", "cluster-secret"): secrets.token_hex(32),
        ("caretrail-ledger-checkpoint-keys", "checkpoint-keys.pem"): checkpoint_pem,
    }
    missing = example_secret_keys() - set(values)
    if missing:
        raise Failure(f"{SECRETS_EXAMPLE.name} defines Secret keys boot-local.py lacks: {sorted(missing)}")
    return values


def checkpoint_keys(caretrail: Path, work: Path) -> str:
    """Two PKCS#8 keys, Ed25519 then SM2, as infra/k8s/secrets.example.yaml makes them."""
    pems = []
    for suite in ("intl", "gm"):
        out = work / f"checkpoint-{suite}.pem"
        r = subprocess.run([str(caretrail), "crypto", "keygen", "--suite", suite, "--out", str(out)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Failure(f"caretrail crypto keygen --suite {suite}: {r.stderr.strip()}")
        pems.append(out.read_text().strip())
    return "\n".join(pems) + "\n"


def write_secret_volumes(pods: list[Pod], values: dict[tuple[str, str], str]) -> None:
    for p in pods:
        volumes = {v["name"]: v for v in p.pod_spec.get("volumes", [])}
        for m in p.container.get("volumeMounts", []):
            local = p.mounts[m["mountPath"]]
            local.mkdir(parents=True, exist_ok=True)
            v = volumes.get(m["name"], {})
            if "secret" in v:
                s = v["secret"]
                mode = s.get("defaultMode", 0o644)
                for item in s.get("items", []):
                    f = local / item.get("path", item["key"])
                    f.write_text(values[(s["secretName"], item["key"])])
                    f.chmod(item.get("mode", mode))


# --------------------------------------------------------------------------------------
# Infrastructure: PostgreSQL, RabbitMQ, S3.
# --------------------------------------------------------------------------------------

def psql(sql: str) -> str:
    r = subprocess.run(["psql", PG_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise Failure(f"psql {sql!r}: {r.stderr.strip()}")
    return r.stdout.strip()


def rabbit_cleanup(prefix: str) -> str:
    """Deletes the run's queues and exchanges (`rabbitmqctl eval`: one call instead of one
    per queue). Best effort: returns what happened."""
    if not shutil.which("rabbitmqctl"):
        return "rabbitmqctl not found: queues and exchanges named " + prefix + ".* are left"
    p = prefix + "."
    expr = (
        f'P = <<"{p}">>, M = fun(N) -> binary:longest_common_prefix([N, P]) =:= byte_size(P) end, '
        'Qs = [Q || Q <- rabbit_amqqueue:list(<<"/">>), M(element(4, amqqueue:get_name(Q)))], '
        '[rabbit_amqqueue:delete(Q, false, false, <<"boot-local">>) || Q <- Qs], '
        'Xs = [element(2, X) || X <- rabbit_exchange:list(<<"/">>), M(element(4, element(2, X)))], '
        '[rabbit_exchange:delete(X, false, <<"boot-local">>) || X <- Xs], '
        '{length(Qs), length([Q || Q <- Qs, amqqueue:get_type(Q) =:= rabbit_quorum_queue]), length(Xs)}.')
    try:
        r = subprocess.run(["rabbitmqctl", "-q", "eval", expr], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "rabbitmqctl eval timed out"
    m = re.search(r"\{(\d+),(\d+),(\d+)\}", r.stdout.replace(" ", ""))
    if r.returncode == 0 and m:
        return (f"deleted the run's {m.group(1)} queues ({m.group(2)} of them quorum queues) and "
                f"{m.group(3)} exchanges named {p}*")
    return f"could not delete the queues named {p}*: {(r.stdout + r.stderr).strip()[:200]}"


class S3:
    """Just enough SigV4 for a HEAD of the bucket and deleting the run's objects."""

    def __init__(self, endpoint: str, region: str, bucket: str):
        self.endpoint, self.region, self.bucket = endpoint.rstrip("/"), region, bucket

    def request(self, method: str, key: str = "", query: dict | None = None) -> tuple[int, bytes]:
        url = urllib.parse.urlsplit(self.endpoint)
        path = "/" + self.bucket + ("/" + urllib.parse.quote(key, safe="/~") if key else "")
        q = "&".join(f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(v, safe='~')}"
                     for k, v in sorted((query or {}).items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(b"").hexdigest()
        headers = {"host": url.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, path, q, "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                               signed, payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = ("AWS4" + S3_SECRET_KEY).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={S3_ACCESS_KEY}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={sig}")
        req = urllib.request.Request(f"{self.endpoint}{path}" + (f"?{q}" if q else ""),
                                     method=method, headers={k: v for k, v in headers.items() if k != "host"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return 0, str(e).encode()

    def delete_prefix(self, prefix: str) -> int:
        ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
        deleted = 0
        while True:
            status, body = self.request("GET", query={"list-type": "2", "prefix": prefix})
            if status != 200:
                raise Failure(f"S3 list {prefix}: HTTP {status} {body[:200]!r}")
            keys = [e.text for e in ET.fromstring(body).findall("s3:Contents/s3:Key", ns)]
            if not keys:
                return deleted
            for key in keys:
                if self.request("DELETE", key)[0] in (200, 204):
                    deleted += 1
                else:
                    return deleted


# --------------------------------------------------------------------------------------
# Processes.
# --------------------------------------------------------------------------------------

def start(pod: Pod) -> None:
    assert pod.dir is not None
    home = pod.dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    for local in pod.mounts.values():
        local.mkdir(parents=True, exist_ok=True)
    # What a container runtime adds; nothing from this shell leaks in (no AWS_*, no RUST_LOG).
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOSTNAME": pod.name, "HOME": str(home), **pod.env}
    pod.log = pod.dir / "log.txt"
    log = open(pod.log, "ab")
    log.write(f"--- {time.strftime('%H:%M:%S')} start {pod.name}: {json.dumps(pod.command)}\n".encode())
    log.flush()
    pod.proc = subprocess.Popen(pod.command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    pod.started_at = time.monotonic()
    pod.ready_at = None
    pod.killed = False


def tail(pod: Pod, n: int = 40) -> str:
    if not pod.log or not pod.log.exists():
        return "    <no log>"
    lines = pod.log.read_text(errors="replace").splitlines()[-n:]
    return "\n".join("    | " + line[:400] for line in lines)


def wait_ready(pods: list[Pod], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = [p for p in pods if p.ready_at is None]
    while pending:
        for p in list(pending):
            if not p.alive():
                raise Failure(f"{p.name} exited with status {p.proc.returncode} before it was ready "
                              f"(log {p.log}):\n{tail(p)}")
            if p.ready():
                p.ready_at = time.monotonic()
                say(f"  ready  {p.name:<28} {p.binary:<24} {p.probe_url}  "
                    f"({p.ready_at - p.started_at:.1f}s after start)")
                pending.remove(p)
        if pending and time.monotonic() > deadline:
            raise Failure("not ready within {:.0f}s: {}\n{}".format(
                timeout, ", ".join(p.name for p in pending),
                "\n".join(f"  {p.name} (log {p.log}):\n{tail(p)}" for p in pending)))
        time.sleep(0.25)


def check_alive(pods: list[Pod]) -> None:
    dead = [p for p in pods if p.proc and not p.killed and not p.alive()]
    if dead:
        raise Failure("died: " + ", ".join(f"{p.name} (status {p.proc.returncode})" for p in dead) + "\n"
                      + "\n".join(f"  {p.name} (log {p.log}):\n{tail(p)}" for p in dead))


def stop_all(running: list[Pod], grace: float) -> list[str]:
    for p in running:
        try:
            p.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for p in running:
        try:
            p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    forced = []
    for p in running:
        if p.alive():
            forced.append(p.name)
            try:
                os.killpg(p.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.proc.wait()
    return forced


def run_demo(caretrail: Path, url: str, credentials: Path, label: str, timeout: float, scratch: Path) -> float:
    say(f"$ {caretrail} demo --url {url} --credentials {credentials}")
    started = time.monotonic()
    # TMPDIR: the story saves the trail's proof file there; it goes with the temp dir.
    scratch.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([str(caretrail), "demo", "--url", url, "--credentials", str(credentials)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch)})
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            print("  " + line, end="", flush=True)
        rc = proc.wait()
    finally:
        watchdog.cancel()
    took = time.monotonic() - started
    text = "".join(out)
    if took >= timeout:
        raise Failure(f"{label}: `caretrail demo` did not finish within {timeout:.0f}s (killed)")
    if rc != 0 or "STORY VERIFIED" not in text:
        raise Failure(f"{label}: `caretrail demo` exited {rc} without STORY VERIFIED")
    say(f"  {label}: STORY VERIFIED, exit 0, wall time {took:.1f}s")
    return took


def ledger_status(pod: Pod, secret: str) -> dict | None:
    status, body = http_get(f"http://127.0.0.1:{pod.ports['cluster']}/cluster/admin/status",
                            {"Authorization": f"Bearer {secret}"})
    if status != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def wait_leader(ledger: list[Pod], secret: str, timeout: float, exclude: int | None = None) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    last = {}
    while time.monotonic() < deadline:
        for p in ledger:
            if not p.alive():
                continue
            s = ledger_status(p, secret)
            if s:
                last[p.name] = s
            if s and s.get("state") == "Leader" and s.get("node_id") != exclude:
                return s["node_id"], s
        time.sleep(0.2)
    raise Failure(f"no ledger leader (other than {exclude}) within {timeout:.0f}s; last status: {json.dumps(last)}")


# --------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = Path(os.environ.get("CARGO_TARGET_DIR", CACHE / "target"))
    ap.add_argument("--bin-dir", type=Path, default=Path(os.environ.get("CARETRAIL_BIN_DIR", target / "debug")),
                    help="built binaries (default $CARGO_TARGET_DIR/debug)")
    ap.add_argument("--helm", default=os.environ.get("HELM", str(CACHE / "tools" / "helm" / "helm")))
    ap.add_argument("--values", type=Path, default=VALUES)
    ap.add_argument("--dry-run", action="store_true", help="render and print the rewrite table only")
    ap.add_argument("--parallel", action="store_true",
                    help="start every pod at once (a first install) instead of ledger → services → gateway")
    ap.add_argument("--no-leader-kill", action="store_true", help="skip killing the ledger leader")
    ap.add_argument("--ready-timeout", type=float, default=60, help="seconds per start wave (default 60)")
    ap.add_argument("--story-timeout", type=float, default=180, help="seconds one `caretrail demo` may take")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data) afterwards")
    ap.add_argument("--hold", action="store_true",
                    help="after the story, keep the cluster running until Ctrl-C (then tear down)")
    args = ap.parse_args()

    helm = args.helm if Path(args.helm).is_file() else shutil.which("helm")
    if not helm:
        say(f"error: no helm at {args.helm}: run `make helm-check` once (it installs it) or set HELM")
        return 2
    run_id = f"{os.getpid():x}{int(time.time()) % 0xfffff:x}"
    database = f"caretrail_boot_{run_id}"
    prefix = f"boot-{run_id}"
    work = Path(tempfile.mkdtemp(prefix=f"caretrail-boot-{run_id}-"))
    pods: list[Pod] = []
    proxies: list[Proxy] = []
    created_db = False
    s3 = None
    tenants: list[str] = []
    failed: str | None = None
    results: list[str] = []
    try:
        step(f"render {args.values.relative_to(REPO) if args.values.is_relative_to(REPO) else args.values}")
        cmd = [helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(args.values),
               "--set", f"bus.prefix={prefix}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise Failure(f"helm template failed:\n{r.stderr}")
        say("$ " + shlex.join([Path(helm).name] + cmd[1:]))
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        values.update(yaml.safe_load(args.values.read_text()) or {})
        domain = values.get("clusterDomain", "cluster.local")
        say(f"{len(docs)} objects; release {RELEASE}, namespace {NAMESPACE}, bus prefix {prefix} (--set), "
            f"cluster domain {domain}")

        step("pods and their configuration")
        rank = {c: i for i, c in enumerate(c for wave in WAVES for c in wave)}
        pods = sorted(pods_of(docs), key=lambda p: (p.kind != "Job", rank.get(p.component, 99), p.name))
        caretrail = args.bin_dir / "caretrail"
        if args.dry_run or not caretrail.is_file():
            pem = "-----BEGIN PRIVATE KEY-----\n(generated at boot)\n-----END PRIVATE KEY-----\n"
        else:
            pem = checkpoint_keys(caretrail, work)
        secret_values = make_secrets(database, pem)
        for p in pods:
            resolve_env(p, docs, secret_values)
        rw = Rewrites()
        proxies = plan(docs, pods, domain, args.bin_dir, work, rw)
        for p in pods:
            extra = ""
            if p.component == "ledger":
                p.node_id = int(ledger_node_id(p))
                extra = f"  node id {p.node_id} (from the container's own command, POD_NAME={p.name})"
            say(f"  {p.name:<28} {p.kind:<11} {p.binary:<24} ports "
                + (", ".join(f"{n}={v}" for n, v in p.ports.items()) or "-") + extra)
        for x in proxies:
            say(f"  Service {x.name} has {len(x.endpoints)} endpoints: a local proxy on 127.0.0.1:{x.port} "
                "forwards to the ready ones (" + ", ".join(p.name for p, _ in x.endpoints) + ")")
        say("Secrets: test values for every key infra/k8s/secrets.example.yaml defines — "
            + ", ".join(f"{n}/{k}" for n, k in sorted(secret_values))
            + f"; database-url = {mask(secret_values[('caretrail-database', 'database-url')])}")
        say("Added by the container runtime only: PATH, HOSTNAME (the pod name), HOME (an empty dir)")
        rw.print(pods, work, args.bin_dir)
        if args.dry_run:
            return 0

        missing = [b for b in ["caretrail"] + sorted({p.binary for p in pods}) if not (args.bin_dir / b).is_file()]
        if missing:
            raise Failure(f"not built in {args.bin_dir}: {', '.join(missing)} (cargo build --workspace)")

        step("infrastructure")
        for name, port in (("PostgreSQL", 5432), ("RabbitMQ", 5672), ("S3 (Garage)", 3900)):
            if not port_open("127.0.0.1", port):
                raise Failure(f"{name} does not answer on 127.0.0.1:{port}: run `make infra`")
        if psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'") != "1":
            raise Failure(f"no role {APP_ROLE}: run ./infra/start-postgres.sh")
        psql(f"CREATE DATABASE {database} OWNER {APP_ROLE}")
        created_db = True
        say(f"  PostgreSQL: database {database} owned by {APP_ROLE} (a plain role: row-level security applies)")
        s3 = S3(values["s3"]["endpoint"], values["s3"]["region"], values["s3"]["bucket"])
        status, body = s3.request("HEAD")
        if status != 200:
            raise Failure(f"S3 bucket {s3.bucket} at {s3.endpoint}: HTTP {status} {body[:200]!r} "
                          "(run ./infra/start-s3.sh)")
        say(f"  S3: bucket {s3.bucket} at {s3.endpoint} (region {s3.region}) answers")
        say(f"  RabbitMQ: {mask(AMQP_URL)}, prefix {prefix}")
        write_secret_volumes(pods, secret_values)

        step("migration Job")
        job = [p for p in pods if p.kind == "Job"]
        for p in job:
            start(p)
            try:
                rc = p.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                raise Failure(f"{p.name} did not finish within 120s:\n{tail(p)}")
            if rc != 0:
                raise Failure(f"{p.name} ({shlex.join(p.rendered_command)}) exited {rc}:\n{tail(p)}")
            say(f"  {p.name}: `{shlex.join(p.rendered_command)}` exited 0 in {time.monotonic() - p.started_at:.1f}s")
        results.append("migration Job: ok")

        for x in proxies:
            x.start()
        running = [p for p in pods if p.kind != "Job"]
        waves = [running] if args.parallel else [
            [p for p in running if p.component in wave] for wave in WAVES]
        leftover = [p for p in running if not any(p in w for w in waves)]
        if leftover:
            waves.append(leftover)
        boot_started = time.monotonic()
        for wave in waves:
            step("start " + ", ".join(p.name for p in wave))
            for p in wave:
                start(p)
            wait_ready(wave, args.ready_timeout)
        ledger = [p for p in running if p.component == "ledger"]
        cluster_secret = secret_values[("caretrail-ledger-cluster", "cluster-secret")]
        leader, status = wait_leader(ledger, cluster_secret, 30)
        say(f"  ledger leader: node {leader} (term {status.get('term')}, voters {status.get('voters')})")
        results.append(f"cluster up: {len(running)} processes ready in {time.monotonic() - boot_started:.1f}s, "
                       f"ledger leader node {leader}")

        identity = next(p for p in running if p.component == "identity")
        credentials = Path(identity.env["CARETRAIL_SEED_DEMO_FILE"])
        if not credentials.is_file():
            raise Failure(f"identity is ready but wrote no {credentials}:\n{tail(identity)}")
        gateway_url = "http://" + re.sub(r"^https?://", "", identity.env["CARETRAIL_PUBLIC_BASE_URL"])
        tenants = [t["id"] for t in json.loads(credentials.read_text()).get("tenants", [])]

        step("the pilot story through the gateway")
        took = run_demo(caretrail, gateway_url, credentials, "story", args.story_timeout, work / "demo")
        check_alive(running)
        results.append(f"story: STORY VERIFIED in {took:.1f}s")

        if args.no_leader_kill:
            results.append("leader kill: skipped (--no-leader-kill)")
        else:
            step(f"kill -9 the ledger leader (node {leader})")
            victim = next(p for p in ledger if p.node_id == leader)
            killed_at = time.monotonic()
            victim.killed = True
            os.killpg(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait()
            new_leader, status = wait_leader(ledger, cluster_secret, 30, exclude=leader)
            elected = time.monotonic() - killed_at
            say(f"  {victim.name} killed; node {new_leader} leads after {elected:.1f}s (term {status.get('term')})")
            took2 = run_demo(caretrail, gateway_url, credentials, "story without the old leader", args.story_timeout, work / "demo")
            check_alive([p for p in running if p is not victim])
            step(f"restart {victim.name} on its volume (what the StatefulSet does)")
            start(victim)
            wait_ready([victim], args.ready_timeout)
            deadline = time.monotonic() + 30
            while True:
                others = [ledger_status(p, cluster_secret) or {} for p in ledger if p is not victim]
                lead = next((x for x in others if x.get("state") == "Leader"), {})
                mine = ledger_status(victim, cluster_secret) or {}
                if (lead and mine.get("leader") == lead.get("node_id")
                        and mine.get("last_applied_index") == lead.get("last_applied_index")):
                    break
                if time.monotonic() > deadline:
                    raise Failure(f"{victim.name} did not catch up within 30s: its status {mine}, the leader's {lead}")
                time.sleep(0.3)
            say(f"  {victim.name} rejoined as node {mine.get('node_id')} ({mine.get('state')}), applied index "
                f"{mine.get('last_applied_index')} = the leader's; voters {lead.get('voters')}")
            check_alive(running)
            results.append(f"leader kill: node {leader} killed, node {new_leader} elected in {elected:.1f}s, "
                           f"story verified again in {took2:.1f}s, node {leader} restarted and caught up")
        if args.hold:
            step("holding the cluster (Ctrl-C tears it down)")
            say(f"  gateway      {gateway_url}   (credentials {credentials})")
            for p in ledger:
                say(f"  {p.name}  cluster port http://127.0.0.1:{p.ports['cluster']}/cluster/admin/status "
                    f"(Authorization: Bearer {cluster_secret})")
            say(f"  logs         {work}/pods/<pod>/log.txt")
            try:
                while True:
                    check_alive(running)
                    time.sleep(1)
            except KeyboardInterrupt:
                say("  stopping (Ctrl-C or SIGTERM)")
        return 0
    except Failure as e:
        failed = str(e)
        return 1
    except KeyboardInterrupt:
        failed = "interrupted"
        return 130
    finally:
        if failed:
            say(f"\nFAILED: {failed}")
            for p in pods:
                if p.proc and not p.killed and not p.alive() and p.kind != "Job" and p.name not in failed:
                    say(f"  also exited: {p.name} (status {p.proc.returncode}):\n{tail(p, 15)}")
        if not args.dry_run:
            step("tear down")
            alive = [p for p in pods if p.alive()]
            forced = stop_all(alive, 25)
            for x in proxies:
                x.close()
            say(f"  stopped {len(alive)} processes"
                + (f"; SIGKILL after 25s: {', '.join(forced)}" if forced else " (all on SIGTERM)"))
            if created_db:
                try:
                    psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
                    say(f"  dropped database {database}")
                except Failure as e:
                    say(f"  {e}")
            if s3 and tenants:
                try:
                    n = sum(s3.delete_prefix(t + "/") for t in tenants)
                    say(f"  deleted {n} objects of the run's tenants from {s3.bucket}")
                except Failure as e:
                    say(f"  {e}")
            if created_db:
                say("  " + rabbit_cleanup(prefix))
        if args.keep or (failed and not args.dry_run):
            say(f"  logs and data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        say(f"\n==> story-cluster summary ({time.monotonic() - T0:.1f}s)")
        for line in results:
            say("  " + line)
        say("story-cluster: " + ("FAILED" if failed else "dry run (rendering and rewrites only)" if args.dry_run else "ok"))


def on_sigterm(*_):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    sys.exit(main())
