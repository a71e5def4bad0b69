#!/usr/bin/env bash
# `make helm-check`: validate the Helm chart short of applying it (no cluster here).
#
#   1. tools    helm (+kubectl) from ../shared/tools/get-helm.sh into ~/.cache/caretrail/tools/helm,
#               a venv at ~/.cache/caretrail/k8s-venv with pinned kubernetes-validate and checkov
#   2. lint     `helm lint --strict` with the defaults (+ ci/default-values.yaml: the Secret
#               names the schema requires), ci/all-features-values.yaml and every values-*.yaml
#   3. defaults values.yaml alone must fail, naming the missing Secrets
#   4. render   `helm template` of each into a temp dir
#   5. schemas  `kubernetes-validate --strict` of every built-in kind, for the oldest and the
#               newest Kubernetes the chart targets; CRD kinds (ServiceMonitor, HTTPRoute)
#               against tests/crd-schemas/ instead (kubernetes-validate has none for them)
#   6. policy   checkov (kubernetes framework, offline) — no failed check except those skipped
#               with a written reason in caretrail/.checkov.yaml
#   7. bad      every tests/bad/*.yaml (on top of ci/default-values.yaml) must make both
#               `helm lint` and `helm template` fail with the message in its `# expect:` line
#   8. checks   tests/check_rendered.py: ledger peers vs. what the ledger parses, env vars vs.
#               the binaries' config structs, pod security, NetworkPolicies; and, when the
#               service binaries are built, each one loading its rendered configuration
#
# Environment: HELM (a helm binary to use), CARETRAIL_BIN_DIR (built binaries; default
# $CARGO_TARGET_DIR/debug), HELM_CHECK_REQUIRE_BINARIES=1 (fail if they are not built).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
chart="$repo/charts/caretrail"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/caretrail"
helm_dir="$cache/tools/helm"
venv="${K8S_VENV:-$cache/k8s-venv}"
# Pinned: bump deliberately (a new checkov may add checks).
pins=("kubernetes-validate==1.37.0" "checkov==3.3.30")
# Oldest (Chart.yaml kubeVersion) and newest Kubernetes validated against.
kube_versions=(1.29.0 1.35.0)

started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=()
failed=0
step() { printf '\n==> %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }
record() { # status name detail
  results+=("$(printf '%-5s %-36s %s' "$1" "$2" "$3")")
  if [ "$1" = FAIL ]; then failed=$((failed + 1)); fi
}

# ---------------------------------------------------------------------------- 1. tools
step "tools"
helm="${HELM:-$helm_dir/helm}"
if [ ! -x "$helm" ]; then
  getter="$repo/../shared/tools/get-helm.sh"
  if [ -f "$getter" ]; then
    echo "installing helm into $helm_dir (from $getter)"
    # Its last line pipes `kubectl version` into `head`, which can end in SIGPIPE: judge by
    # the binary it leaves rather than by its exit status.
    bash "$getter" "$helm_dir" >"$work/get-helm.log" 2>&1 || true
    if [ ! -x "$helm" ]; then
      cat "$work/get-helm.log" >&2
      echo "error: $getter did not install $helm" >&2
      exit 2
    fi
  elif command -v helm >/dev/null; then
    helm=$(command -v helm)
  else
    echo "error: no helm: $helm is missing and $getter does not exist." >&2
    echo "       Install Helm >= 3.8 and run with HELM=/path/to/helm, or put shared/ next to the repository." >&2
    exit 2
  fi
fi
"$helm" version --short
stamp="$venv/.caretrail-pins"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]; then
  echo "preparing $venv (${pins[*]})"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$stamp"
fi
py="$venv/bin/python"
echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version), checkov $("$venv/bin/checkov" --version)"

# Releases to render: label | release | namespace | values files (on top of values.yaml).
releases=(
  "default|caretrail|caretrail|ci/default-values.yaml"
  "all-features|ct|caretrail-all|ci/all-features-values.yaml"
)
for f in "$chart"/values-*.yaml; do
  region=$(basename "$f" .yaml); region=${region#values-}
  releases+=("$region|$region|caretrail-$region|$(basename "$f")")
done

# ---------------------------------------------------------------------------- 2. lint
step "helm lint --strict"
for r in "${releases[@]}"; do
  IFS='|' read -r label release ns values <<<"$r"
  if out=$("$helm" lint --strict "$chart" -f "$chart/$values" --namespace "$ns" 2>&1); then
    record ok "lint $label" "$values"
  else
    echo "$out"; record FAIL "lint $label" "$values"
  fi
done

# ---------------------------------------------------------------------------- 3. defaults alone
step "values.yaml alone fails fast"
if out=$("$helm" template caretrail "$chart" 2>&1); then
  record FAIL "defaults without Secrets" "rendered although no Secret names are set"
else
  missing=$(grep -c "existingSecret': minLength" <<<"$out" || true)
  if [ "$missing" -ge 6 ]; then
    record ok "defaults without Secrets" "schema refuses: $missing missing Secret names listed"
  else
    echo "$out"; record FAIL "defaults without Secrets" "unexpected error"
  fi
fi

# ---------------------------------------------------------------------------- 4. render
step "helm template"
mkdir -p "$work/rendered" "$work/core" "$work/crd"
rendered_args=()
values_args=()
for r in "${releases[@]}"; do
  IFS='|' read -r label release ns values <<<"$r"
  out="$work/rendered/$label.yaml"
  if "$helm" template "$release" "$chart" -f "$chart/$values" --namespace "$ns" >"$out" 2>"$work/err"; then
    record ok "template $label" "$(grep -c '^kind:' "$out") objects"
    rendered_args+=("$label=$ns=$out")
    values_args+=(--values "$label=$chart/$values")
  else
    cat "$work/err"; record FAIL "template $label" "$values"
  fi
done
# Split built-in kinds from CRD kinds for kubernetes-validate.
"$py" - "$work" <<'PY'
import sys, yaml, pathlib
work = pathlib.Path(sys.argv[1])
core_groups = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io"}
for f in sorted((work / "rendered").glob("*.yaml")):
    core, crd = [], []
    for d in yaml.safe_load_all(f.read_text()):
        if not d:
            continue
        api = d.get("apiVersion", "")
        (core if (api.split("/")[0] if "/" in api else "") in core_groups else crd).append(d)
    (work / "core" / f.name).write_text(yaml.safe_dump_all(core, sort_keys=False))
    (work / "crd" / f.name).write_text(yaml.safe_dump_all(crd, sort_keys=False))
PY

# ---------------------------------------------------------------------------- 5. schemas
step "kubernetes-validate --strict"
for f in "$work"/core/*.yaml; do
  label=$(basename "$f" .yaml)
  for kv in "${kube_versions[@]}"; do
    if out=$("$venv/bin/kubernetes-validate" --strict --quiet -k "$kv" "$f" 2>&1) && [ -z "$out" ]; then
      record ok "kubernetes-validate $label" "Kubernetes $kv, $(grep -c '^kind:' "$f") objects"
    else
      echo "$out"; record FAIL "kubernetes-validate $label" "Kubernetes $kv"
    fi
  done
  crds=$(grep '^kind:' "$work/crd/$label.yaml" | awk '{print $2}' | sort | tr '\n' ' ' || true)
  [ -n "$crds" ] && record ok "CRDs $label" "${crds}→ tests/crd-schemas (step 8)"
done

for kv in "${kube_versions[@]}"; do
  if out=$("$venv/bin/kubernetes-validate" --strict --quiet -k "$kv" "$repo/infra/k8s/secrets.example.yaml" 2>&1) && [ -z "$out" ]; then
    record ok "kubernetes-validate secrets.example" "infra/k8s/secrets.example.yaml, Kubernetes $kv"
  else
    echo "$out"; record FAIL "kubernetes-validate secrets.example" "Kubernetes $kv"
  fi
done

# ---------------------------------------------------------------------------- 6. policy
step "checkov"
# Every skip in .checkov.yaml must be preceded by a comment naming it and giving a reason.
if unexplained=$("$py" - "$chart/.checkov.yaml" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
bad = []
for i, line in enumerate(lines):
    m = re.match(r"\s*-\s*(CKV\S*)", line)
    if not m:
        continue
    j, comment = i - 1, []
    while j >= 0 and lines[j].strip().startswith("#"):
        comment.insert(0, lines[j].strip("# ").strip()); j -= 1
    text = " ".join(comment)
    if m.group(1) not in text or len(text) < 60:
        bad.append(m.group(1))
print(" ".join(bad))
sys.exit(1 if bad else 0)
PY
); then
  record ok "checkov skip reasons" "$(grep -cE '^\s*-\s*CKV' "$chart/.checkov.yaml") skips, each explained"
else
  record FAIL "checkov skip reasons" "no reason for: $unexplained"
fi
if out=$(cd "$work" && "$venv/bin/checkov" --config-file "$chart/.checkov.yaml" -d "$work/rendered" 2>&1); then
  record ok "checkov" "$(grep -Eo 'Passed checks: [0-9]+, Failed checks: [0-9]+' <<<"$out" | head -1)"
else
  echo "$out" | tail -60; record FAIL "checkov" "$(grep -Eo 'Passed checks: [0-9]+, Failed checks: [0-9]+' <<<"$out" | head -1)"
fi

# ---------------------------------------------------------------------------- 7. bad values
step "bad values are rejected"
bad_ok=0 bad_total=0
for f in "$chart"/tests/bad/*.yaml; do
  bad_total=$((bad_total + 1))
  template_only=0
  expect=$(sed -n 's/^# expect: //p' "$f")
  name=$(basename "$f")
  if [ -z "$expect" ]; then record FAIL "bad $name" "no '# expect:' line"; continue; fi
  lint_out=$("$helm" lint --strict "$chart" -f "$chart/ci/default-values.yaml" -f "$f" 2>&1) && lint_rc=0 || lint_rc=$?
  tmpl_out=$("$helm" template t "$chart" -f "$chart/ci/default-values.yaml" -f "$f" 2>&1 >/dev/null) && tmpl_rc=0 || tmpl_rc=$?
  # Schema rules fail both; the few cross-field rules JSON Schema cannot express are the
  # chart's `fail` calls, which stop template/install/upgrade but which Helm 4's lint only logs.
  template_only=$(grep -c '^# rejected-by: template' "$f" || true)
  if [ "$tmpl_rc" -ne 0 ] && grep -qF -- "$expect" <<<"$tmpl_out" \
     && { [ "$template_only" -gt 0 ] || { [ "$lint_rc" -ne 0 ] && grep -qF -- "$expect" <<<"$lint_out"; }; }; then
    bad_ok=$((bad_ok + 1))
  else
    echo "--- $name (lint rc=$lint_rc, template rc=$tmpl_rc, expected: $expect)"; echo "$tmpl_out" | head -20
    record FAIL "bad $name" "not rejected with '$expect'"
  fi
done
[ "$bad_ok" -eq "$bad_total" ] && record ok "bad values rejected" "$bad_ok/$bad_total files fail with the expected message (template; lint too unless template-only)"

# ---------------------------------------------------------------------------- 8. rendered checks
step "rendered-manifest checks"
bin_dir="${CARETRAIL_BIN_DIR:-${CARGO_TARGET_DIR:-$cache/target}/debug}"
bin_args=(--bin-dir "$bin_dir")
[ "${HELM_CHECK_REQUIRE_BINARIES:-0}" = 1 ] && bin_args+=(--require-binaries)
examples="$repo/infra/k8s/secrets.example.yaml"
if "$py" "$chart/tests/check_rendered.py" "${rendered_args[@]}" "${values_args[@]}" "${bin_args[@]}" \
     --secrets "tianning=$examples" | tee "$work/checks.txt"; then
  record ok "rendered checks" "$(tail -1 "$work/checks.txt")"
else
  record FAIL "rendered checks" "$(tail -1 "$work/checks.txt")"
fi
skipped=$(sed -n 's/^  skip binary check: not built in [^:]*: //p' "$work/checks.txt")
binaries=$(grep -c 'accepted the configuration' "$work/checks.txt" || true)
if [ -n "$skipped" ]; then
  record skip "binaries load rendered config" "not built in $bin_dir: $skipped (HELM_CHECK_REQUIRE_BINARIES=1 makes this fail)"
elif [ "$binaries" -gt 0 ]; then
  record ok "binaries load rendered config" "$binaries containers"
fi

# ---------------------------------------------------------------------------- summary
elapsed=$(( $(date +%s) - started ))
printf '\n==> helm-check summary (%ss)\n' "$elapsed"
printf '%s\n' "${results[@]}"
passed=$(printf '%s\n' "${results[@]}" | grep -c '^ok' || true)
echo "helm-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
