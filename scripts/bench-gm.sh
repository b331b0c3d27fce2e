#!/usr/bin/env bash
# TLCP (engine gm) against Go TLS and haproxy, same run, proxy pinned:
#  1. server CPU per handshake: TLCP ECC full and resumed, Go TLS 1.3 ECDSA
#     full on proxylab and on haproxy (proxybench's handshake protocol: dial,
#     handshake, close; proxy CPU from /proc over the cell);
#  2. bulk through the proxy: 1 MiB responses over TLCP SM4-GCM, TLCP
#     SM4-CBC and Go TLS AES-128-GCM (proxy CPU ms per MiB).
#
# Usage: scripts/bench-gm.sh [ROUNDS] [SECONDS]   env: TRANSPORT (rawepoll)
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
TRANSPORT=${TRANSPORT:-rawepoll}
cd "$(dirname "$0")/.."
command -v haproxy >/dev/null || { echo "bench: haproxy needed (make deps)"; exit 1; }
. scripts/lib/bench.sh
PB=${PROXYBENCH_BIN:-bin/proxybench}
[ -x "$PB" ] || go build -o "$PB" ./cmd/proxybench
BULK_UP=127.0.0.1:19091
taskset -c "$LOAD_CPU" "$PB" upstream -listen "$BULK_UP" -size 1048576 & pids+=($!)
start_upstream

"$BIN" certs -dir "$W/gm" --gm >/dev/null
"$BIN" certs -dir "$W/ec" -key ecdsa >/dev/null
cat "$W/ec/server.pem" "$W/ec/server-key.pem" > "$W/ec.pem"
G=$W/gm
cat > "$W/proxylab.yaml" <<YML
listeners:
  - name: tlcp
    address: "127.0.0.1:19463"
    tls: {engine: gm, certificates: [{cert_file: "$G/server-sign.pem", key_file: "$G/server-sign-key.pem", enc_cert_file: "$G/server-enc.pem", enc_key_file: "$G/server-enc-key.pem"}]}
    http_proxy: {virtual_hosts: [all]}
  - name: tls
    address: "127.0.0.1:19443"
    tls: {certificates: [{cert_file: "$W/ec/server.pem", key_file: "$W/ec/server-key.pem"}]}
    http_proxy: {virtual_hosts: [all]}
  - {name: tlcp-bulk, address: "127.0.0.1:19464", tls: {engine: gm, certificates: [{cert_file: "$G/server-sign.pem", key_file: "$G/server-sign-key.pem", enc_cert_file: "$G/server-enc.pem", enc_key_file: "$G/server-enc-key.pem"}]}, http_proxy: {virtual_hosts: [bulk]}}
  - {name: tls-bulk, address: "127.0.0.1:19444", tls: {certificates: [{cert_file: "$W/ec/server.pem", key_file: "$W/ec/server-key.pem"}]}, http_proxy: {virtual_hosts: [bulk]}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
  - {name: bulk, domains: ["*"], routes: [{prefix: /, cluster: bulk}]}
clusters:
  - {name: up, hosts: [{address: "$UP"}]}
  - {name: bulk, hosts: [{address: "$BULK_UP"}]}
YML
"$BIN" run -c "$W/proxylab.yaml" --cpus "$PROXY_CPU" --transport "$TRANSPORT" --log-level warn & pids+=($!)
PX=$!
start_haproxy <<HAP
frontend ec
  bind 127.0.0.1:19453 ssl crt $W/ec.pem
  default_backend up
frontend bulk
  bind 127.0.0.1:19454 ssl crt $W/ec.pem
  default_backend bulk
backend up
  server up $UP
backend bulk
  server bulk $BULK_UP
HAP
sleep 1

RESULTS=${RESULTS:-results/$(date +%F)-$(hostname -s)}
mkdir -p "$RESULTS"
REPORT=$RESULTS/bench-gm.md
{
echo "# TLCP (engine gm) vs Go TLS vs haproxy: handshakes and bulk, proxylab ($TRANSPORT)"
echo
echo "- date: $(date -u +%FT%TZ); host: $(hostname -s); kernel: $(uname -r); CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "- proxy pinned to CPU $PROXY_CPU; proxybench clients and upstreams on CPU $LOAD_CPU; $ROUNDS rounds of ${SECS}s cells, interleaved"
echo "- command: TRANSPORT=$TRANSPORT scripts/bench-gm.sh $ROUNDS $SECS"
echo
} | tee "$REPORT"

ROWS=$W/rows
: > "$ROWS"
HSC=${HS_CONNS:-4}
BULKC=${BULK_CONNS:-4}
for r in $(seq 1 "$ROUNDS"); do
  pb_cell tlcp-full "$PX" -- -target 127.0.0.1:19463 -protocol handshake -tls -engine tlcp -tlcp-suite ECC_SM4_GCM_SM3 -c "$HSC"
  pb_cell tlcp-resumed "$PX" -- -target 127.0.0.1:19463 -protocol handshake -tls -engine tlcp -tlcp-suite ECC_SM4_GCM_SM3 -resume -c "$HSC"
  pb_cell tls13-ecdsa-full "$PX" -- -target 127.0.0.1:19443 -protocol handshake -tls -curves X25519 -c "$HSC"
  pb_cell haproxy-tls13-ecdsa-full "$HP" -- -target 127.0.0.1:19453 -protocol handshake -tls -curves X25519 -c "$HSC"
  pb_cell bulk-tlcp-sm4-gcm "$PX" -- -target 127.0.0.1:19464 -tls -engine tlcp -tlcp-suite ECC_SM4_GCM_SM3 -c "$BULKC"
  pb_cell bulk-tlcp-sm4-cbc "$PX" -- -target 127.0.0.1:19464 -tls -engine tlcp -tlcp-suite ECC_SM4_CBC_SM3 -c "$BULKC"
  pb_cell bulk-tls13-aes128-gcm "$PX" -- -target 127.0.0.1:19444 -tls -c "$BULKC"
  pb_cell haproxy-bulk-tls13-aes128-gcm "$HP" -- -target 127.0.0.1:19454 -tls -c "$BULKC"
done
{
echo "## Handshakes: proxy CPU per handshake (proxybench -protocol handshake, $HSC connections)"
echo
echo "| cell | handshakes | errors | µs CPU per handshake (median) | range |"
echo "|---|---|---|---|---|"
pb_summarise '^(tlcp|tls13|haproxy-tls13)' 1e6
echo
echo "## Bulk: 1 MiB responses through the proxy ($BULKC connections): proxy CPU per MiB"
echo
echo "| cell | responses | errors | ms CPU per MiB (median) | range |"
echo "|---|---|---|---|---|"
pb_summarise 'bulk' 1e3
echo
echo "## The engine alone (go test, same run)"
echo
echo "Server CPU per handshake from the server thread's CPU clock (accept and close excluded; \`go test -bench ServerHandshakeCPU ./offload/gm/tlcp\`), and 16 KiB record sealing against gmsm's raw SM4-GCM (\`go test -bench Records\`):"
echo
echo '```'
go test -run XXX -bench 'ServerHandshakeCPU|Records' -benchtime 2000x -benchmem ./offload/gm/tlcp | grep '^Benchmark'
echo '```'
} | tee -a "$REPORT"
echo "bench: report written to $REPORT"
