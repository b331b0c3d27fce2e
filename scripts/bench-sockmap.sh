#!/usr/bin/env bash
# sockmap: app -> proxy -> local upstream on one host, tcp_proxy in every
# case, same run, rounds interleaved:
#   direct    the app talks to the upstream itself (no proxy)
#   rawepoll  proxylab on the kernel path
#   redirect  proxylab --transport sockmap, app and upstream in its cgroup:
#             both hops are SK_MSG redirects (TCP/IP skipped), the proxy
#             forwards in user space
#   splice    proxylab --transport sockmap, app and upstream outside: each
#             pair is spliced in the kernel (payload never in user space)
#   haproxy   haproxy in tcp mode, kernel path
# Cells: 64-byte echo round trips with one connection (RTT) and with 16
# (throughput, proxy and whole-host CPU per request), and 64 KiB echoes with
# 4 connections (bulk). Clients and upstreams on LOAD_CPU, proxies on
# PROXY_CPU.
#
# Usage (root): scripts/bench-sockmap.sh [ROUNDS] [SECONDS]
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench: sockmap needs root"; exit 1; }
command -v haproxy >/dev/null || { echo "bench: haproxy needed (make deps)"; exit 1; }
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BIN=${PROXYLAB_BIN:-bin/proxylab}
PB=${PROXYBENCH_BIN:-bin/proxybench}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/proxylab
[ -x "$PB" ] || go build -o "$PB" ./cmd/proxybench
CG2=$(awk '{for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") print $5; break }}' /proc/self/mountinfo | head -1)
[ -n "$CG2" ] || { echo "bench: no cgroup v2 mounted"; exit 1; }
W=$(mktemp -d /tmp/proxylab-sockmap.XXXXXX)
CGR=$CG2/proxylab-bench-redirect-$$
CGS=$CG2/proxylab-bench-splice-$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  sleep 0.3
  rmdir "$CGR" "$CGS" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
host_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# in_cg DIR CMD...: runs CMD inside cgroup DIR.
# (exec: in a background job the pid is then the command's own.)
in_cg() { exec sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$@"; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "bench: nothing on :$1"; exit 1; }

UP_OUT=127.0.0.1:19201
UP_IN=127.0.0.1:19202
taskset -c "$LOAD_CPU" "$PB" upstream -tcp-echo -listen "$UP_OUT" >/dev/null & pids+=($!)
tcpcfg() { printf 'listeners:\n  - {name: tcp, address: "127.0.0.1:%s", tcp_proxy: {cluster: up}}\nclusters:\n  - {name: up, hosts: [{address: "%s"}]}\n' "$1" "$2"; }
tcpcfg 19211 "$UP_OUT" > "$W/raw.yaml"
tcpcfg 19212 "$UP_OUT" > "$W/splice.yaml"
tcpcfg 19213 "$UP_IN" > "$W/redirect.yaml"
"$BIN" run -c "$W/raw.yaml" --transport rawepoll --cpus "$PROXY_CPU" --log-level warn & pids+=($!); PX_RAW=$!
"$BIN" run -c "$W/splice.yaml" --transport sockmap --cgroup "$CGS" --cpus "$PROXY_CPU" --log-level warn & pids+=($!); PX_SPLICE=$!
"$BIN" run -c "$W/redirect.yaml" --transport sockmap --cgroup "$CGR" --cpus "$PROXY_CPU" --log-level warn & pids+=($!); PX_REDIRECT=$!
wait_port 19213
(in_cg "$CGR" taskset -c "$LOAD_CPU" "$PB" upstream -tcp-echo -listen "$UP_IN" >/dev/null) & pids+=($!)
cat > "$W/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen tcp
  bind 127.0.0.1:19214
  server up $UP_OUT
HAP
taskset -c "$PROXY_CPU" haproxy -f "$W/haproxy.cfg" -db & pids+=($!); PX_HAP=$!
for p in 19201 19202 19211 19212 19213 19214; do wait_port "$p"; done

# system -> "proxy-pid port cgroup" (cgroup "-": the client runs outside)
declare -A SYS=( [direct]="0 19201 -" [rawepoll]="$PX_RAW 19211 -" [splice]="$PX_SPLICE 19212 -"
                 [redirect]="$PX_REDIRECT 19213 $CGR" [haproxy]="$PX_HAP 19214 -" )
ORDER=(direct rawepoll redirect splice haproxy)
ROWS=$W/rows
: > "$ROWS"
# cell SYSTEM KIND ARGS...: one load run; appends
# "system kind requests errors p50_us p99_us proxy_ticks host_ticks".
cell() {
  local name=$1 kind=$2; shift 2
  set -- ${SYS[$name]} "$@"
  local pid=$1 port=$2 cg=$3; shift 3
  local run=(taskset -c "$LOAD_CPU" "$PB" load -json -protocol tcp -target "127.0.0.1:$port" -d "${SECS}s" "$@")
  [ "$cg" = - ] || run=(in_cg "$cg" "${run[@]}")
  local t0 h0 out t1 h1
  t0=$( [ "$pid" = 0 ] && echo 0 || ticks "$pid"); h0=$(host_ticks)
  out=$( ("${run[@]}") || true)
  t1=$( [ "$pid" = 0 ] && echo 0 || ticks "$pid"); h1=$(host_ticks)
  echo "$out" | awk -v n="$name" -v k="$kind" -v pt=$((t1 - t0)) -v ht=$((h1 - h0)) '{
      match($0, /"requests":[0-9]+/); r = substr($0, RSTART + 11, RLENGTH - 11)
      match($0, /"errors":[0-9]+/); e = substr($0, RSTART + 9, RLENGTH - 9)
      match($0, /"p50_ms":[0-9.e+-]+/); p50 = substr($0, RSTART + 9, RLENGTH - 9) * 1000
      match($0, /"p99_ms":[0-9.e+-]+/); p99 = substr($0, RSTART + 9, RLENGTH - 9) * 1000
      print n, k, r, e, p50, p99, pt, ht }' >> "$ROWS"
}
for name in "${ORDER[@]}"; do cell "$name" warm -echo 64 -c 4 -d 1s >/dev/null; done
: > "$ROWS"
for r in $(seq 1 "$ROUNDS"); do
  for name in "${ORDER[@]}"; do
    cell "$name" rtt -echo 64 -c 1
    cell "$name" rps -echo 64 -c 16
    cell "$name" bulk -echo 65536 -c 4
  done
done

RESULTS=${RESULTS:-results/$(date +%F)-$(hostname -s)}
mkdir -p "$RESULTS"
REPORT=$RESULTS/bench-sockmap.md
median() { sort -g | awk '{v[NR] = $1} END {print (NR ? v[int((NR + 1) / 2)] : 0)}'; }
col() { awk -v n="$1" -v k="$2" -v c="$3" '$1 == n && $2 == k {print $c}' "$ROWS" | median; }
per() { awk -v n="$1" -v k="$2" -v c="$3" -v hz="$HZ" -v s="$4" '$1 == n && $2 == k && $3 > 0 {print $c / hz * s / $3}' "$ROWS" | median; }
{
echo "# sockmap: same-host app -> proxy -> upstream, tcp_proxy (64-byte and 64 KiB echoes)"
echo
echo "- date: $(date -u +%FT%TZ); host: $(hostname -s); kernel: $(uname -r); CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "- proxies on CPU $PROXY_CPU, proxybench clients and echo upstreams on CPU $LOAD_CPU; $ROUNDS rounds of ${SECS}s cells, interleaved; medians"
echo "- command: scripts/bench-sockmap.sh $ROUNDS $SECS"
echo
echo "| system | RTT p50 µs (1 conn) | RTT p99 µs | RTT vs rawepoll | req/s (16 conns) | proxy CPU µs/req | host CPU µs/req | bulk MB/s (64 KiB echo, 4 conns) | host CPU ms/MB |"
echo "|---|---|---|---|---|---|---|---|---|"
base=$(col rawepoll rtt 5)
for name in "${ORDER[@]}"; do
  p50=$(col "$name" rtt 5); p99=$(col "$name" rtt 6)
  rps=$(awk -v n="$name" -v s="$SECS" '$1 == n && $2 == "rps" {print $3 / s}' "$ROWS" | median)
  pcpu=$(per "$name" rps 7 1e6); hcpu=$(per "$name" rps 8 1e6)
  mbs=$(awk -v n="$name" -v s="$SECS" '$1 == n && $2 == "bulk" {print $3 * 65536 / s / 1e6}' "$ROWS" | median)
  hms=$(awk -v n="$name" -v hz="$HZ" '$1 == n && $2 == "bulk" && $3 > 0 {print $8 / hz * 1e3 / ($3 * 65536 / 1e6)}' "$ROWS" | median)
  errs=$(awk -v n="$name" '$1 == n {e += $4} END {print e + 0}' "$ROWS")
  [ "$name" = direct ] && pcpu=-
  printf "| %s | %.1f | %.1f | %.2f | %.0f | %s | %.1f | %.0f | %.2f |%s\n" "$name" "$p50" "$p99" "$(awk -v a="$p50" -v b="$base" 'BEGIN {print (b > 0 ? a / b : 0)}')" \
    "$rps" "$( [ "$pcpu" = - ] && echo - || printf %.1f "$pcpu")" "$hcpu" "$mbs" "$hms" "$( [ "$errs" = 0 ] || echo " $errs errors")"
done
echo
echo "Raw rows (system kind requests errors p50_us p99_us proxy_ticks host_ticks):"
echo
echo '```'
cat "$ROWS"
echo '```'
} | tee "$REPORT"
echo "bench: report written to $REPORT"
