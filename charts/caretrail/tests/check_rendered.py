#!/usr/bin/env python3
"""Checks on manifests rendered by `helm template` that neither the Kubernetes schemas nor
checkov make (run by charts/check.sh; `--help` for usage):

* ledger  — the StatefulSet's peer addresses: CARETRAIL_LEDGER_INITIAL_MEMBERS parsed exactly
            as services/ledger/src/config.rs parses it, equal to the headless-service DNS
            names of the pods; node id = ordinal + 1 from the container's real shell command;
            advertise address = the pod's own member address; the rules LedgerSettings::validate
            applies to `bootstrap = members` (node in members, cluster secret, shared key file).
* env     — every CARETRAIL_* variable a container gets is a setting its binary reads (field
            names of the serde config structs in the Rust sources, the way figment maps
            `CARETRAIL_<FIELD>`), and the settings a binary requires are all set.
* pods    — security and lifecycle invariants: no API token, non-root, read-only root, no
            privilege escalation, all capabilities dropped, seccomp, requests and limits,
            probes, terminationGracePeriodSeconds ≥ preStop + CARETRAIL_SHUTDOWN_TIMEOUT_SECS.
* network — every pod is under the default-deny policy; the ledger cluster port admits ledger
            pods only; only the gateway admits traffic from outside the release.
* crds    — ServiceMonitor / HTTPRoute against small strict schemas (tests/crd-schemas/):
            kubernetes-validate has no schemas for CRDs.
* binaries — optional, when the service binaries are built: each container's binary is run
            with its rendered command and environment (secrets replaced by dummies, database and
            broker pointing at a closed local port) and must get past configuration loading
            and validation — i.e. fail on the connection, not on the configuration.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

FAILURES: list[str] = []
NOTES: list[str] = []


def fail(where: str, msg: str) -> None:
    FAILURES.append(f"{where}: {msg}")


def load(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def component(doc) -> str:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")


# --------------------------------------------------------------------------------------
# Rust side: which settings each binary reads.
# --------------------------------------------------------------------------------------

# Where each config struct lives (flattened structs are resolved through this map).
STRUCTS = {
    "HttpSettings": "crates/platform/src/config.rs",
    "AuthSettings": "crates/platform/src/auth.rs",
    "BusSettings": "crates/bus/src/lib.rs",
    "DbSettings": "crates/db/src/lib.rs",
    "ServiceSettings": "crates/runtime/src/lib.rs",
    "LedgerSettings": "services/ledger/src/config.rs",
    "StoreSettings": "services/object-store/src/config.rs",
    "ConsentSettings": "services/consent/src/config.rs",
}
# The root config struct of each binary.
BINARIES = {
    "caretrail-gateway": ("services/gateway/src/lib.rs", "Config"),
    "caretrail-identity": ("services/identity/src/lib.rs", "Config"),
    "caretrail-consent": ("services/consent/src/config.rs", "Config"),
    "caretrail-ledger": ("services/ledger/src/config.rs", "Config"),
    "caretrail-object-store": ("services/object-store/src/config.rs", "Config"),
    "caretrail-audit": ("services/audit/src/lib.rs", "Config"),
    "caretrail": ("services/caretrail/src/allinone.rs", "AllInOneConfig"),
}
# Required although optional in serde (checked by the services' validate()).
ALSO_REQUIRED = {
    "caretrail-identity": {"master_key"},
}
# Variables that are not CARETRAIL_* settings but legitimate in the pods.
OTHER_ENV = {"POD_NAME", "RUST_LOG", "OTEL_EXPORTER_OTLP_ENDPOINT"}

FIELD = re.compile(r"^\s*pub\s+([a-z_][a-z0-9_]*)\s*:\s*(.+?),?\s*$")


def struct_fields(file: str, name: str, seen=None) -> dict[str, bool]:
    """field -> required, following #[serde(flatten)] into other structs."""
    seen = seen or set()
    if (file, name) in seen:
        return {}
    seen.add((file, name))
    text = (REPO / file).read_text()
    m = re.search(rf"pub struct {name}\s*\{{(.*?)^\}}", text, re.S | re.M)
    if not m:
        raise SystemExit(f"cannot find struct {name} in {file}: update tests/check_rendered.py")
    fields: dict[str, bool] = {}
    attrs: list[str] = []
    for line in m.group(1).splitlines():
        s = line.strip()
        if s.startswith("#["):
            attrs.append(s)
            continue
        if s.startswith("//") or not s:
            continue
        fm = FIELD.match(line)
        if not fm:
            attrs = []
            continue
        field, ty = fm.group(1), fm.group(2)
        if any("flatten" in a for a in attrs):
            inner = ty.split("::")[-1].strip()
            if inner not in STRUCTS:
                raise SystemExit(f"{file}: {name}.{field} flattens unknown struct {inner}: add it to STRUCTS")
            fields.update(struct_fields(STRUCTS[inner], inner, seen))
        else:
            has_default = any("default" in a for a in attrs)
            fields[field] = not has_default and not ty.startswith("Option<")
        attrs = []
    if not fields:
        raise SystemExit(f"no fields parsed from {name} in {file}")
    return fields


def binary_settings(binary: str) -> dict[str, bool]:
    file, name = BINARIES[binary]
    fields = struct_fields(file, name)
    for f in ALSO_REQUIRED.get(binary, ()):
        fields[f] = True
    return fields


# --------------------------------------------------------------------------------------
# Containers and their environment.
# --------------------------------------------------------------------------------------

def workloads(docs):
    for d in docs:
        if d.get("kind") in ("Deployment", "StatefulSet"):
            yield d, d["spec"]["template"]["spec"]
        elif d.get("kind") == "Job":
            yield d, d["spec"]["template"]["spec"]


def container_env(docs, container) -> dict[str, object]:
    """name -> literal value (str) or ('secret', name, key) / ('field', path)."""
    env: dict[str, object] = {}
    cms = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind(docs, "ConfigMap")}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef")
        if ref:
            if ref["name"] not in cms:
                fail(container["name"], f"envFrom ConfigMap {ref['name']} is not rendered")
                continue
            env.update({k: str(v) for k, v in cms[ref["name"]].items()})
        else:
            fail(container["name"], f"unexpected envFrom {src}")
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif "secretKeyRef" in e.get("valueFrom", {}):
            r = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = ("secret", r["name"], r["key"])
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = ("field", e["valueFrom"]["fieldRef"]["fieldPath"])
        else:
            fail(container["name"], f"env {e['name']} has an unexpected source")
    return env


def binary_of(container) -> str:
    cmd = " ".join(container.get("command", []) + container.get("args", []))
    found = re.findall(r"/usr/local/bin/(caretrail[a-z-]*)", cmd)
    if len(found) != 1:
        fail(container["name"], f"cannot tell which binary runs: {cmd!r}")
        return ""
    return found[0]


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values: $$ is a literal $,
    $(NAME) is replaced when NAME is defined, anything else is left as is."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i):
            j = text.find(")", i + 2)
            name = text[i + 2:j] if j > 0 else None
            if name is not None and name in env:
                out.append(env[name])
                i = j + 1
            else:
                out.append("$(")
                i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def check_env(label: str, docs) -> None:
    issuers: set = set()
    for wl, pod in workloads(docs):
        for c in pod.get("containers", []):
            where = f"{label}: {wl['kind']}/{wl['metadata']['name']}/{c['name']}"
            binary = binary_of(c)
            if not binary:
                continue
            settings = binary_settings(binary)
            env = container_env(docs, c)
            for name in env:
                if name in OTHER_ENV:
                    continue
                if not name.startswith("CARETRAIL_"):
                    fail(where, f"{name} is neither a CARETRAIL_* setting nor expected")
                    continue
                field = name[len("CARETRAIL_"):].lower()
                if field not in settings:
                    fail(where, f"{name} is set but {binary} has no setting {field!r}")
                # Helm reads numbers as floats: a big one rendered without `| int64` comes
                # out as 1.048576e+06, which no integer setting parses.
                if isinstance(env[name], str) and re.fullmatch(r"-?\d+(\.\d+)?e[+-]\d+", env[name]):
                    fail(where, f"{name}={env[name]!r} is in float notation (missing | int64)")
            for field, required in settings.items():
                if required and f"CARETRAIL_{field.upper()}" not in env:
                    fail(where, f"{binary} requires CARETRAIL_{field.upper()}, which is not set")
            if binary == "caretrail-object-store":
                if not ({"CARETRAIL_KEYRING_FILE", "CARETRAIL_KEYRING"} & env.keys()):
                    fail(where, "the object store needs CARETRAIL_KEYRING_FILE or CARETRAIL_KEYRING")
                if env.get("CARETRAIL_STORAGE") == "s3":
                    for n in ("CARETRAIL_S3_BUCKET", "CARETRAIL_S3_ACCESS_KEY_ID", "CARETRAIL_S3_SECRET_ACCESS_KEY"):
                        if not env.get(n):
                            fail(where, f"storage=s3 needs {n}")
            if binary != "caretrail" and binary != "caretrail-gateway":
                if env.get("CARETRAIL_RUN_MIGRATIONS") != "false":
                    fail(where, "services must run with CARETRAIL_RUN_MIGRATIONS=false (the hook migrates)")
                schema = env.get("CARETRAIL_DATABASE_SCHEMA")
                expected = binary[len("caretrail-"):].replace("-", "_")
                if schema != expected:
                    fail(where, f"CARETRAIL_DATABASE_SCHEMA is {schema!r}, `caretrail migrate` creates {expected!r}")
            # The same issuer everywhere, or tokens are refused.
            if binary != "caretrail":
                issuers.add(env.get("CARETRAIL_TOKEN_ISSUER"))
    if len(issuers) != 1:
        fail(label, f"services disagree on CARETRAIL_TOKEN_ISSUER: {issuers}")


# --------------------------------------------------------------------------------------
# The ledger's peers.
# --------------------------------------------------------------------------------------

class ParseError(Exception):
    pass


def parse_initial_members(text: str) -> dict[int, str]:
    """LedgerSettings::initial_members, line for line."""
    out: dict[int, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" not in part:
            raise ParseError(f"{part!r} is not <id>=<host:port>")
        ident, addr = part.split("=", 1)
        try:
            node = int(ident.strip())
            if node < 0 or node > 2**64 - 1 or not ident.strip().isdigit():
                raise ValueError
        except ValueError:
            raise ParseError(f"bad node id in {part!r}")
        if node == 0 or not addr.strip() or node in out:
            raise ParseError(f"bad or repeated member {part!r}")
        out[node] = addr.strip()
    return out


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def run_node_id_command(container, pod_name: str) -> str:
    """Runs the container's real shell command with POD_NAME set, the binary replaced by a
    stub that prints the node id it was given."""
    with tempfile.TemporaryDirectory() as tmp:
        stub = Path(tmp) / "stub"
        stub.write_text('#!/bin/sh\nprintf "%s" "$CARETRAIL_LEDGER_NODE_ID"\n')
        stub.chmod(0o755)
        env = {"POD_NAME": pod_name, "PATH": "/usr/bin:/bin"}
        cmd = [k8s_expand(a, env).replace("/usr/local/bin/caretrail-ledger", str(stub)) for a in c_command(container)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            return f"<exit {r.returncode}: {r.stderr.strip()}>"
        return r.stdout.strip()


def c_command(container):
    return container.get("command", []) + container.get("args", [])


def check_ledger(label: str, docs, namespace: str, cluster_domain: str) -> None:
    sts = [d for d in by_kind(docs, "StatefulSet") if component(d) == "ledger"]
    if len(sts) != 1:
        fail(label, f"expected one ledger StatefulSet, found {len(sts)}")
        return
    s = sts[0]
    name, spec = s["metadata"]["name"], s["spec"]
    where = f"{label}: StatefulSet/{name}"
    replicas = spec["replicas"]
    if replicas not in (3, 5):
        fail(where, f"replicas {replicas} is not 3 or 5")
    if spec.get("podManagementPolicy") != "Parallel":
        fail(where, "podManagementPolicy must be Parallel (OrderedReady never finishes the first install)")
    ru = spec.get("updateStrategy", {})
    if ru.get("type") != "RollingUpdate" or "partition" not in ru.get("rollingUpdate", {}):
        fail(where, "updateStrategy must be RollingUpdate with a partition")
    headless_name = spec["serviceName"]
    services = {d["metadata"]["name"]: d for d in by_kind(docs, "Service")}
    headless = services.get(headless_name)
    pod_labels = spec["template"]["metadata"]["labels"]
    if not headless:
        fail(where, f"headless Service {headless_name} is not rendered")
        return
    hs = headless["spec"]
    if hs.get("clusterIP") != "None" or not hs.get("publishNotReadyAddresses"):
        fail(where, "the peer Service must be headless and publish not-ready addresses")
    if any(pod_labels.get(k) != v for k, v in hs.get("selector", {}).items()):
        fail(where, "the headless Service does not select the ledger pods")
    pdbs = [d for d in by_kind(docs, "PodDisruptionBudget") if component(d) == "ledger"]
    if len(pdbs) != 1 or pdbs[0]["spec"].get("maxUnavailable") != 1:
        fail(where, "the ledger PDB must have maxUnavailable: 1")

    pod = spec["template"]["spec"]
    c = next(x for x in pod["containers"] if x["name"] == "ledger")
    env = container_env(docs, c)
    port = int(env["CARETRAIL_LEDGER_CLUSTER_PORT"])
    cport = [p for p in headless["spec"]["ports"] if p["name"] == "cluster"]
    if not cport or cport[0]["port"] != port:
        fail(where, f"headless Service has no 'cluster' port {port}")
    if env.get("CARETRAIL_LEDGER_BOOTSTRAP") != "members":
        fail(where, "CARETRAIL_LEDGER_BOOTSTRAP must be members")
    if env.get("CARETRAIL_LEDGER_CLUSTER_HOST") != "0.0.0.0":
        fail(where, "the cluster port must listen on 0.0.0.0 for peers")

    try:
        members = parse_initial_members(env.get("CARETRAIL_LEDGER_INITIAL_MEMBERS", ""))
    except ParseError as e:
        fail(where, f"CARETRAIL_LEDGER_INITIAL_MEMBERS does not parse: {e}")
        return
    expected = {
        i + 1: f"{name}-{i}.{headless_name}.{namespace}.svc.{cluster_domain}:{port}"
        for i in range(replicas)
    }
    if members != expected:
        fail(where, f"INITIAL_MEMBERS {members} != the pods' DNS names {expected}")
    for addr in members.values():
        host, _, p = addr.rpartition(":")
        labels = host.split(".")
        if not p.isdigit() or not all(DNS_LABEL.match(l) for l in labels) or len(host) > 253:
            fail(where, f"member address {addr!r} is not host:port with a valid DNS name")

    # Every pod: node id from the real command, advertise address, LedgerSettings::validate.
    for i in range(replicas):
        pod_name = f"{name}-{i}"
        node_id = run_node_id_command(c, pod_name)
        if node_id != str(i + 1):
            fail(where, f"pod {pod_name}: the command derives node id {node_id!r}, expected {i + 1}")
            continue
        adv_raw = env.get("CARETRAIL_LEDGER_ADVERTISE_ADDR")
        adv = k8s_expand(adv_raw, {"POD_NAME": pod_name}) if isinstance(adv_raw, str) else None
        if adv != members.get(i + 1):
            fail(where, f"pod {pod_name}: advertise address {adv!r} != its member address {members.get(i + 1)!r}")
        if int(node_id) not in members:
            fail(where, f"pod {pod_name}: ledger_bootstrap = members needs its id {node_id} in INITIAL_MEMBERS")
    if env.get("POD_NAME") != ("field", "metadata.name"):
        fail(where, "POD_NAME must come from metadata.name")
    secret = env.get("CARETRAIL_LEDGER_CLUSTER_SECRET")
    if not (isinstance(secret, tuple) and secret[0] == "secret"):
        fail(where, "CARETRAIL_LEDGER_CLUSTER_SECRET must come from a Secret (required with several nodes)")
    keyfile = env.get("CARETRAIL_LEDGER_CHECKPOINT_KEY_FILE")
    mounted = False
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        v = vols.get(m["name"], {})
        if "secret" in v and isinstance(keyfile, str):
            for item in v["secret"].get("items", []):
                if f"{m['mountPath'].rstrip('/')}/{item['path']}" == keyfile:
                    mounted = True
    if not mounted:
        fail(where, f"CARETRAIL_LEDGER_CHECKPOINT_KEY_FILE {keyfile!r} is not a file mounted from a Secret")
    data_dir = env.get("CARETRAIL_LEDGER_DATA_DIR", "")
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    if not any(m["name"] in claims and str(data_dir).startswith(m["mountPath"]) for m in c.get("volumeMounts", [])):
        fail(where, f"CARETRAIL_LEDGER_DATA_DIR {data_dir!r} is not on a volumeClaimTemplate")
    NOTES.append(f"{label}: ledger {replicas} nodes, members {', '.join(f'{k}={v}' for k, v in members.items())}")


# --------------------------------------------------------------------------------------
# Pods: security and lifecycle.
# --------------------------------------------------------------------------------------

def check_pods(label: str, docs) -> None:
    for wl, pod in workloads(docs):
        where = f"{label}: {wl['kind']}/{wl['metadata']['name']}"
        if pod.get("automountServiceAccountToken") is not False:
            fail(where, "automountServiceAccountToken must be false")
        psc = pod.get("securityContext", {})
        if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(where, "pod securityContext must set runAsNonRoot and seccomp RuntimeDefault")
        long_running = wl["kind"] != "Job"
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            cw = f"{where}/{c['name']}"
            if not (sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("runAsNonRoot") is True and sc.get("capabilities", {}).get("drop") == ["ALL"]
                    and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
                fail(cw, f"container securityContext is not locked down: {sc}")
            res = c.get("resources", {})
            for k in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(res.get(k, {})):
                    fail(cw, f"resources.{k} must set cpu and memory")
            if not any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", [])):
                fail(cw, "no writable /tmp (the root filesystem is read-only)")
            if long_running:
                for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
                    if c.get(probe, {}).get("httpGet", {}).get("path") != path:
                        fail(cw, f"{probe} must GET {path}")
                env = container_env(docs, c)
                timeout = int(env.get("CARETRAIL_SHUTDOWN_TIMEOUT_SECS", "20"))
                pre = 0
                cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                if cmd[:1] == ["/bin/sleep"]:
                    pre = int(cmd[1])
                grace = pod.get("terminationGracePeriodSeconds", 30)
                if grace < pre + timeout + 1:
                    fail(cw, f"terminationGracePeriodSeconds {grace} < preStop {pre} + CARETRAIL_SHUTDOWN_TIMEOUT_SECS {timeout} + margin")


# --------------------------------------------------------------------------------------
# NetworkPolicies.
# --------------------------------------------------------------------------------------

def selects(selector: dict, labels: dict) -> bool:
    ml = selector.get("matchLabels", {})
    if selector.get("matchExpressions"):
        return False
    return all(labels.get(k) == v for k, v in ml.items())


def check_network(label: str, docs) -> None:
    pols = by_kind(docs, "NetworkPolicy")
    if not pols:
        NOTES.append(f"{label}: NetworkPolicies disabled")
        return
    deny = [p for p in pols if not p["spec"].get("ingress") and not p["spec"].get("egress")
            and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}]
    if not deny:
        fail(label, "no default-deny NetworkPolicy")
    for wl, pod in workloads(docs):
        labels = wl["spec"]["template"]["metadata"]["labels"]
        if not any(selects(p["spec"]["podSelector"], labels) for p in deny):
            fail(label, f"{wl['kind']}/{wl['metadata']['name']} is not under the default deny")
    for p in pols:
        comp = component(p)
        for rule in p["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                external = "namespaceSelector" in peer or "ipBlock" in peer
                ports = {x["port"] for x in rule.get("ports", [])}
                is_metrics = any(peer == m for m in (METRICS_FROM.get(label) or []))
                if external and comp != "gateway" and not is_metrics:
                    fail(label, f"NetworkPolicy {p['metadata']['name']} admits {peer} from outside the release")
        if comp == "ledger":
            cluster_rules = [r for r in p["spec"].get("ingress", [])
                             if any(x["port"] == LEDGER_PORT.get(label) for x in r.get("ports", []))]
            for r in cluster_rules:
                for peer in r.get("from", []):
                    if set(peer) != {"podSelector"} or peer["podSelector"]["matchLabels"].get("app.kubernetes.io/component") != "ledger":
                        fail(label, f"the ledger cluster port admits {peer}")


METRICS_FROM: dict[str, list] = {}
LEDGER_PORT: dict[str, int] = {}


# --------------------------------------------------------------------------------------
# CRDs.
# --------------------------------------------------------------------------------------

# API groups kubernetes-validate has schemas for (everything else this chart renders is a CRD).
CORE_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io"}

def check_crds(label: str, docs) -> None:
    schemas = {p.stem: json.loads(p.read_text()) for p in (HERE / "crd-schemas").glob("*.json")}
    for d in docs:
        api = d.get("apiVersion", "")
        group = api.split("/")[0] if "/" in api else ""
        if group in CORE_GROUPS:
            continue
        key = f"{group}_{d.get('kind')}"
        schema = schemas.get(key)
        if not schema:
            fail(label, f"no schema for {d['apiVersion']} {d['kind']} in tests/crd-schemas/ ({key}.json)")
            continue
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(d), key=lambda e: list(e.path))
        for e in errors:
            fail(label, f"{d['kind']}/{d['metadata']['name']}: {'/'.join(map(str, e.path))}: {e.message}")
        if not errors:
            NOTES.append(f"{label}: {d['kind']}/{d['metadata']['name']} valid against tests/crd-schemas/{key}.json")


# --------------------------------------------------------------------------------------
# Optional: the real binaries load and validate the rendered configuration.
# --------------------------------------------------------------------------------------

DUMMY_SECRETS = {
    "CARETRAIL_DATABASE_URL": "postgres://check:check@127.0.0.1:9/check",
    "CARETRAIL_BUS_URL": "amqp://check:check@127.0.0.1:9/%2f",
    "CARETRAIL_MASTER_KEY": "ab" * 32,
    "CARETRAIL_S3_ACCESS_KEY_ID": "check-access-key",
    "CARETRAIL_S3_SECRET_ACCESS_KEY": "check-secret-key",
    "CARETRAIL_LEDGER_CLUSTER_SECRET": "x" * 32,
}


MISSING_BINARIES: set[str] = set()
SCRATCH = tempfile.mkdtemp(prefix="caretrail-helm-check-")


def check_binaries(label: str, docs, bin_dir: Path, require: bool) -> None:
    jobs = []
    for wl, pod in workloads(docs):
        for c in pod["containers"]:
            binary = binary_of(c)
            path = bin_dir / binary
            where = f"{label}: {wl['kind']}/{wl['metadata']['name']}"
            if not path.is_file():
                if require:
                    fail(where, f"binary check: {path} is not built")
                MISSING_BINARIES.add(binary)
                continue
            rendered = container_env(docs, c)
            ordinals = range(wl["spec"]["replicas"]) if wl["kind"] == "StatefulSet" else [0]
            for ordinal in ordinals:
                pod_name = f"{wl['metadata']['name']}-{ordinal}"
                env = {"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir()}
                for k, v in rendered.items():
                    if isinstance(v, tuple) and v[0] == "secret":
                        if k not in DUMMY_SECRETS:
                            fail(where, f"no dummy value for secret variable {k}")
                            continue
                        env[k] = DUMMY_SECRETS[k]
                    elif isinstance(v, tuple) and v[0] == "field":
                        env[k] = pod_name
                    else:
                        env[k] = v
                env = {k: k8s_expand(v, env) for k, v in env.items()}
                # Loopback, ephemeral ports and scratch directories: nothing outside the check
                # is touched (the process stops at the closed database port anyway).
                env["CARETRAIL_HTTP_HOST"] = "127.0.0.1"
                env["CARETRAIL_HTTP_PORT"] = "0"
                if "CARETRAIL_LEDGER_CLUSTER_PORT" in env:
                    env["CARETRAIL_LEDGER_CLUSTER_HOST"] = "127.0.0.1"
                    env["CARETRAIL_LEDGER_CLUSTER_PORT"] = "0"
                for k in [k for k in env if k.endswith("_DIR")]:
                    env[k] = tempfile.mkdtemp(prefix=f"{k.lower()}-", dir=SCRATCH)
                cmd = [k8s_expand(a, env).replace(f"/usr/local/bin/{binary}", str(path)) for a in c_command(c)]
                jobs.append((f"{where} ({pod_name})" if wl["kind"] == "StatefulSet" else where, binary,
                             subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True)))
    for where, binary, proc in jobs:
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            fail(where, f"{binary} did not stop within 60 s against a closed port: {out[-400:]}")
            continue
        tail = out.strip().splitlines()[-1:] or ["<no output>"]
        if "invalid configuration" in out or "configuration file" in out:
            fail(where, f"{binary} rejects the rendered configuration: {tail[0]}")
        elif proc.returncode == 0:
            fail(where, f"{binary} exited 0 at once with no database or broker — does it run at all? ({tail[0]})")
        else:
            NOTES.append(f"{where}: {binary} accepted the configuration (then: {tail[0][:120]})")


# --------------------------------------------------------------------------------------
# The example Secrets (infra/k8s/secrets.example.yaml) cover what a release reads.
# --------------------------------------------------------------------------------------

def referenced_secrets(docs) -> set[tuple[str, str]]:
    refs = set()
    for _, pod in workloads(docs):
        for c in pod["containers"]:
            for e in c.get("env", []):
                r = e.get("valueFrom", {}).get("secretKeyRef")
                if r:
                    refs.add((r["name"], r["key"]))
        for v in pod.get("volumes", []):
            if "secret" in v:
                for item in v["secret"].get("items", []):
                    refs.add((v["secret"]["secretName"], item["key"]))
    return refs


def check_secret_examples(label: str, docs, example: Path, namespace: str) -> None:
    defined = set()
    for d in load(example):
        if d.get("kind") != "Secret":
            continue
        if d["metadata"].get("namespace") != namespace:
            fail(label, f"{example.name}: Secret {d['metadata']['name']} is not in namespace {namespace}")
        for k in list(d.get("stringData", {})) + list(d.get("data", {})):
            defined.add((d["metadata"]["name"], k))
    missing = sorted(referenced_secrets(docs) - defined)
    for name, key in missing:
        fail(label, f"the release reads Secret {name} key {key}, which {example.name} does not define")
    if not missing:
        NOTES.append(f"{label}: all {len(referenced_secrets(docs))} Secret keys it reads are in {example.name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rendered", nargs="+", type=Path, help="LABEL=NAMESPACE=FILE of `helm template` output")
    ap.add_argument("--values", action="append", default=[], help="LABEL=values file (for cluster domain and peers)")
    ap.add_argument("--secrets", action="append", default=[],
                    help="LABEL=example Secrets file that must define every Secret key the release reads")
    ap.add_argument("--bin-dir", type=Path, help="directory of built caretrail binaries (binary check)")
    ap.add_argument("--require-binaries", action="store_true", help="fail when a binary is not built")
    args = ap.parse_args()
    values = {}
    for v in args.values:
        lbl, path = v.split("=", 1)
        values[lbl] = yaml.safe_load(open(path)) or {}
    defaults = yaml.safe_load(open(HERE.parent / "values.yaml"))
    secrets = dict(x.split("=", 1) for x in args.secrets)
    for item in args.rendered:
        lbl, ns, path = str(item).split("=", 2)
        docs = load(Path(path))
        vals = values.get(lbl, {})
        domain = vals.get("clusterDomain", defaults["clusterDomain"])
        METRICS_FROM[lbl] = (vals.get("networkPolicy") or {}).get("metricsFrom", defaults["networkPolicy"]["metricsFrom"])
        LEDGER_PORT[lbl] = (vals.get("ledger") or {}).get("clusterPort", defaults["ledger"]["clusterPort"])
        check_ledger(lbl, docs, ns, domain)
        check_env(lbl, docs)
        check_pods(lbl, docs)
        check_network(lbl, docs)
        check_crds(lbl, docs)
        if lbl in secrets:
            check_secret_examples(lbl, docs, Path(secrets[lbl]), ns)
        if args.bin_dir:
            check_binaries(lbl, docs, args.bin_dir, args.require_binaries)
    for n in NOTES:
        print(f"  ok   {n}")
    if MISSING_BINARIES:
        print(f"  skip binary check: not built in {args.bin_dir}: {', '.join(sorted(MISSING_BINARIES))}")
    for f in FAILURES:
        print(f"  FAIL {f}")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    print(f"rendered-manifest checks: {len(args.rendered)} releases, {len(FAILURES)} failures")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
