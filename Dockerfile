# syntax=docker/dockerfile:1
#
# Switchyard and its example WebAssembly plugins.
#
#   docker build -t switchyard .
#   docker run --rm -v "$PWD/config:/etc/switchyard:ro" -p 2112:2112 switchyard
#
# The image runs `switchyard run -c /etc/switchyard/config.yaml` as uid 65532
# (no shell, no package manager); mount the config directory there. The
# example plugins are in /plugins (`wasm: {plugin: /plugins/redact.wasm}`).

# --- build: the binary and the plugins ------------------------------------
FROM rust:1.95-bookworm AS builder

# scripts/build-plugins: the Rust plugins with rustup's wasm32-wasip2 target,
# the Python one with componentize-py (venv from PyPI), the JavaScript one
# with componentize-js (npm; it brings a new enough Node.js itself).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv nodejs npm \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-wasip2
ENV SWITCHYARD_RUST=rustup

WORKDIR /src
COPY . .

# Cache mounts keep crates and build output between builds; the results are
# copied out of them into /out, which the runtime stage takes.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard \
 && install -D -m 0755 target/release/switchyard /out/usr/local/bin/switchyard
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/plugins/target \
    --mount=type=cache,target=/src/.cache \
    scripts/build-plugins \
 && install -d /out/plugins \
 && install -m 0644 plugins/dist/*.wasm /out/plugins/ \
 && install -d /out/state

# --- runtime ----------------------------------------------------------------
# glibc, libgcc, CA certificates (TLS uses the system roots) and the
# `nonroot` user, uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /out/usr/local/bin/switchyard /usr/local/bin/switchyard
COPY --from=builder /out/plugins/ /plugins/
# The default state.dir, writable by the user (an emptyDir replaces it in
# Kubernetes).
COPY --from=builder --chown=65532:65532 /out/state/ /var/lib/switchyard/
USER 65532:65532
WORKDIR /var/lib/switchyard
# /metrics, /healthz, /readyz (telemetry.listen: 0.0.0.0:2112)
EXPOSE 2112
ENTRYPOINT ["switchyard"]
CMD ["run", "-c", "/etc/switchyard/config.yaml"]
