#!/usr/bin/env bash
# Proxy CPU per request, proxylab vs haproxy (and nginx), measured in one run.
#
# Systems: proxylab-* is proxylab on the netpoll transport, rawepoll-* the same
# binary with --transport rawepoll.
#
# Setup (the DESIGN.md reference): HTTP/1.1 keep-alive, 50 connections, 20-byte
# response; the proxy pinned to one CPU, wrk and the upstream (nginx) on
# another. Rounds are interleaved (A B C A B C …) so drift hits all alike.
# Proxy CPU per request = the proxy processes' utime+stime delta / requests.
#
# Usage: scripts/bench-h1.sh [ROUNDS] [SECONDS]     env: PROXY_CPU LOAD_CPU
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-8}
cd "$(dirname "$0")/.."
command -v haproxy >/dev/null || { echo "bench: haproxy missing (make deps)"; exit 1; }
. scripts/lib/bench.sh
start_upstream

mkdir -p "$W/nginx-px/logs"
start_haproxy <<HAP
frontend fe_http
  mode http
  bind 127.0.0.1:19081
  default_backend be_http
backend be_http
  mode http
  http-reuse always
  server up $UP
frontend fe_tcp
  mode tcp
  bind 127.0.0.1:19082
  default_backend be_tcp
backend be_tcp
  mode tcp
  server up $UP
HAP
HAPROXY_PID=$HP

cat > "$W/nginx-px/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $W/nginx-px/nginx.pid;
error_log $W/nginx-px/logs/error.log crit;
load_module modules/ngx_stream_module.so;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream up { server $UP; keepalive 64; }
  server { listen 127.0.0.1:19084; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
stream { server { listen 127.0.0.1:19085; proxy_pass $UP; } }
NGX
NGINX_PID=""
if [ -f /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  taskset -c "$PROXY_CPU" nginx -p /usr/share/nginx -c "$W/nginx-px/nginx.conf" 2>/dev/null & pids+=($!)
  NGINX_PID=$!
else
  sed -i '/load_module/d; /^stream/d' "$W/nginx-px/nginx.conf"
  taskset -c "$PROXY_CPU" nginx -p /usr/share/nginx -c "$W/nginx-px/nginx.conf" 2>/dev/null & pids+=($!)
  NGINX_PID=$!
fi

cat > "$W/proxylab.yaml" <<YML
listeners:
  - {name: http, address: "127.0.0.1:19080", http_proxy: {}}
  - {name: tcp, address: "127.0.0.1:19083", tcp_proxy: {cluster: up}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: "$UP"}]}
YML
"$BIN" run -c "$W/proxylab.yaml" --cpus "$PROXY_CPU" --log-level warn & pids+=($!)
PROXYLAB_PID=$!
# The same proxy on the rawepoll transport (Linux), on its own ports.
sed 's/19080/19086/; s/19083/19087/' "$W/proxylab.yaml" > "$W/proxylab-re.yaml"
RAWEPOLL_PID=""
if "$BIN" run -c "$W/proxylab-re.yaml" --cpus "$PROXY_CPU" --transport rawepoll --log-level warn & then
  pids+=($!); RAWEPOLL_PID=$!
fi
sleep 1

declare -A SYS=( [proxylab-http]="$PROXYLAB_PID 19080" [rawepoll-http]="$RAWEPOLL_PID 19086" [haproxy-http]="$HAPROXY_PID 19081" [nginx-http]="$NGINX_PID 19084"
                 [proxylab-tcp]="$PROXYLAB_PID 19083" [rawepoll-tcp]="$RAWEPOLL_PID 19087" [haproxy-tcp]="$HAPROXY_PID 19082" [nginx-tcp]="$NGINX_PID 19085" )
ORDER=(proxylab-http rawepoll-http haproxy-http nginx-http proxylab-tcp rawepoll-tcp haproxy-tcp nginx-tcp)
RESULTS=${RESULTS:-results/$(date +%F)-$(hostname -s)}
mkdir -p "$RESULTS"
REPORT=$RESULTS/bench-h1.md
run_matrix
vs_haproxy() { echo "haproxy-${1#*-}"; }
report "proxy CPU per request: proxylab vs haproxy vs nginx" vs_haproxy "scripts/bench-h1.sh $ROUNDS $SECS" | tee "$REPORT"
echo "bench: report written to $REPORT"
