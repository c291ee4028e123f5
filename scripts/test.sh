#!/usr/bin/env bash
# The whole test suite from a clean checkout: builds (or reuses) the real
# kube-apiserver + etcd for the tests, then runs every Rust test.
set -euo pipefail
cd "$(dirname "$0")/.."

# The test apiserver, built from upstream Go modules and cached by version
# (minutes the first time on a machine, a fraction of a second after).
TESTENV_BIN="$(bash testenv/build.sh | tail -n 1)"
export TESTENV_BIN

cargo fmt --all -- --check
cargo test --workspace --all-targets --no-run

# The image's static release binary (fat LTO, one codegen unit: about ten
# minutes of both cores on a 2-core machine, the suite's longest step) is
# built at the lowest priority while the other tests run: they mostly wait
# on the network and on timers, and keep the CPU whenever they need it.
# tests/container.rs runs last; its own scripts/image.sh finds the binary
# built (cargo's lock on target/image makes it wait if it is not yet).
image_build=
image_log="$(mktemp)"
if command -v podman >/dev/null; then
    IMAGE_BINARY_ONLY=1 nice -n 19 bash scripts/image.sh >"$image_log" 2>&1 &
    image_build=$!
fi

# The image's test is the one whose name starts with "the_image_"
# (tests/container.rs); every other test runs here. Four tests of a binary
# at a time on any machine: the end-to-end tests spend most of their time
# waiting (a fault's 40 s, a lease, a sync period), not on a core.
status=0
cargo test --workspace --all-targets --no-fail-fast -- --skip the_image_ \
    --test-threads "${TEST_THREADS:-4}" || status=$?

if [ -n "$image_build" ] && ! wait "$image_build"; then
    echo "test.sh: building the image's binary ahead failed; tests/container.rs builds it again:" >&2
    cat "$image_log" >&2
fi
rm -f "$image_log"
cargo test -p compass-runtime-agent --test container --no-fail-fast || status=$?
exit "$status"
