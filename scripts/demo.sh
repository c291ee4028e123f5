#!/usr/bin/env bash
# The demo: a local kube-apiserver, compass-sim seeded with a small scenario,
# and the agent; waits until Synchronized, prints what it made, keeps running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash testenv/build.sh >/dev/null
exec cargo run --quiet -p compass-demo -- "$@"
