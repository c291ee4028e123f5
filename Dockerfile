# syntax=docker/dockerfile:1
#
# compass-runtime-agent: a static binary in an image FROM scratch, for builds
# with a registry at hand. Build from the repository root:
#
#   docker build -t compass-runtime-agent:0.1.0 .
#
# scripts/image.sh builds the same image with podman and no registry (from
# the binary cargo builds on the machine); tests/container.rs builds it that
# way and runs it as Kyma's Deployment does. Both give one layer with:
#
#   /app/compass-runtime-agent          the binary; the ENTRYPOINT
#   /etc/ssl/certs/ca-certificates.crt  Debian's CA certificates, for a public Compass
#   USER 65535:65535                    numeric, as Kyma runs it (no /etc/passwd)
#
# The binary is the one scripts/image.sh builds: glibc linked statically
# (-C target-feature=+crt-static, with an explicit --target so that the flag
# does not reach build scripts and proc macros), on Debian 12 like the
# machines the project is tested on. It needs no file of the image but the CA
# bundle: glibc >= 2.34 has the "files" and "dns" name sources built in, so
# /etc/hosts and /etc/resolv.conf (which the container runtime provides) work
# without NSS libraries or an /etc/nsswitch.conf (see scripts/image.sh).
#
# This Dockerfile itself has not been run (no registry where it was written);
# the image scripts/image.sh builds has, and their layouts are the same.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# cmake: aws-lc-sys' fallback builder (it uses the cc crate first).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only the workspace is needed (see .dockerignore).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never \
    RUSTFLAGS="-C target-feature=+crt-static"
# Cache mounts keep the registry and the target directory between builds;
# the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-gnu" \
 && cargo build --release --locked --target "$target" \
        -p compass-runtime-agent --bin compass-runtime-agent \
 && install -D -m 0755 "target/$target/release/compass-runtime-agent" /rootfs/app/compass-runtime-agent \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt
# Fail here, not in the cluster: the binary must be static and must run.
RUN if readelf -d /rootfs/app/compass-runtime-agent | grep -q '(NEEDED)'; then \
        echo "compass-runtime-agent is dynamically linked:"; \
        readelf -d /rootfs/app/compass-runtime-agent; exit 1; \
    fi \
 && /rootfs/app/compass-runtime-agent --version \
 && /rootfs/app/compass-runtime-agent crd > /dev/null

FROM scratch
LABEL org.opencontainers.image.title="compass-runtime-agent" \
      org.opencontainers.image.description="Kyma Compass Runtime Agent (Rust): connects a Kyma runtime to Compass and synchronizes its Applications" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kyma-incubator/compass-runtime-agent-rs"
COPY --from=build /rootfs/ /
WORKDIR /app
# Where Kyma's image has its binary: Kyma's Deployment passes
# args: ["/app/compass-runtime-agent"], which the binary recognizes as its own
# path and drops. With the ENTRYPOINT, a Deployment with no args and
# `status` or `crd` as args work too.
# Numeric, so that Kubernetes' runAsNonRoot can verify it; Kyma's Deployment
# runs it as 65535:65535 too. The agent writes no file.
USER 65535:65535
# /healthz, /readyz and /metrics (APP_HEALTH_PORT); /metrics also on
# APP_METRICS_ADDRESS, which deploy/agent/deployment.yaml sets to 0.0.0.0:9090.
EXPOSE 8090 9090
ENTRYPOINT ["/app/compass-runtime-agent"]
