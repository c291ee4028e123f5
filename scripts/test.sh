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
cargo test --workspace --all-targets --no-fail-fast
