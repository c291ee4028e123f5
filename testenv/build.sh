#!/usr/bin/env bash
# Builds kube-testenv (embedded etcd + in-process kube-apiserver, see README.md)
# once, and caches the binary by Kubernetes version:
#
#   ${TESTENV_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/compass-runtime-agent/testenv/<k8s version>}/kube-testenv
#
# A stamp file next to the binary records a hash of the inputs (go.mod, go.sum,
# the Go sources, this script, the Go version); when it matches, nothing is
# built and the script takes well under a second. Concurrent runs wait for each
# other (flock). The binary's path is always the last line of stdout; progress
# goes to stderr.
#
# Needs only `go` (1.26+) and the Go module proxy.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' go.mod)"
if [[ -z "$k8s_version" ]]; then
  echo "build.sh: cannot find k8s.io/kubernetes in $here/go.mod" >&2
  exit 1
fi

cache_root="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/compass-runtime-agent/testenv"
bin_dir="${TESTENV_BIN_DIR:-$cache_root/$k8s_version}"
bin="$bin_dir/kube-testenv"
stamp="$bin.stamp"

go_version="$(go env GOVERSION)"
inputs_hash="$(
  {
    echo "$go_version $(go env GOOS)/$(go env GOARCH)"
    find cmd -name '*.go' -type f | LC_ALL=C sort | xargs sha256sum
    sha256sum go.mod go.sum build.sh
  } | sha256sum | cut -d' ' -f1
)"

up_to_date() {
  [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$inputs_hash" ]]
}

if up_to_date; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin_dir"
exec 9>"$bin_dir/.build.lock"
if ! flock -n 9; then
  echo "build.sh: another build of kube-testenv is running; waiting for it" >&2
  flock 9
fi
if up_to_date; then # built by whoever held the lock
  echo "$bin"
  exit 0
fi

# The apiserver reports the release it was built from (as upstream's
# hack/lib/version.sh does), not v0.0.0.
minor="${k8s_version#v1.}"
minor="${minor%%.*}"
build_date="$(go mod download -json "k8s.io/kubernetes@$k8s_version" |
  sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' | head -n1)"
build_date="${build_date:-1970-01-01T00:00:00Z}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version"
  ldflags+=" -X $pkg.gitMajor=1"
  ldflags+=" -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitCommit=unknown"
  ldflags+=" -X $pkg.gitTreeState=clean"
  ldflags+=" -X $pkg.buildDate=$build_date"
done

echo "build.sh: building kube-testenv for kube-apiserver $k8s_version with $go_version" \
  "(a cold build takes several minutes and a few GB of memory)" >&2
start=$(date +%s)
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
CGO_ENABLED="${CGO_ENABLED:-0}" GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false" \
  go build -trimpath -ldflags="$ldflags" -o "$tmp" ./cmd/kube-testenv
mv -f "$tmp" "$bin"
echo "$inputs_hash" >"$stamp"
echo "build.sh: built $bin in $(($(date +%s) - start))s" >&2
echo "$bin"
