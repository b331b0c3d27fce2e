# Shared by the bench scripts: an nginx upstream, CPU accounting from /proc,
# interleaved rounds, and a markdown report with ratios paired within rounds.
# Source it from the repository root after setting ROUNDS and SECS; it sets
# the defaults of PROXY_CPU LOAD_CPU CONNS and builds $BIN when missing.

PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
CONNS=${CONNS:-50}
BIN=${PROXYLAB_BIN:-bin/proxylab}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/proxylab
for t in wrk nginx taskset curl; do command -v $t >/dev/null || { echo "bench: $t missing (make deps)"; exit 1; }; done
W=$(mktemp -d /tmp/proxylab-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
HZ=$(getconf CLK_TCK)
UP=${UP:-127.0.0.1:19090}

# start_upstream: nginx answering every request with a 20-byte body, on the
# load CPU.
start_upstream() {
  mkdir -p "$W/nginx-up/logs"
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
}

# start_haproxy: haproxy on the proxy CPU, one thread, HTTP mode, with the
# frontends and backends read from stdin; sets HP.
start_haproxy() {
  {
    printf '%s\n' "global" "  nbthread 1" "  maxconn 8000" "  tune.ssl.default-dh-param 2048" \
      "defaults" "  mode http" "  timeout connect 5s" "  timeout client 60s" "  timeout server 60s"
    cat
  } > "$W/haproxy.cfg"
  taskset -c "$PROXY_CPU" haproxy -f "$W/haproxy.cfg" -db & pids+=($!)
  HP=$!
}

# ticks PID: the process's CPU time in clock ticks, its children included
# (nginx runs a worker process).
ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    set -- $(awk '{print $14, $15}' /proc/$p/stat 2>/dev/null || echo 0 0)
    total=$((total + $1 + $2))
  done
  echo $total
}

# run_matrix: SYS (name → "pid port [scheme]") and ORDER (names) must be set. Warms
# each system up, then runs ROUNDS interleaved rounds; rows go to $OUT as
# "round name req/s cpu-us/req p99 errors".
run_matrix() {
  OUT=$W/rows
  : > "$OUT"
  local name pid port scheme res reqs errs p99 us rps t0 t1 r
  for name in "${ORDER[@]}"; do
    set -- ${SYS[$name]}
    curl -skf "${3:-http}://127.0.0.1:$2/" >/dev/null || { echo "bench: $name not answering on :$2, skipped"; SYS[$name]=""; continue; }
    taskset -c "$LOAD_CPU" wrk -t1 -c$CONNS -d1s "${3:-http}://127.0.0.1:$2/" >/dev/null
  done
  for r in $(seq 1 "$ROUNDS"); do
    for name in "${ORDER[@]}"; do
      [ -n "${SYS[$name]}" ] || continue
      set -- ${SYS[$name]}
      pid=$1 port=$2 scheme=${3:-http}
      t0=$(ticks "$pid")
      res=$(taskset -c "$LOAD_CPU" wrk -t1 -c$CONNS -d${SECS}s --latency "$scheme://127.0.0.1:$port/")
      t1=$(ticks "$pid")
      reqs=$(echo "$res" | awk '/requests in/ {print $1}')
      errs=$(echo "$res" | awk '/Socket errors|Non-2xx/ {e=e" "$0} END {print e}')
      p99=$(echo "$res" | awk '$1=="99%" {print $2}')
      us=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
      rps=$(awk -v n="$reqs" -v s="$SECS" 'BEGIN {printf "%.0f", n / s}')
      echo "$r $name $rps $us $p99 ${errs:-none}" | tee -a "$OUT"
    done
  done
}

# report TITLE BASELINE_FN COMMAND: writes the markdown report to stdout.
# BASELINE_FN NAME prints the name of the system NAME is compared with.
report() {
  local title=$1 basefn=$2 cmd=$3 name us rps p99 ratio
  echo "# $title"
  echo
  echo "- date: $(date -u +%FT%TZ); host: $(hostname -s); kernel: $(uname -r)"
  echo "- CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); $(nproc) CPUs; governor: $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo n/a)"
  echo "- proxy pinned to CPU $PROXY_CPU; wrk and nginx upstream on CPU $LOAD_CPU; $CONNS connections; ${SECS}s per cell; $ROUNDS rounds interleaved"
  echo "- command: $cmd"
  echo
  echo "Raw rows (round system req/s cpu-us/req p99 errors):"
  echo
  echo '```'
  cat "$OUT"
  echo '```'
  echo
  echo "Ratios are paired within each round (system / baseline, same round), then the median and range over rounds."
  echo
  echo "| system | rounds | req/s (median) | proxy CPU µs/req (median) | p99 (median) | CPU ratio vs baseline: median (min–max) |"
  echo "|---|---|---|---|---|---|"
  for name in "${ORDER[@]}"; do
    grep -q " $name " "$OUT" || continue
    us=$(grep " $name " "$OUT" | awk '{print $4}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    rps=$(grep " $name " "$OUT" | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    p99=$(grep " $name " "$OUT" | awk '{print $5}' | sort -h | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    ratio=$(awk -v s="$name" -v b="$($basefn "$name")" '
        $2 == s {x[$1] = $4} $2 == b {y[$1] = $4}
        END { n = 0; for (r in x) if (r in y && y[r] > 0) v[++n] = x[r] / y[r];
              if (n == 0) { print "-"; exit }
              for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
              printf "%.3f (%.3f–%.3f)", v[int((n + 1) / 2)], v[1], v[n] }' "$OUT")
    echo "| $name | $ROUNDS | $rps | $us | $p99 | $ratio |"
  done
}

# pb_cell NAME PID -- PROXYBENCH-LOAD-ARGS: one proxybench load of SECS,
# appending "NAME requests cpu-ticks errors" (PID's CPU over the cell) to
# $ROWS. Needs PB (the proxybench binary).
pb_cell() {
  local name=$1 pid=$2; shift 3
  local t0 t1 out n e
  t0=$(ticks "$pid")
  out=$(taskset -c "$LOAD_CPU" "$PB" load -json -d "${SECS}s" "$@" || true)
  t1=$(ticks "$pid")
  n=$(echo "$out" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p')
  e=$(echo "$out" | sed -n 's/.*"errors":\([0-9]*\).*/\1/p')
  [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "bench: $name failed: $out" >&2; return 0; }
  echo "$name $n $((t1 - t0)) $e" >> "$ROWS"
}

# pb_summarise PATTERN SCALE: a markdown row per cell name matching
# PATTERN in $ROWS: requests, errors, then the median and range over rounds
# of CPU per request times SCALE (1e6: µs; 1e3: ms), and the median rate.
pb_summarise() {
  local pattern=$1 scale=$2 name
  for name in $(awk -v p="$pattern" '$1 ~ p {print $1}' "$ROWS" | awk '!seen[$0]++'); do
    awk -v n="$name" -v hz="$HZ" -v sc="$scale" -v s="$SECS" '$1 == n {k++; v[k] = $3 / hz * sc / $2; tot += $2; err += $4} END {
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      m = v[int((k + 1) / 2)]
      printf "| %s | %d | %d | %.1f | %.1f–%.1f |\n", n, tot, err, m, v[1], v[k] }' "$ROWS"
  done
}
