#!/usr/bin/env bash
# The agent's memory over time, for finding which phase of a sync makes its
# peak (the sync bench prints only the peak). Waits for a process named
# compass-runtime-agent, then writes one line every 0.2 s until it exits:
#
#   <UTC time> <VmRSS kB> anon <RssAnon kB> hwm <VmHWM kB> cpu <user+system s>
#
# Usage, beside the sync bench (BENCH_AGENT_LOG_LEVEL=info puts the agent's
# log, with its phases' times, on the bench's output):
#   scripts/rss-trace.sh /tmp/agent.rss &
#   BENCH_AGENT_LOG_LEVEL=info BENCH_APPLICATIONS=10000 BENCH_ROUNDS=1 \
#       cargo bench -p compass-runtime-agent --bench sync
set -euo pipefail
out="${1:?usage: rss-trace.sh <output file>}"
ticks="$(getconf CLK_TCK)"
pid=""
while [ -z "$pid" ]; do
    # /proc/<pid>/comm holds the first 15 bytes of the name.
    pid="$(pgrep -x -n compass-runtime || true)"
    sleep 0.1
done
: >"$out"
while [ -r "/proc/$pid/status" ]; do
    status="$(cat "/proc/$pid/status" 2>/dev/null)" || break
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || break
    field() { awk -v key="$1:" '$1 == key { print $2 }' <<<"$status"; }
    # utime and stime: fields 14 and 15, counted after the command's ")".
    cpu="$(awk -v ticks="$ticks" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / ticks }' <<<"$stat")"
    echo "$(date -u +%H:%M:%S.%3N) $(field VmRSS) anon $(field RssAnon) hwm $(field VmHWM) cpu $cpu" >>"$out"
    sleep 0.2
done
