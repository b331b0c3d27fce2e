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
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
CONNS=${CONNS:-50}
cd "$(dirname "$0")/.."
BIN=${PROXYLAB_BIN:-bin/proxylab}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/proxylab
for t in wrk haproxy nginx taskset; do command -v $t >/dev/null || { echo "bench: $t missing (make deps)"; exit 1; }; done

W=$(mktemp -d /tmp/proxylab-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

UP=127.0.0.1:19090
mkdir -p "$W/nginx-up/logs" "$W/nginx-px/logs"
cat > "$W/nginx-up/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $W/nginx-up/nginx.pid;
error_log $W/nginx-up/logs/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen $UP; location / { return 200 "01234567890123456789"; } }
}
NGX
taskset -c "$LOAD_CPU" nginx -p "$W/nginx-up" -c "$W/nginx-up/nginx.conf" & pids+=($!)

cat > "$W/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 8000
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
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
taskset -c "$PROXY_CPU" haproxy -f "$W/haproxy.cfg" -db & pids+=($!)
HAPROXY_PID=$!

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

# The process's CPU time in clock ticks, summed over the master's children
# too (nginx runs a worker process).
ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    set -- $(awk '{print $14, $15}' /proc/$p/stat 2>/dev/null || echo 0 0)
    total=$((total + $1 + $2))
  done
  echo $total
}
HZ=$(getconf CLK_TCK)

declare -A SYS=( [proxylab-http]="$PROXYLAB_PID 19080" [rawepoll-http]="$RAWEPOLL_PID 19086" [haproxy-http]="$HAPROXY_PID 19081" [nginx-http]="$NGINX_PID 19084"
                 [proxylab-tcp]="$PROXYLAB_PID 19083" [rawepoll-tcp]="$RAWEPOLL_PID 19087" [haproxy-tcp]="$HAPROXY_PID 19082" [nginx-tcp]="$NGINX_PID 19085" )
ORDER=(proxylab-http rawepoll-http haproxy-http nginx-http proxylab-tcp rawepoll-tcp haproxy-tcp nginx-tcp)
OUT=$W/rows
: > "$OUT"
RESULTS=${RESULTS:-results/$(date +%F)-$(hostname -s)}
mkdir -p "$RESULTS"
REPORT=$RESULTS/bench-h1.md
for name in "${ORDER[@]}"; do   # warm-up
  set -- ${SYS[$name]}
  curl -sf "http://127.0.0.1:$2/" >/dev/null || { echo "bench: $name not answering on :$2, skipped"; SYS[$name]=""; continue; }
  taskset -c "$LOAD_CPU" wrk -t1 -c$CONNS -d1s "http://127.0.0.1:$2/" >/dev/null
done
for r in $(seq 1 "$ROUNDS"); do
  for name in "${ORDER[@]}"; do
    [ -n "${SYS[$name]}" ] || continue
    set -- ${SYS[$name]}
    pid=$1 port=$2
    t0=$(ticks "$pid")
    res=$(taskset -c "$LOAD_CPU" wrk -t1 -c$CONNS -d${SECS}s --latency "http://127.0.0.1:$port/")
    t1=$(ticks "$pid")
    reqs=$(echo "$res" | awk '/requests in/ {print $1}')
    errs=$(echo "$res" | awk '/Socket errors|Non-2xx/ {e=e" "$0} END {print e}')
    p99=$(echo "$res" | awk '$1=="99%" {print $2}')
    us=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
    rps=$(awk -v n="$reqs" -v s="$SECS" 'BEGIN {printf "%.0f", n / s}')
    echo "$r $name $rps $us $p99 ${errs:-none}" | tee -a "$OUT"
  done
done

{
echo "# proxy CPU per request: proxylab vs haproxy vs nginx"
echo
echo "- date: $(date -u +%FT%TZ); host: $(hostname -s); kernel: $(uname -r)"
echo "- CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); $(nproc) CPUs; governor: $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo n/a)"
echo "- proxy pinned to CPU $PROXY_CPU; wrk and nginx upstream on CPU $LOAD_CPU; $CONNS connections; ${SECS}s per cell; $ROUNDS rounds interleaved"
echo "- proxylab $("$BIN" version | awk '{print $2}'); $(haproxy -v 2>/dev/null | head -1); $(nginx -v 2>&1)"
echo "- command: scripts/bench-h1.sh $ROUNDS $SECS"
echo
echo "Raw rows (round system req/s cpu-us/req p99 errors):"
echo
echo '```'
cat "$OUT"
echo '```'
echo
echo "Ratios are paired within each round (system / haproxy, same round), then the median and range over rounds."
echo
echo "| system | rounds | req/s (median) | proxy CPU µs/req (median) | p99 (median) | CPU ratio vs haproxy: median (min–max) |"
echo "|---|---|---|---|---|---|"
for name in "${ORDER[@]}"; do
  grep -q " $name " "$OUT" || continue
  mode=${name#*-}
  med() { grep " $1 " "$OUT" | awk -v c="$2" '{print $c}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  us=$(med "$name" 4); rps=$(med "$name" 3)
  p99=$(grep " $name " "$OUT" | awk '{print $5}' | sort -h | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  ratio=$(awk -v s="$name" -v b="haproxy-$mode" '
      $2 == s {x[$1] = $4} $2 == b {y[$1] = $4}
      END { n = 0; for (r in x) if (r in y && y[r] > 0) v[++n] = x[r] / y[r];
            if (n == 0) { print "-"; exit }
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            printf "%.2f (%.2f–%.2f)", v[int((n + 1) / 2)], v[1], v[n] }' "$OUT")
  echo "| $name | $ROUNDS | $rps | $us | $p99 | $ratio |"
done
} | tee "$REPORT"
echo "bench: report written to $REPORT"
