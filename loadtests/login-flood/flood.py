#!/usr/bin/env python3
"""Login flood: can anonymous logins slow down a tenant's partner apps?

Starts `caretrail serve --seed-demo` in a temporary directory (SQLite and the in-process bus,
as `make run`, or with `--postgres` on a fresh PostgreSQL database and RabbitMQ), measures a
partner app's token issuance (`POST /v1/oauth/token`, one request at a time) idle, then while
`--clients` threads send invalid logins (`POST /v1/auth/login`, random tenant ids) for
`--seconds`, once with 64 KiB passwords and once with ordinary-length ones. Prints the login
answers by status and the token latencies (p50 / p99 / max). Standard library only.

    python3 loadtests/login-flood/flood.py --binary target/debug/caretrail [--postgres]

Figures go to docs/PERFORMANCE.md ("Login floods").
"""

import argparse
import collections
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import caretrail_serve as serve  # noqa: E402


def post(conn, path, body, headers):
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def token_latencies(port, app, until):
    headers, body = serve.client_credentials(app)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out, statuses = [], collections.Counter()
    while time.time() < until:
        t0 = time.perf_counter()
        statuses[post(conn, "/v1/oauth/token", body, headers)] += 1
        out.append((time.perf_counter() - t0) * 1000)
    return out, statuses


def flood(port, clients, seconds, password_bytes):
    until = time.time() + seconds
    counts = collections.Counter()
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local = collections.Counter()
        while time.time() < until:
            body = json.dumps({"tenant_id": "ten_" + uuid.uuid4().hex,
                               "username": "nobody", "password": "x" * password_bytes})
            try:
                local[post(conn, "/v1/auth/login", body, {"Content-Type": "application/json"})] += 1
            except (OSError, http.client.HTTPException):
                local["connection error"] += 1
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            counts.update(local)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads, counts, until


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/debug/caretrail")
    ap.add_argument("--clients", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--port", type=int, default=18793)
    ap.add_argument("--postgres", action="store_true",
                    help="a fresh database on CARETRAIL_TEST_PG_URL's server and RabbitMQ")
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="caretrail-flood-")
    env, database = serve.fresh_postgres("caretrail_flood") if args.postgres else ({}, None)
    proc = serve.start(args.binary, args.port, data, env)
    try:
        creds = serve.credentials(data)
        app = creds["tenants"][0]["institutions"][0]["app"]
        backend = "PostgreSQL + RabbitMQ" if args.postgres else "SQLite + in-process bus (make run)"
        print(f"caretrail {args.binary} on {backend}; {args.clients} flooding clients, "
              f"{args.seconds:.0f} s each")
        idle, idle_status = token_latencies(args.port, app, time.time() + 5)
        print(f"token issuance, idle:           p50 {pct(idle, .5):7.1f} ms  p99 "
              f"{pct(idle, .99):7.1f} ms  max {max(idle):7.1f} ms  ({len(idle)} tokens, "
              f"{dict(idle_status)})")
        for label, size in [("64 KiB passwords", 64 << 10), ("32-byte passwords", 32)]:
            threads, counts, until = flood(args.port, args.clients, args.seconds, size)
            lat, status = token_latencies(args.port, app, until)
            for t in threads:
                t.join()
            server_errors = sum(n for s, n in counts.items() if isinstance(s, int) and s >= 500)
            print(f"token issuance, {label:17}: p50 {pct(lat, .5):7.1f} ms  p99 "
                  f"{pct(lat, .99):7.1f} ms  max {max(lat):7.1f} ms  ({len(lat)} tokens, "
                  f"{dict(status)})")
            print(f"   logins answered: {dict(sorted(counts.items(), key=str))}; 5xx: {server_errors}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        serve.drop_postgres(database)


if __name__ == "__main__":
    main()
