#!/usr/bin/env bash
# Hot upgrade of a running proxylab, the way an operator does it: start the
# new binary with --upgrade-from, wait until it serves (it has taken the
# listening sockets and the old process stopped accepting), then wait for
# the old process to finish draining and exit. A new binary that fails
# leaves the old one serving; its exit status and log are reported.
#
# Usage: scripts/upgrade.sh -b NEW_BINARY -c CONFIG [-s SOCKET] [-l LOG]
#                           [-t SECONDS] [-- extra `proxylab run` flags]
#   -s  the running process's upgrade socket
#       (default: $XDG_RUNTIME_DIR/proxylab-upgrade.sock, else $TMPDIR or /tmp)
#   -l  the new process's log file (default: proxylab-<date>.log here)
#   -t  how long to wait for the new one to serve and the old one to exit
#       (default 120; make it at least the config's drain_timeout)
# Prints the new process's pid on the last line: "new pid N".
set -euo pipefail

bin="" cfg="" log="" timeout=120
sock="${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/proxylab-upgrade.sock"
sock="${sock//\/\//\/}"
while getopts "b:c:s:l:t:" o; do
  case $o in
    b) bin=$OPTARG ;;
    c) cfg=$OPTARG ;;
    s) sock=$OPTARG ;;
    l) log=$OPTARG ;;
    t) timeout=$OPTARG ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
if [ -z "$bin" ] || [ -z "$cfg" ]; then
  sed -n '2,16p' "$0"
  exit 2
fi
[ -S "$sock" ] || { echo "upgrade: no upgrade socket at $sock (is proxylab running? see --upgrade-socket)" >&2; exit 1; }

now() { date +%s.%N; }
# alive PID: running (a zombie waiting for its parent to reap it has exited).
alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3fs", b - a }'; }

[ -n "$log" ] || log="proxylab-$(date +%Y%m%d-%H%M%S).log"
start=$(now)
# nohup: the new process outlives this script and its terminal.
nohup "$bin" run -c "$cfg" --upgrade-from "$sock" "$@" >"$log" 2>&1 &
new=$!

deadline=$(( $(date +%s) + timeout ))
while ! grep -q 'msg="proxylab started"' "$log"; do
  if ! kill -0 "$new" 2>/dev/null; then
    wait "$new" && status=0 || status=$?
    echo "upgrade: FAILED: the new binary exited with status $status; the old process keeps serving" >&2
    echo "--- $log" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "upgrade: FAILED: the new process (pid $new) did not start within ${timeout}s; stopping it" >&2
    kill -INT "$new" 2>/dev/null || true
    tail -n 20 "$log" >&2
    exit 1
  fi
  sleep 0.05
done
serving=$(since "$start")
old=$(sed -n 's/.*msg="upgrade: received sockets" old_pid=\([0-9]*\).*/\1/p' "$log" | head -n 1)
echo "upgrade: new process $new serves after $serving (took over from pid ${old:-?}; log $log)"

if [ -n "$old" ]; then
  while alive "$old"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "upgrade: the old process $old is still draining after ${timeout}s (it exits at its drain_timeout)" >&2
      echo "new pid $new"
      exit 0
    fi
    sleep 0.05
  done
  echo "upgrade: old process $old exited $(since "$start") after the new binary started"
fi
echo "new pid $new"
