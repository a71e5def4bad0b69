#!/usr/bin/env bash
# Starts Garage (a self-hostable S3 server) as a plain process for local runs and CI,
# installing it into ~/.cache/caretrail/tools on first use (a ~10 minute release build).
# Idempotent: if the S3 port answers, it only makes sure bucket and key exist.
#
# Fixed test credentials (never use them outside a laptop or CI):
#   endpoint http://127.0.0.1:3900, region "garage", path-style addressing,
#   access key GK0000000000000000000000caretrail... (see below), bucket caretrail-test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

tools="${CARETRAIL_TOOLS_DIR:-$HOME/.cache/caretrail/tools}"
state="${CARETRAIL_S3_DIR:-$HOME/.cache/caretrail/garage}"
garage="$tools/bin/garage"
export CARETRAIL_S3_ACCESS_KEY="${CARETRAIL_S3_ACCESS_KEY:-GK31c2f218a2e44f485b94239e}"
export CARETRAIL_S3_SECRET_KEY="${CARETRAIL_S3_SECRET_KEY:-b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835}"
bucket="${CARETRAIL_S3_BUCKET:-caretrail-test}"

if [ ! -x "$garage" ]; then
  echo "installing Garage 2.5.0 into $tools (one-time, ~10 min)"
  cargo install garage@2.5.0 --locked --root "$tools"
fi

mkdir -p "$state/meta" "$state/data"
cat >"$state/garage.toml" <<TOML
metadata_dir = "$state/meta"
data_dir = "$state/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "4f3c1d6e8a2b9c0d7e5f1a3b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:3900"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:3903"
TOML
g() { "$garage" -c "$state/garage.toml" "$@"; }

if ! (exec 3<>/dev/tcp/127.0.0.1/3900) 2>/dev/null; then
  nohup "$garage" -c "$state/garage.toml" server >"$state/garage.log" 2>&1 &
  wait_for_port 127.0.0.1 3901 60 "Garage RPC"
fi
# The node must have a layout before the S3 API serves.
for _ in $(seq 1 50); do g status >/dev/null 2>&1 && break; sleep 0.2; done
if ! g layout show 2>/dev/null | grep -q "Current cluster layout version: [1-9]"; then
  node=$(g node id -q | cut -d@ -f1)
  g layout assign -z dc1 -c 1G "$node" >/dev/null
  g layout apply --version 1 >/dev/null
fi
wait_for_port 127.0.0.1 3900 60 "Garage S3"
g bucket info "$bucket" >/dev/null 2>&1 || g bucket create "$bucket" >/dev/null
g key info "$CARETRAIL_S3_ACCESS_KEY" >/dev/null 2>&1 \
  || g key import --yes "$CARETRAIL_S3_ACCESS_KEY" "$CARETRAIL_S3_SECRET_KEY" >/dev/null
g bucket allow --read --write --owner "$bucket" --key "$CARETRAIL_S3_ACCESS_KEY" >/dev/null
echo "S3 (Garage) ready: endpoint http://127.0.0.1:3900 region garage bucket $bucket"
