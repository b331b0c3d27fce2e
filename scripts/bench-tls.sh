#!/usr/bin/env bash
# TLS: full handshakes per second per core (ECDSA P-256 and RSA-2048 server
# keys, TLS 1.3, `openssl s_time -new` so nothing is resumed) from the proxy's
# CPU time per handshake, and keep-alive proxy CPU per request over TLS vs
# plaintext; haproxy measured the same way in the same run.
#
# Usage: scripts/bench-tls.sh [ROUNDS] [SECONDS]   env: TRANSPORT (rawepoll)
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
TRANSPORT=${TRANSPORT:-rawepoll}
cd "$(dirname "$0")/.."
command -v haproxy >/dev/null && command -v openssl >/dev/null || { echo "bench: haproxy and openssl needed (make deps)"; exit 1; }
. scripts/lib/bench.sh
start_upstream

"$BIN" certs -dir "$W/ec" -key ecdsa >/dev/null
"$BIN" certs -dir "$W/rsa" -key rsa >/dev/null
cat "$W/ec/server.pem" "$W/ec/server-key.pem" > "$W/ec.pem"
cat "$W/rsa/server.pem" "$W/rsa/server-key.pem" > "$W/rsa.pem"

cat > "$W/proxylab.yaml" <<YML
listeners:
  - {name: ec, address: "127.0.0.1:19443", tls: {certificates: [{cert_file: "$W/ec/server.pem", key_file: "$W/ec/server-key.pem"}]}, http_proxy: {}}
  - {name: rsa, address: "127.0.0.1:19444", tls: {certificates: [{cert_file: "$W/rsa/server.pem", key_file: "$W/rsa/server-key.pem"}]}, http_proxy: {}}
  - {name: plain, address: "127.0.0.1:19445", http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: "$UP"}]}
YML
"$BIN" run -c "$W/proxylab.yaml" --cpus "$PROXY_CPU" --transport "$TRANSPORT" --log-level warn & pids+=($!)
PX=$!
cat > "$W/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 8000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend ec
  bind 127.0.0.1:19453 ssl crt $W/ec.pem
  default_backend up
frontend rsa
  bind 127.0.0.1:19454 ssl crt $W/rsa.pem
  default_backend up
frontend plain
  bind 127.0.0.1:19455
  default_backend up
backend up
  http-reuse always
  server up $UP
HAP
taskset -c "$PROXY_CPU" haproxy -f "$W/haproxy.cfg" -db & pids+=($!)
HP=$!
sleep 1

RESULTS=${RESULTS:-results/$(date +%F)-$(hostname -s)}
mkdir -p "$RESULTS"
REPORT=$RESULTS/bench-tls.md
{
echo "# TLS: handshakes per core and keep-alive cost, proxylab ($TRANSPORT) vs haproxy"
echo
echo "- date: $(date -u +%FT%TZ); host: $(hostname -s); kernel: $(uname -r); $(openssl version)"
echo "- proxy pinned to CPU $PROXY_CPU; clients and nginx upstream on CPU $LOAD_CPU"
echo "- command: TRANSPORT=$TRANSPORT scripts/bench-tls.sh $ROUNDS $SECS"
echo
echo "## Full handshakes (TLS 1.3, no resumption; openssl s_time -new, ${SECS}s per cell, $ROUNDS rounds interleaved)"
echo
echo "| system | key | handshakes measured | proxy CPU µs/handshake (median) | handshakes/s per core |"
echo "|---|---|---|---|---|"
} | tee "$REPORT"
HS=$W/hs
: > "$HS"
for r in $(seq 1 "$ROUNDS"); do
  for cell in "proxylab ec $PX 19443" "haproxy ec $HP 19453" "proxylab rsa $PX 19444" "haproxy rsa $HP 19454"; do
    set -- $cell
    t0=$(ticks "$3")
    out=$(taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$4" -new -time "$SECS" 2>&1 || true)
    t1=$(ticks "$3")
    n=$(echo "$out" | awk '/connections in/ && /real seconds/ {print $1; exit}')
    [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "bench: $1 $2: s_time failed: $out" >&2; continue; }
    awk -v s="$1" -v k="$2" -v t=$((t1 - t0)) -v hz="$HZ" -v n="$n" 'BEGIN {printf "%s %s %d %.1f\n", s, k, n, t / hz * 1e6 / n}' >> "$HS"
  done
done
for cell in "proxylab ec" "haproxy ec" "proxylab rsa" "haproxy rsa"; do
  set -- $cell
  grep "^$1 $2 " "$HS" | awk -v s="$1" -v k="$2" '{n += $3; v[NR] = $4} END {
      for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      m = v[int((NR + 1) / 2)]; printf "| %s | %s | %d | %.1f | %.0f |\n", s, (k == "ec" ? "ECDSA P-256" : "RSA-2048"), n, m, 1e6 / m }'
done | tee -a "$REPORT"

declare -A SYS=( [proxylab-plain]="$PX 19445 http" [proxylab-tls]="$PX 19443 https" [haproxy-plain]="$HP 19455 http" [haproxy-tls]="$HP 19453 https" )
ORDER=(proxylab-plain proxylab-tls haproxy-plain haproxy-tls)
run_matrix >/dev/null
vs_plain() { echo "${1%-*}-plain"; }
echo | tee -a "$REPORT"
report "## Keep-alive over TLS vs plaintext (ratio: each system's TLS / its own plaintext)" vs_plain "wrk over https, $CONNS connections" | tail -n +2 | tee -a "$REPORT"
echo "bench: report written to $REPORT"
