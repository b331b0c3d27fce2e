#!/usr/bin/env bash
# Intercepts a network namespace's TCP traffic for a proxylab sidecar, as
# Istio's iptables setup does (see docs/sidecar.md):
#   outbound: nat OUTPUT REDIRECT to OUT_PORT (the proxy reads the original
#             destination with SO_ORIGINAL_DST: listener original_dst: true);
#   inbound:  mangle PREROUTING TPROXY to IN_PORT with mark MARK, delivered
#             locally by a policy route (listener original_dst: true,
#             transparent: true; the local address is the destination).
# The proxy's own traffic is exempt by its group (PROXY_GID; run proxylab
# with that gid), so its upstream connections are not looped back to it;
# loopback destinations and EXCLUDE_PORTS (inbound, e.g. ssh) are left alone.
#
# Usage: scripts/intercept.sh up|down NETNS
#   env: OUT_PORT (15001) IN_PORT (15006) PROXY_GID (1337) MARK (0x539)
#        TABLE (133) EXCLUDE_PORTS ("": space separated inbound ports)
#        EXCLUDE_OUT_PORTS ("": space separated outbound destination ports)
set -euo pipefail
cmd=${1:?usage: intercept.sh up|down NETNS}
ns=${2:?usage: intercept.sh up|down NETNS}
OUT_PORT=${OUT_PORT:-15001}
IN_PORT=${IN_PORT:-15006}
PROXY_GID=${PROXY_GID:-1337}
MARK=${MARK:-0x539}
TABLE=${TABLE:-133}
EXCLUDE_PORTS=${EXCLUDE_PORTS:-}
EXCLUDE_OUT_PORTS=${EXCLUDE_OUT_PORTS:-}

in_ns() { ip netns exec "$ns" "$@"; }

down() {
  for t in nat mangle; do
    for c in PROXYLAB_OUT PROXYLAB_IN; do
      in_ns iptables -t "$t" -D OUTPUT -p tcp -j "$c" 2>/dev/null || true
      in_ns iptables -t "$t" -D PREROUTING -p tcp -j "$c" 2>/dev/null || true
      in_ns iptables -t "$t" -F "$c" 2>/dev/null || true
      in_ns iptables -t "$t" -X "$c" 2>/dev/null || true
    done
  done
  in_ns ip rule del fwmark "$MARK" lookup "$TABLE" 2>/dev/null || true
  in_ns ip route flush table "$TABLE" 2>/dev/null || true
}

up() {
  down
  # Outbound: everything the namespace's processes dial, but the proxy's
  # own connections and loopback, goes to OUT_PORT.
  in_ns iptables -t nat -N PROXYLAB_OUT
  in_ns iptables -t nat -A PROXYLAB_OUT -m owner --gid-owner "$PROXY_GID" -j RETURN
  in_ns iptables -t nat -A PROXYLAB_OUT -d 127.0.0.0/8 -j RETURN
  for p in $EXCLUDE_OUT_PORTS; do
    in_ns iptables -t nat -A PROXYLAB_OUT -p tcp --dport "$p" -j RETURN
  done
  in_ns iptables -t nat -A PROXYLAB_OUT -p tcp -j REDIRECT --to-ports "$OUT_PORT"
  in_ns iptables -t nat -A OUTPUT -p tcp -j PROXYLAB_OUT
  # Inbound: connections arriving from outside go to IN_PORT unchanged
  # (TPROXY keeps the destination address); the mark routes them locally.
  in_ns iptables -t mangle -N PROXYLAB_IN
  in_ns iptables -t mangle -A PROXYLAB_IN -i lo -j RETURN
  # Packets of known connections (replies to the proxy's own upstream
  # connections, later segments of intercepted ones) go to their socket:
  # marked for the local route, not diverted (TPROXY would drop a reply
  # whose socket is not transparent). Only new connections are diverted.
  in_ns iptables -t mangle -A PROXYLAB_IN -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j MARK --set-xmark "$MARK/$MARK"
  in_ns iptables -t mangle -A PROXYLAB_IN -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
  for p in $EXCLUDE_PORTS; do
    in_ns iptables -t mangle -A PROXYLAB_IN -p tcp --dport "$p" -j RETURN
  done
  in_ns iptables -t mangle -A PROXYLAB_IN -p tcp -j TPROXY --on-port "$IN_PORT" --tproxy-mark "$MARK/$MARK"
  in_ns iptables -t mangle -A PREROUTING -p tcp -j PROXYLAB_IN
  in_ns ip rule add fwmark "$MARK" lookup "$TABLE"
  in_ns ip route add local 0.0.0.0/0 dev lo table "$TABLE"
}

case "$cmd" in
up) up ;;
down) down ;;
*) echo "intercept.sh: unknown command $cmd (up|down)" >&2; exit 2 ;;
esac
