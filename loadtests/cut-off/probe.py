#!/usr/bin/env python3
"""Cut-off latency: how long after an administrator's change does a token stop working?

Starts `caretrail serve --seed-demo` in a temporary directory (SQLite and the in-process bus,
as `make run`, or with `--postgres` on a fresh PostgreSQL database and RabbitMQ). For
`--trials` rounds each: a physician logs in and the tenant admin disables them; an app gets a
token and the admin revokes it. From the moment the change's answer arrives, the token is
presented to the gateway every 2 ms (`GET /v1/ledger/keys`: the gateway and the ledger verify
it) until it is refused. Prints the delays (p50 / p99 / max) and any 200 seen after the change's
answer. Standard library only.

    python3 loadtests/cut-off/probe.py --binary target/debug/caretrail [--postgres]

Figures go to docs/PERFORMANCE.md ("Cut-off").
"""

import argparse
import http.client
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import caretrail_serve as serve  # noqa: E402


def call(port, method, path, token=None, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    try:
        return resp.status, json.loads(data or b"null")
    except ValueError:
        return resp.status, None


def login(port, tenant, username, password):
    status, body = call(port, "POST", "/v1/auth/login", body={
        "tenant_id": tenant, "username": username, "password": password})
    assert status == 200, (status, body)
    return body["access_token"]


def until_refused(port, token):
    """Milliseconds until the token is refused, and how many 200s came first."""
    t0 = time.perf_counter()
    served = 0
    while True:
        status, _ = call(port, "GET", "/v1/ledger/keys", token)
        if status == 401:
            return (time.perf_counter() - t0) * 1000, served
        assert status == 200, status
        served += 1
        if time.perf_counter() - t0 > 10:
            raise SystemExit("a token still worked 10 s after its cut-off")
        time.sleep(0.002)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/debug/caretrail")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--port", type=int, default=18794)
    ap.add_argument("--postgres", action="store_true",
                    help="a fresh database on CARETRAIL_TEST_PG_URL's server and RabbitMQ")
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="caretrail-cutoff-")
    env, database = serve.fresh_postgres("caretrail_cutoff") if args.postgres else ({}, None)
    proc = serve.start(args.binary, args.port, data, env)
    try:
        creds = serve.credentials(data)
        tenant = creds["tenants"][0]
        users = {u["username"]: u for i in tenant["institutions"] for u in i["users"]}
        admin = login(args.port, tenant["id"], "admin.bureau", users["admin.bureau"]["password"])
        benniu = tenant["institutions"][0]["id"]
        delays = {"user disabled": [], "app revoked": []}
        served_after = 0
        for n in range(args.trials):
            password = "a long enough probe password"
            status, user = call(args.port, "POST", f"/v1/tenants/{tenant['id']}/users", admin, {
                "institution_id": benniu, "username": f"probe.{n}", "display_name": f"probe {n}",
                "roles": ["physician"], "password": password})
            assert status == 201, (status, user)
            token = login(args.port, tenant["id"], f"probe.{n}", password)
            status, _ = call(args.port, "POST",
                             f"/v1/tenants/{tenant['id']}/users/{user['id']}/disable", admin)
            assert status == 200, status
            ms, served = until_refused(args.port, token)
            delays["user disabled"].append(ms)
            served_after += served

            status, app = call(args.port, "POST", f"/v1/tenants/{tenant['id']}/apps", admin, {
                "name": f"probe {n}", "institution_id": benniu, "scopes": ["records:read"]})
            assert status == 201, (status, app)
            headers, body = serve.client_credentials(app)
            status, tok = call(args.port, "POST", "/v1/oauth/token", body=body, headers=headers)
            assert status == 200, (status, tok)
            status, _ = call(args.port, "POST", f"/v1/apps/{app['id']}/revoke", admin)
            assert status == 200, status
            ms, served = until_refused(args.port, tok["access_token"])
            delays["app revoked"].append(ms)
            served_after += served
        backend = "PostgreSQL + RabbitMQ" if args.postgres else "SQLite + in-process bus (make run)"
        print(f"caretrail {args.binary} on {backend}; {args.trials} trials each")
        for kind, xs in delays.items():
            print(f"{kind:14}: refused after p50 {pct(xs, .5):6.1f} ms  p99 {pct(xs, .99):6.1f} ms"
                  f"  max {max(xs):6.1f} ms")
        print(f"requests served with a token after its change was answered: {served_after}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        serve.drop_postgres(database)


if __name__ == "__main__":
    main()
