#!/usr/bin/env bash
# Builds the agent's container image with podman, without a registry:
# a static, stripped release binary in an image FROM scratch, laid out as
# the root Dockerfile lays it out and as Kyma's Deployment expects it:
#
#   /app/compass-runtime-agent          the binary, also the ENTRYPOINT
#   /etc/ssl/certs/ca-certificates.crt  CA certificates for a public Compass
#   USER 65535:65535                    numeric, as Kyma runs it (no /etc/passwd)
#
# Usage: scripts/image.sh [TAG]        (default: $IMAGE_TAG, else
#                                      localhost/compass-runtime-agent:dev)
#        IMAGE_BINARY_ONLY=1 scripts/image.sh   the binary only, no podman
#                                      (scripts/test.sh builds it ahead)
# Prints the binary's and the image's size; the last line is the tag.
#
# Needs podman (with runc, cgroupfs and no default ulimits on these machines:
# see .ci/run), a Rust toolchain and Debian's ca-certificates (or
# CA_BUNDLE=<PEM file>). The binary is built in target/image (or
# $IMAGE_TARGET_DIR), apart from the shared debug build.
#
# Static glibc, not musl: the toolchain here has no musl target. With
# +crt-static on a gnu target, --target must be explicit, so that the flag
# applies to the binary only and not to build scripts and proc macros. Host
# names are resolved by glibc's getaddrinfo (kube's and reqwest's hyper
# resolver, std). The linker warns that a static getaddrinfo wants glibc's
# NSS libraries at run time; it does not need them for hosts: since glibc 2.34
# the "files" and "dns" sources are part of libc itself, static builds too,
# and without an /etc/nsswitch.conf glibc (2.36, Debian 12) reads /etc/hosts
# first and then asks the servers of /etc/resolv.conf, which is what a Pod has
# (hostAliases, cluster DNS). tests/container.rs resolves a name that only the
# container's /etc/hosts knows. Other NSS sources an nsswitch.conf might name
# (mdns, myhostname) would be dlopen()ed and are not in the image.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-${IMAGE_TAG:-localhost/compass-runtime-agent:dev}}"
target="$(uname -m)-unknown-linux-gnu"
target_dir="${IMAGE_TARGET_DIR:-$PWD/target/image}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

binary_only="${IMAGE_BINARY_ONLY:-}"

[ -n "$binary_only" ] || command -v podman >/dev/null || {
    echo "image.sh: podman is not installed (Debian: apt-get install podman runc; see .ci/run)" >&2
    exit 1
}
[ -n "$binary_only" ] || [ -s "$ca_bundle" ] || {
    echo "image.sh: no CA bundle at $ca_bundle (Debian: apt-get install ca-certificates)" >&2
    exit 1
}

# Only these flags: not a caller's (cargo test passes none, but a coverage or
# sanitizer run would), which would also change the binary.
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET
# Nor what cargo sets for a test it runs (tests/container.rs calls this
# script): ring's build script reruns when OUT_DIR or CARGO_MANIFEST_DIR
# differ from the last build's, and with it x509-parser, rcgen and the
# agent's fat-LTO link (minutes), so the binary scripts/test.sh built ahead
# would be built again.
unset OUT_DIR
for variable in $(compgen -e); do
    case "$variable" in
    CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_PRIMARY_PACKAGE | \
        CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR)
        unset "$variable"
        ;;
    esac
done
echo "image.sh: building the static binary ($target, release, stripped) in $target_dir" >&2
CARGO_TARGET_DIR="$target_dir" \
    RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --quiet --target "$target" \
    -p compass-runtime-agent --bin compass-runtime-agent
binary="$target_dir/$target/release/compass-runtime-agent"

# Fail here, not in a cluster: the binary must be static and must run.
if readelf -d "$binary" | grep -q '(NEEDED)'; then
    echo "image.sh: $binary is dynamically linked:" >&2
    readelf -d "$binary" >&2
    exit 1
fi
"$binary" --version >/dev/null
"$binary" crd >/dev/null
if [ -n "$binary_only" ]; then
    echo "$binary"
    exit 0
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
install -D -m 0755 "$binary" "$context/rootfs/app/compass-runtime-agent"
install -D -m 0644 "$ca_bundle" "$context/rootfs/etc/ssl/certs/ca-certificates.crt"
cat >"$context/Containerfile" <<'EOF'
FROM scratch
LABEL org.opencontainers.image.title="compass-runtime-agent" \
      org.opencontainers.image.description="Kyma Compass Runtime Agent (Rust): connects a Kyma runtime to Compass and synchronizes its Applications" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kyma-incubator/compass-runtime-agent-rs"
COPY rootfs/ /
WORKDIR /app
USER 65535:65535
EXPOSE 8090 9090
ENTRYPOINT ["/app/compass-runtime-agent"]
EOF

previous="$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
podman build --quiet --layers=false --tag "$tag" --file "$context/Containerfile" "$context" >/dev/null
current="$(podman image inspect --format '{{.Id}}' "$tag")"
# The image this tag named before, now untagged, unless a container uses it.
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
fi

binary_bytes="$(stat -c %s "$binary")"
image_bytes="$(podman image inspect --format '{{.Size}}' "$tag")"
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
echo "binary: $binary_bytes bytes ($(mb "$binary_bytes")), static, stripped: $binary"
echo "image: $image_bytes bytes ($(mb "$image_bytes")), id ${current:0:12}"
echo "$tag"
