# syntax=docker/dockerfile:1
#
# One image with every Caretrail binary; the Helm chart (charts/caretrail) picks the binary
# per workload with `command`:
#   /usr/local/bin/caretrail-gateway, caretrail-identity, caretrail-consent, caretrail-ledger,
#   caretrail-object-store, caretrail-audit, and the `caretrail` CLI (migrate, bootstrap,
#   verify, crypto).
#
#   docker build -t caretrail/caretrail:0.1.0 .
#
# UNTESTED HERE: this project's machines have no Docker engine, so the image has never been
# built in CI. It runs exactly the build CI runs (`cargo build --release --locked`) and
# copies the binaries it produces from target/release/.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

# ---------------------------------------------------------------------------- build
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
# A C toolchain for ring and the bundled SQLite; no OpenSSL (rustls everywhere).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ make pkg-config ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Cargo must see every workspace member's manifest; .dockerignore keeps target/ and data/ out.
COPY . .
# Fixed target directory: the Makefile's CARGO_TARGET_DIR must not leak into the image build.
ENV CARGO_TARGET_DIR=/src/target
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p caretrail -p caretrail-gateway -p caretrail-identity -p caretrail-consent \
      -p caretrail-ledger -p caretrail-object-store -p caretrail-audit \
 && mkdir -p /out \
 && for bin in caretrail caretrail-gateway caretrail-identity caretrail-consent \
               caretrail-ledger caretrail-object-store caretrail-audit; do \
      install -m 0755 "target/release/$bin" "/out/$bin"; \
    done

# ---------------------------------------------------------------------------- runtime
# debian-slim rather than distroless: the ledger's container command derives its Raft node
# id from the pod name with /bin/sh, and preStop hooks use /bin/sleep.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 caretrail \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/caretrail --shell /usr/sbin/nologin caretrail \
 && mkdir -p /var/lib/caretrail \
 && chown 10001:10001 /var/lib/caretrail
COPY --from=builder /out/ /usr/local/bin/
# The all-in-one `caretrail serve` keeps its data under the working directory (./data).
WORKDIR /var/lib/caretrail
USER 10001:10001
EXPOSE 8080 7100
# JSON logs for collectors; the all-in-one server listens on every interface in a container
# (the service binaries already default to 0.0.0.0).
ENV CARETRAIL_LOG_FORMAT=json CARETRAIL_HTTP_HOST=0.0.0.0
# The all-in-one server by default (`docker run -p 8080:8080 IMAGE`); the chart runs one
# service binary per pod instead.
CMD ["/usr/local/bin/caretrail", "serve"]
