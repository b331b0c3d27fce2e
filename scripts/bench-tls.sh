#!/usr/bin/env bash
# TLS: full handshakes per second per core (ECDSA P-256 and RSA-2048 server
# keys, TLS 1.3, X25519 and P-256 key exchange; proxybench's handshake
# protocol: dial, handshake, close, HS_CONNS at once, nothing resumed unless
# the cell says so) from the proxy's CPU time per handshake, and keep-alive
# proxy CPU per request over TLS vs plaintext; haproxy measured the same way
# in the same run.
#
# Usage: scripts/bench-tls.sh [ROUNDS] [SECONDS]   env: TRANSPORT (rawepoll)
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
TRANSPORT=${TRANSPORT:-rawepoll}
cd "$(dirname "$0")/.."
command -v haproxy >/dev/null || { echo "bench: haproxy needed (make deps)"; exit 1; }
. scripts/lib/bench.sh
PB=${PROXYBENCH_BIN:-bin/proxybench}
[ -x "$PB" ] || go build -o "$PB" ./cmd/proxybench
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
start_haproxy <<HAP
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
sleep 1

RESULTS=${RESULTS:-results/$(date +%F)-$(hostname -s)}
mkdir -p "$RESULTS"
REPORT=$RESULTS/bench-tls.md
HSC=${HS_CONNS:-4}
{
echo "# TLS: handshakes per core and keep-alive cost, proxylab ($TRANSPORT) vs haproxy"
echo
echo "- date: $(date -u +%FT%TZ); host: $(hostname -s); kernel: $(uname -r); $(openssl version)"
echo "- proxy pinned to CPU $PROXY_CPU; clients and nginx upstream on CPU $LOAD_CPU"
echo "- command: TRANSPORT=$TRANSPORT scripts/bench-tls.sh $ROUNDS $SECS"
echo
echo "## Handshakes (TLS 1.3; proxybench -protocol handshake, $HSC connections, ${SECS}s per cell, $ROUNDS rounds interleaved)"
echo
echo "| cell | handshakes | errors | proxy CPU µs/handshake (median) | range |"
echo "|---|---|---|---|---|"
} | tee "$REPORT"
ROWS=$W/rows-hs
: > "$ROWS"
for r in $(seq 1 "$ROUNDS"); do
  for sys in "proxylab $PX 1944" "haproxy $HP 1945"; do
    set -- $sys
    name=$1 pid=$2 p=$3
    pb_cell "$name-ecdsa-x25519-full" "$pid" -- -target 127.0.0.1:${p}3 -protocol handshake -tls -curves X25519 -c "$HSC"
    pb_cell "$name-ecdsa-p256-full" "$pid" -- -target 127.0.0.1:${p}3 -protocol handshake -tls -curves P256 -c "$HSC"
    pb_cell "$name-rsa2048-x25519-full" "$pid" -- -target 127.0.0.1:${p}4 -protocol handshake -tls -curves X25519 -c "$HSC"
    pb_cell "$name-ecdsa-x25519-resumed" "$pid" -- -target 127.0.0.1:${p}3 -protocol handshake -tls -curves X25519 -resume -c "$HSC"
  done
done
for k in ecdsa-x25519-full ecdsa-p256-full rsa2048-x25519-full ecdsa-x25519-resumed; do
  pb_summarise "^(proxylab|haproxy)-$k\$" 1e6
done | tee -a "$REPORT"
{
echo
echo "Handshakes per second per core = 1e6 / the median. The engine alone (crypto/tls's server side, its socket reads and writes included, accept and close excluded; \`go test -bench ServerHandshakeCPU ./offload/gotls\`, same run):"
echo
echo '```'
go test -run XXX -bench ServerHandshakeCPU -benchtime 2000x ./offload/gotls | grep '^Benchmark'
echo '```'
} | tee -a "$REPORT"

declare -A SYS=( [proxylab-plain]="$PX 19445 http" [proxylab-tls]="$PX 19443 https" [haproxy-plain]="$HP 19455 http" [haproxy-tls]="$HP 19453 https" )
ORDER=(proxylab-plain proxylab-tls haproxy-plain haproxy-tls)
run_matrix >/dev/null
vs_plain() { echo "${1%-*}-plain"; }
echo | tee -a "$REPORT"
report "## Keep-alive over TLS vs plaintext (ratio: each system's TLS / its own plaintext)" vs_plain "wrk over https, $CONNS connections" | tail -n +2 | tee -a "$REPORT"
echo "bench: report written to $REPORT"
