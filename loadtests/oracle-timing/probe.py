#!/usr/bin/env python3
"""Timing probe: can a caller refused a record tell it from a record that does not exist?

Starts `caretrail serve --seed-demo` (embedded) in a temporary directory, has Benniu's app
upload a mental-health record, then lets dr.li (another institution, no grant) read
`GET /v1/records/{id}` for that hidden record and for fresh random well-formed ids,
interleaved in random order over one keep-alive connection. Prints, per endpoint, the median
and p90 of each side, the Mann-Whitney z, and how often "the side with the larger median of k
requests is the hidden record" guesses right (50 % = no signal).

    python3 loadtests/oracle-timing/probe.py --binary target/debug/caretrail [--n 300]

Standard library only. Figures go to docs/PERFORMANCE.md ("Refusal timing").
"""

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import caretrail_serve as serve  # noqa: E402


def request(conn, method, path, token=None, body=None, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data


def mann_whitney_z(a, b):
    ranked = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    ranks = [0.0] * len(ranked)
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    r_a = sum(r for r, (_, side) in zip(ranks, ranked) if side == 0)
    n1, n2 = len(a), len(b)
    u = r_a - n1 * (n1 + 1) / 2
    mu, sigma = n1 * n2 / 2, (n1 * n2 * (n1 + n2 + 1) / 12) ** 0.5
    return (u - mu) / sigma


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/debug/caretrail")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--port", type=int, default=18791)
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="caretrail-timing-")
    proc = serve.start(args.binary, args.port, data)
    try:
        t0 = serve.credentials(data)["tenants"][0]
        c = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        headers, form = serve.client_credentials(t0["institutions"][0]["app"])
        _, body = request(c, "POST", "/v1/oauth/token", body=form, headers=headers)
        benniu = json.loads(body)["access_token"]
        li = next(u for i in t0["institutions"] for u in i["users"] if u["username"] == "dr.li")
        _, body = request(c, "POST", "/v1/auth/login", body={
            "tenant_id": t0["id"], "username": "dr.li", "password": li["password"]})
        dr_li = json.loads(body)["access_token"]
        for _ in range(300):
            _, body = request(c, "GET", "/v1/ledger/keys", token=benniu)
            if len(json.loads(body).get("institution_keys", [])) >= 3:
                break
            time.sleep(0.1)
        _, body = request(c, "POST", "/v1/patients", token=benniu,
                          body={"identifier": "320402198001011234"})
        patient = json.loads(body)["id"]
        meta = json.dumps({"patient": patient, "category": "mental_health",
                           "title": "PHQ-9", "encounter_date": "2026-11-01"})
        status, body = request(c, "POST", "/v1/records", token=benniu, body=b"%PDF psych",
                               headers={"Content-Type": "application/pdf",
                                        "Caretrail-Metadata": meta})
        assert status in (201, 202), body
        hidden = json.loads(body)["record"]["id"]
        print(f"caretrail {args.binary}; {args.n} interleaved requests per side, dr.li")
        for suffix in ["", "/content", "/receipt"]:
            times = {"hidden": [], "missing": []}
            for _ in range(20):
                request(c, "GET", f"/v1/records/{hidden}{suffix}", token=dr_li)
            for _ in range(args.n):
                sides = ["hidden", "missing"]
                random.shuffle(sides)
                for side in sides:
                    rid = hidden if side == "hidden" else "rec_" + os.urandom(16).hex()
                    start_t = time.perf_counter()
                    status, _ = request(c, "GET", f"/v1/records/{rid}{suffix}", token=dr_li)
                    times[side].append((time.perf_counter() - start_t) * 1000)
                    assert status == 404, status
            a, b = times["hidden"], times["missing"]
            q = lambda xs, p: sorted(xs)[int(p * (len(xs) - 1))]
            guesses = []
            for k in (1, 5, 10):
                right = sum(
                    statistics.median(random.sample(a, k)) > statistics.median(random.sample(b, k))
                    for _ in range(2000))
                guesses.append(f"{100 * right / 2000:.0f}%")
            print(f"GET /v1/records/{{id}}{suffix:9}  hidden {statistics.median(a):6.2f} / "
                  f"{q(a, .9):6.2f} ms   missing {statistics.median(b):6.2f} / {q(b, .9):6.2f} ms"
                  f"   z {mann_whitney_z(a, b):5.1f}   guessed right (1/5/10) {' / '.join(guesses)}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
