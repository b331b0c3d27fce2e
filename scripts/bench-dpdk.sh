#!/usr/bin/env bash
# DPDK transport vs the kernel path on one veth topology: a network
# namespace holds the client (proxybench) and a TCP echo upstream; the proxy
# owns the other veth end, either through the kernel (proxylab rawepoll on
# an address on that end) or through DPDK's net_af_packet PMD with gVisor's
# netstack (proxylab built with -tags dpdk). tcp_proxy in both; the proxy is
# restarted for each cell (only one of them can own the veth), rounds
# interleaved. Cells: 64-byte echo round trips with 1 connection (RTT) and
# 16 (throughput, CPU per request), 64 KiB echoes with 4 (bulk).
#
# Usage (root): scripts/bench-dpdk.sh [ROUNDS] [SECONDS]
#   env: PATHS (default "kernel dpdk"), RESULTS (report directory),
#        PROFILE (directory for CPU profiles of the dpdk proxy, per cell)
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench: needs root (namespaces, DPDK)"; exit 1; }
pkg-config --exists libdpdk || { echo "bench: libdpdk-dev needed (make deps)"; exit 1; }
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BIN=bin/proxylab
DBIN=bin/proxylab-dpdk
PB=bin/proxybench
go build -o "$BIN" ./cmd/proxylab
go build -tags dpdk -o "$DBIN" ./cmd/proxylab
go build -o "$PB" ./cmd/proxybench
NS=plabbench$$
HIF=plbd$$
NIF=plbk$$
W=$(mktemp -d /tmp/proxylab-dpdk.XXXXXX)
pids=()
cleanup() {
  [ -z "${PX:-}" ] || kill "$PX" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A run killed before its clean-up leaves its namespace and veth (named
# after its pid) holding 10.88.0.0/24, which would hijack this run's
# traffic: remove those whose script is gone.
for stale in $(ip netns list | awk '/^plabbench[0-9]+/ {print $1}'); do
  kill -0 "${stale#plabbench}" 2>/dev/null || { echo "bench: removing stale $stale"; ip netns del "$stale"; }
done
for stale in $(ip -br link | awk '/^plbd[0-9]+/ {sub(/@.*/, "", $1); print $1}'); do
  kill -0 "${stale#plbd}" 2>/dev/null || ip link del "$stale" 2>/dev/null || true
done
ip netns add "$NS"
ip link add "$HIF" type veth peer name "$NIF"
ip link set "$NIF" netns "$NS"
ip netns exec "$NS" ip addr add 10.88.0.1/24 dev "$NIF"
ip netns exec "$NS" ip link set "$NIF" up
ip netns exec "$NS" ip link set lo up
ip link set "$HIF" up
ip netns exec "$NS" ethtool -K "$NIF" tx off >/dev/null
ethtool -K "$HIF" tx off >/dev/null
ip netns exec "$NS" taskset -c "$LOAD_CPU" "$PB" upstream -tcp-echo -listen 10.88.0.1:9001 >/dev/null & pids+=($!)
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
host_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
cat > "$W/common.yaml" <<YML
listeners:
  - {name: tcp, address: "0.0.0.0:8081", tcp_proxy: {cluster: up}}
clusters:
  - {name: up, hosts: [{address: "10.88.0.1:9001"}]}
YML
{ echo "transport: dpdk"
  echo "admin: {address: 127.0.0.1:19902}"
  echo "dpdk: {eal: [--no-huge, --no-pci, -m, \"256\", --file-prefix, plabbench$$, --vdev, \"net_af_packet0,iface=$HIF\"], port: net_af_packet0, address: 10.88.0.2/24}"
  cat "$W/common.yaml"; } > "$W/dpdk.yaml"
{ echo "transport: rawepoll"; cat "$W/common.yaml"; } > "$W/kernel.yaml"

PX=
start() {
  case $1 in
    kernel) ip addr add 10.88.0.2/24 dev "$HIF"
            "$BIN" run -c "$W/kernel.yaml" --cpus "$PROXY_CPU" --log-level warn & PX=$! ;;
    dpdk)   "$DBIN" run -c "$W/dpdk.yaml" --cpus "$PROXY_CPU" --log-level warn >/dev/null 2>&1 & PX=$! ;;
  esac
  for _ in $(seq 100); do
    ip netns exec "$NS" timeout 2 bash -c "exec 3<>/dev/tcp/10.88.0.2/8081" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: $1 proxy not answering"; exit 1
}
stop() {
  kill -INT "$PX" 2>/dev/null; wait "$PX" 2>/dev/null || true
  [ "$1" = kernel ] && ip addr del 10.88.0.2/24 dev "$HIF"
  sleep 0.3
}
ROWS=$W/rows
: > "$ROWS"
load() { ip netns exec "$NS" taskset -c "$LOAD_CPU" "$PB" load -json -protocol tcp -target 10.88.0.2:8081 -d "${SECS}s" "$@"; }
# packets: rx+tx packets through the DPDK port so far (0 for the kernel path).
packets() {
  { curl -s http://127.0.0.1:19902/stats/prometheus 2>/dev/null || true; } | awk '/^proxylab_dpdk_(rx|tx)_packets_total/ {s += $2} END {printf "%d", s}'
}
cell() {
  local name=$1 kind=$2; shift 2
  local t0 h0 out t1 h1 k0 k1
  k0=$(packets)
  t0=$(ticks "$PX"); h0=$(host_ticks)
  # PROFILE=DIR: a CPU profile of the dpdk proxy during each of its cells.
  [ -n "${PROFILE:-}" ] && [ "$name" = dpdk ] && { mkdir -p "$PROFILE"; curl -s "http://127.0.0.1:19902/debug/pprof/profile?seconds=$((SECS - 1))" > "$PROFILE/$kind.prof" & }
  out=$(load "$@" || true)
  t1=$(ticks "$PX"); h1=$(host_ticks)
  k1=$(packets)
  echo "$out" | awk -v n="$name" -v k="$kind" -v pt=$((t1 - t0)) -v ht=$((h1 - h0)) -v pk=$((k1 - k0)) '{
      match($0, /"requests":[0-9]+/); r = substr($0, RSTART + 11, RLENGTH - 11)
      match($0, /"errors":[0-9]+/); e = substr($0, RSTART + 9, RLENGTH - 9)
      match($0, /"p50_ms":[0-9.e+-]+/); p50 = substr($0, RSTART + 9, RLENGTH - 9) * 1000
      match($0, /"p99_ms":[0-9.e+-]+/); p99 = substr($0, RSTART + 9, RLENGTH - 9) * 1000
      print n, k, r, e, p50, p99, pt, ht, pk }' >> "$ROWS"
}
PATHS=${PATHS:-kernel dpdk}
for r in $(seq 1 "$ROUNDS"); do
  for name in $PATHS; do
    start "$name"
    load -echo 64 -c 4 -d 1s >/dev/null || true # warm-up
    cell "$name" rtt -echo 64 -c 1
    cell "$name" rps -echo 64 -c 16
    cell "$name" bulk -echo 65536 -c 4
    stop "$name"
  done
done

RESULTS=${RESULTS:-results/$(date +%F)-$(hostname -s)}
mkdir -p "$RESULTS"
REPORT=$RESULTS/bench-dpdk.md
median() { sort -g | awk '{v[NR] = $1} END {print (NR ? v[int((NR + 1) / 2)] : 0)}'; }
col() { awk -v n="$1" -v k="$2" -v c="$3" '$1 == n && $2 == k {print $c}' "$ROWS" | median; }
per() { awk -v n="$1" -v k="$2" -v c="$3" -v hz="$HZ" '$1 == n && $2 == k && $3 > 0 {print $c / hz * 1e6 / $3}' "$ROWS" | median; }
{
echo "# DPDK (net_af_packet + gVisor netstack) vs the kernel path, same veth, tcp_proxy"
echo
echo "- date: $(date -u +%FT%TZ); host: $(hostname -s); kernel: $(uname -r); DPDK $(pkg-config --modversion libdpdk); CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "- proxy on CPU $PROXY_CPU (DPDK: its poll loop shares it, one queue), client and echo upstream in a network namespace on CPU $LOAD_CPU; $ROUNDS rounds of ${SECS}s cells, interleaved; medians"
echo "- command: scripts/bench-dpdk.sh $ROUNDS $SECS"
echo
echo "| path | RTT p50 µs (1 conn, 64 B) | RTT p99 µs | req/s (16 conns) | proxy CPU µs/req | host CPU µs/req | bulk MB/s (64 KiB, 4 conns) | errors |"
echo "|---|---|---|---|---|---|---|---|"
for name in $PATHS; do
  rps=$(awk -v n="$name" -v s="$SECS" '$1 == n && $2 == "rps" {print $3 / s}' "$ROWS" | median)
  mbs=$(awk -v n="$name" -v s="$SECS" '$1 == n && $2 == "bulk" {print $3 * 65536 / s / 1e6}' "$ROWS" | median)
  errs=$(awk -v n="$name" '$1 == n {e += $4} END {print e + 0}' "$ROWS")
  printf "| %s | %.1f | %.1f | %.0f | %.1f | %.1f | %.0f | %s |\n" "$name" "$(col "$name" rtt 5)" "$(col "$name" rtt 6)" "$rps" "$(per "$name" rps 7)" "$(per "$name" rps 8)" "$mbs" "$errs"
done
echo
echo "DPDK packets through the port (rx + tx) per request and the busy CPU's time per packet (the poll loop keeps its CPU at 100%, so this is the whole proxy CPU divided by the packets it moved):"
echo
echo "| cell | packets per request | proxy CPU ns per packet |"
echo "|---|---|---|"
for kind in rps bulk; do
  ppr=$(awk -v k="$kind" '$1 == "dpdk" && $2 == k && $3 > 0 {print $9 / $3}' "$ROWS" | median)
  nspp=$(awk -v k="$kind" -v hz="$HZ" '$1 == "dpdk" && $2 == k && $9 > 0 {print $7 / hz * 1e9 / $9}' "$ROWS" | median)
  printf "| %s | %.1f | %.0f |\n" "$kind" "$ppr" "$nspp"
done
echo
echo "Raw rows (path kind requests errors p50_us p99_us proxy_ticks host_ticks dpdk_packets):"
echo
echo '```'
cat "$ROWS"
echo '```'
} | tee "$REPORT"
echo "bench: report written to $REPORT"
