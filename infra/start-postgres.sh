#!/usr/bin/env bash
# Starts the local PostgreSQL cluster if it is down (idempotent) and creates the
# application role the services use (a plain role: row-level security applies to it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  if ! ls /etc/postgresql >/dev/null 2>&1; then
    echo "PostgreSQL is not installed: apt-get install -y postgresql" >&2
    exit 1
  fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
fi
wait_for_port 127.0.0.1 5432 30 PostgreSQL

psql_admin() { psql "${CARETRAIL_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}" -v ON_ERROR_STOP=1 -qAt "$@"; }
psql_admin -c "DO \$\$ BEGIN CREATE ROLE caretrail_app LOGIN PASSWORD 'caretrail' NOSUPERUSER NOBYPASSRLS;
  EXCEPTION WHEN duplicate_object THEN NULL; END \$\$;"
# The database `make run` uses when pointed at PostgreSQL (one schema per service in it).
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'caretrail'")" ]; then
  psql_admin -c "CREATE DATABASE caretrail OWNER caretrail_app"
fi
# Test databases of earlier runs.
for db in $(psql_admin -c "SELECT datname FROM pg_database WHERE datname LIKE 'ct\_test\_%'"); do
  psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
done
echo "PostgreSQL ready (role caretrail_app, database caretrail)"
