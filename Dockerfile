# syntax=docker/dockerfile:1
#
# Ferrox container image: a Rust build stage (with the wasm32-wasip2 target, which host/build.rs
# needs to compile the built-in filters it embeds) and a small Debian runtime stage running as a
# non-root user.
#
#   docker build -t ferrox:local .
#   docker run --rm -p 8080:8080 -p 9080:9080 -e FERROX_ADMIN_TOKEN=change-me \
#     -v "$PWD/ferrox.yaml:/etc/ferrox/ferrox.yaml:ro" ferrox:local
#
# Try it without a config file: the quickstart config and its echo upstream, both in the container:
#   docker run --rm -p 8080:8080 -e FERROX_ADMIN_TOKEN=change-me ferrox:local serve --demo
#   curl -i http://127.0.0.1:8080/demo/hello
# See docs/operations.md for ports, volumes and environment variables.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------- build --
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# The toolchain file pins the same version; the target is added explicitly because a build
# environment may disable rustup's automatic installs.
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target folder between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ferrox-host \
    && install -D -m 0755 target/release/ferrox /out/ferrox

# -------------------------------------------------------------------------- runtime --
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: system roots for https:// upstream targets; curl: the HEALTHCHECK below.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ferrox \
    && useradd --system --uid 10001 --gid ferrox --home-dir /var/lib/ferrox \
       --shell /usr/sbin/nologin ferrox \
    && install -d -o ferrox -g ferrox -m 0750 /var/lib/ferrox /var/cache/ferrox \
    && install -d -m 0755 /etc/ferrox
COPY --from=build /out/ferrox /usr/local/bin/ferrox

# Listen on every interface inside the container (the defaults are loopback). A non-loopback
# admin listener requires a token: set FERROX_ADMIN_TOKEN (or admin.token in the file).
ENV FERROX_LISTEN=0.0.0.0:8080 \
    FERROX_ADMIN_LISTEN=0.0.0.0:9080 \
    FERROX_CACHE_DIR=/var/cache/ferrox \
    FERROX_LOG_FORMAT=json \
    HOME=/var/lib/ferrox

USER 10001:10001
WORKDIR /var/lib/ferrox
# 8080: proxy, 9080: admin API (/health without a token, /metrics and the rest with one).
EXPOSE 8080 9080
# SIGTERM drains: the listeners close, requests in flight finish within server.drain_timeout
# (default 30s). Give `docker stop` at least that long (`--stop-timeout 35`, compose
# `stop_grace_period: 35s`).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9080/health"]

ENTRYPOINT ["/usr/local/bin/ferrox"]
CMD ["serve", "--config", "/etc/ferrox/ferrox.yaml"]
