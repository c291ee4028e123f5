# syntax=docker/dockerfile:1
#
# compass-runtime-agent: a static (musl) binary on a distroless base, running
# as a non-root user. Build from the repository root:
#
#   docker build -t compass-runtime-agent:0.1.0 .
#
# Written without a Docker engine at hand, so not built where it was written;
# see deploy/README.md.
#
# Why musl: the binary then links nothing at run time, so the final image
# needs no libc and can be distroless/static. (A static glibc build would
# still want NSS modules for host name lookups.) The builder is Alpine, whose
# Rust targets musl natively and links statically by default, so the C code
# of aws-lc-sys (rustls' crypto provider) and ring is built by Alpine's own
# gcc; no cross compiler or musl-gcc wrapper is involved.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS build
# build-base: gcc, g++, make, musl-dev. cmake: aws-lc-sys' fallback builder
# (it uses the cc crate first). perl and linux-headers: needed by some
# aws-lc build paths; cheap in a build stage.
RUN apk add --no-cache build-base cmake perl linux-headers
WORKDIR /src
# Only the workspace is needed (see .dockerignore).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
# Cache mounts keep the registry and the target directory between builds;
# the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p compass-runtime-agent --bin compass-runtime-agent \
 && install -D -m 0755 target/release/compass-runtime-agent /out/compass-runtime-agent
# Fail here, not in the cluster: the binary must be static and must run.
RUN if readelf -d /out/compass-runtime-agent | grep -q NEEDED; then \
        echo "compass-runtime-agent is dynamically linked:"; \
        readelf -d /out/compass-runtime-agent; exit 1; \
    fi \
 && /out/compass-runtime-agent --version \
 && /out/compass-runtime-agent crd > /dev/null

# distroless/static: CA certificates (for Compass' public certificate),
# /etc/passwd with user nonroot (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="compass-runtime-agent" \
      org.opencontainers.image.description="Kyma Compass Runtime Agent (Rust): connects a Kyma runtime to Compass and synchronizes its Applications" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kyma-incubator/compass-runtime-agent-rs"
# Where Kyma's image has its binary: Kyma's Deployment passes
# args: ["/app/compass-runtime-agent"], which the binary recognizes as its own
# path and drops (tests/kyma.rs starts it so). With an ENTRYPOINT, a
# Deployment with no args and `status` or `crd` as args work too.
COPY --from=build /out/compass-runtime-agent /app/compass-runtime-agent
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it. Any other non-root
# UID works as well (Kyma runs it as 65535): the agent writes no file.
USER 65532:65532
# /healthz, /readyz and /metrics (APP_HEALTH_PORT); /metrics also on
# APP_METRICS_ADDRESS, which deploy/agent/deployment.yaml sets to 0.0.0.0:9090.
EXPOSE 8090 9090
ENTRYPOINT ["/app/compass-runtime-agent"]
