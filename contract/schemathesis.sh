#!/usr/bin/env bash
# `make contract`: schemathesis (every phase: examples, coverage, fuzzing, stateful) against a
# fresh `caretrail serve --seed-demo` — `make run`'s server — with a partner app's token, and
# its report on stdout. Not yet part of CI: issue #27 tracks the failures that remain.
#
# Exclusions, each for a reason:
#   POST /v1/auth/logout   revokes the token it is called with: every later call would be 401
#   POST /v1/oauth/revoke  may revoke the run's own token (schemathesis can send it as `token`)
#
# Environment: CARETRAIL_BIN (default $CARGO_TARGET_DIR/debug/caretrail), PORT (18095),
# MAX_EXAMPLES (15), SEED (1: the same run every time), extra arguments go to schemathesis.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/caretrail"
venv="$cache/contract-venv"
pin="schemathesis==4.32.5"
bin="${CARETRAIL_BIN:-${CARGO_TARGET_DIR:-$cache/target}/debug/caretrail}"
port="${PORT:-18095}"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "${pin#*==}"; then
  echo "installing $pin into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$pin"
fi

data=$(mktemp -d)
CARETRAIL_HTTP_PORT=$port CARETRAIL_DATA_DIR="$data" "$bin" serve --seed-demo >"$data/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
token=$(python3 - "$data" "$port" <<'PY'
import base64, json, sys, urllib.parse, urllib.request
data, port = sys.argv[1], sys.argv[2]
app = json.load(open(data + "/dev-credentials.json"))["tenants"][0]["institutions"][0]["app"]
basic = base64.b64encode(f"{app['client_id']}:{app['client_secret']}".encode()).decode()
req = urllib.request.Request(
    f"http://127.0.0.1:{port}/v1/oauth/token",
    data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
    headers={"Authorization": "Basic " + basic})
print(json.load(urllib.request.urlopen(req))["access_token"])
PY
)
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer $token" --checks all \
  --max-examples "${MAX_EXAMPLES:-15}" --seed "${SEED:-1}" \
  --exclude-path /v1/auth/logout --exclude-path /v1/oauth/revoke "$@"
