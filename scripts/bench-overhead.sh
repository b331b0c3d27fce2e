#!/usr/bin/env bash
# What observability costs: proxy CPU per request with metrics off, metrics
# on (the default), and metrics plus an access log to a file, in one run with
# interleaved rounds (same setup as bench-h1.sh: HTTP/1.1 keep-alive, 50
# connections, 20-byte response, proxy on one CPU).
#
# Usage: scripts/bench-overhead.sh [ROUNDS] [SECONDS]   env: TRANSPORT (rawepoll)
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-6}
TRANSPORT=${TRANSPORT:-rawepoll}
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
start_upstream

declare -A SYS
start_variant() { # name port stats accesslog
  local yml=$W/$1.yaml al=""
  [ "$4" = yes ] && al="access_log: {path: \"$W/$1-access.log\"},"
  cat > "$yml" <<YML
stats: {enabled: $3}
listeners:
  - {name: http, address: "127.0.0.1:$2", http_proxy: {$al idle_timeout: 60s}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: "$UP"}]}
YML
  "$BIN" run -c "$yml" --cpus "$PROXY_CPU" --transport "$TRANSPORT" --log-level warn & pids+=($!)
  SYS[$1]="$! $2"
}
start_variant metrics-off 19180 false no
start_variant metrics-on 19181 true no
start_variant metrics-and-accesslog 19182 true yes
ORDER=(metrics-off metrics-on metrics-and-accesslog)
sleep 1

RESULTS=${RESULTS:-results/$(date +%F)-$(hostname -s)}
mkdir -p "$RESULTS"
REPORT=$RESULTS/bench-overhead.md
run_matrix
vs_off() { echo metrics-off; }
report "observability overhead on $TRANSPORT: metrics and access log on vs off" vs_off "TRANSPORT=$TRANSPORT scripts/bench-overhead.sh $ROUNDS $SECS" | tee "$REPORT"
for f in "$W"/*-access.log; do [ -f "$f" ] && echo "access log lines written: $(wc -l < "$f")"; done | tee -a "$REPORT"
echo "bench: report written to $REPORT"
