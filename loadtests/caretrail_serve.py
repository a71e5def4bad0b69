"""What the Python load tests share: a `caretrail serve --seed-demo` of their own in a
temporary data directory, its demo credentials, and an app's token request.

Standard library only.
"""

import base64
import http.client
import json
import os
import subprocess
import time
import urllib.parse
import uuid


def start(binary, port, data, env_extra=None):
    """Starts the all-in-one on `port` with data under `data`; returns once it is ready."""
    env = dict(os.environ, CARETRAIL_HTTP_PORT=str(port), CARETRAIL_DATA_DIR=data,
               **(env_extra or {}))
    proc = subprocess.Popen([binary, "serve", "--seed-demo"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def credentials(data):
    """The demo's tenants, institutions, apps and users (`dev-credentials.json`)."""
    with open(os.path.join(data, "dev-credentials.json")) as f:
        return json.load(f)


def client_credentials(app):
    """Headers and body of `POST /v1/oauth/token` for a demo app."""
    basic = base64.b64encode(f"{app['client_id']}:{app['client_secret']}".encode()).decode()
    headers = {"Authorization": "Basic " + basic,
               "Content-Type": "application/x-www-form-urlencoded"}
    return headers, urllib.parse.urlencode({"grant_type": "client_credentials"})


PG_URL = os.environ.get("CARETRAIL_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def fresh_postgres(prefix):
    """A new database on CARETRAIL_TEST_PG_URL's server and RabbitMQ (a bus prefix of its
    own): returns the server's environment and the database's name, for `drop_postgres`."""
    database = f"{prefix}_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", PG_URL, "-q", "-c", f"CREATE DATABASE {database}"], check=True)
    env = {"CARETRAIL_DATABASE_URL": PG_URL.rsplit("/", 1)[0] + "/" + database,
           "CARETRAIL_BUS_URL": os.environ.get("CARETRAIL_TEST_AMQP_URL",
                                               "amqp://guest:guest@127.0.0.1:5672/%2f"),
           "CARETRAIL_BUS_PREFIX": database}
    return env, database


def drop_postgres(database):
    if database:
        subprocess.run(["psql", PG_URL, "-q", "-c", f"DROP DATABASE {database} WITH (FORCE)"])
