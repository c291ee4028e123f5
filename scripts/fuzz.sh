#!/usr/bin/env bash
# Fuzzes the agent's parsers with cargo fuzz (libFuzzer), one target after the
# other, and fails if any target crashes, hangs or runs out of memory.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Default: 60 seconds for every target in fuzz/fuzz_targets. Installs the
# nightly toolchain and cargo-fuzz when they are missing. The committed seed
# corpus (fuzz/corpus/<target>) is read, never written: inputs libFuzzer finds
# go to fuzz/target/corpus/<target>, crash inputs to fuzz/artifacts/<target>
# (both git-ignored). Reproduce a crash with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
# Not part of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
  echo "usage: $0 [seconds-per-target] [target...]" >&2
  exit 2
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

mkdir -p fuzz/target/logs
failed=()
for target in "${targets[@]}"; do
  work="fuzz/target/corpus/$target"
  log="fuzz/target/logs/$target.log"
  mkdir -p "$work" "fuzz/corpus/$target"
  echo "== $target: ${seconds}s (log: $log)"
  # Build first, so that a build error is not mistaken for a crash.
  cargo +nightly fuzz build "$target"
  # -rss_limit_mb: a parser that needs gigabytes for a small input is a bug.
  if cargo +nightly fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || tail -n 3 "$log"
    grep -E '^stat::number_of_executed_units' "$log" || true
  else
    echo "!! $target failed:"
    grep -E 'panicked at|==ERROR|^SUMMARY|Test unit written to|ERROR: libFuzzer' "$log" | head -n 10 || tail -n 30 "$log"
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "no crashes in: ${targets[*]}"
