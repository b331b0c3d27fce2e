#!/usr/bin/env bash
# Installs what the tests and benchmarks need, if missing: Debian packages
# (when root) and nothing else. Prints what it does; safe to run repeatedly.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }

# h2spec (HTTP/2 conformance, cmd/proxylab TestH2Spec) is a Go module, not a
# Debian package: installed with go install at a pinned version.
H2SPEC_VERSION="v2.2.1+incompatible"
if ! have h2spec && have go && [ ! -x "$(go env GOPATH)/bin/h2spec" ]; then
  echo "install-deps: go install github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION"
  go install "github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION"
fi
have haproxy || need+=(haproxy)
have nginx || need+=(nginx)
have wrk || need+=(wrk)
have curl || need+=(curl)
have h2load || need+=(nghttp2-client)
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
# The DPDK transport (-tags dpdk) and its namespace/veth test.
have pkg-config || need+=(pkg-config)
pkg-config --exists libdpdk 2>/dev/null || need+=(libdpdk-dev)
have ethtool || need+=(ethtool)
have ip || need+=(iproute2)
have gcc || need+=(gcc) # cgo for -tags dpdk and PKCS#11 keys
# Sidecar interception tests (TestSidecarIntercept: REDIRECT and TPROXY in a
# namespace) and scripts/intercept.sh.
have iptables || need+=(iptables)
# PKCS#11 keys (offload/pkcs11): SoftHSM2 as the test token, openssl for
# scripts/softhsm-init.sh's keys and certificates.
[ -f /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
have openssl || need+=(openssl)

if [ ${#need[@]} -eq 0 ]; then
  echo "install-deps: all present (haproxy nginx nginx-stream wrk curl h2load libdpdk-dev ethtool iproute2 softhsm2 openssl iptables)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing ${need[*]}; not root, so tests that need them will skip" >&2
  exit 0
fi
if ! have go; then
  echo "install-deps: go is not on PATH" >&2
  exit 1
fi
echo "install-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian packages start system services; the tests run their own.
for svc in nginx haproxy; do
  if have systemctl; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
  service "$svc" stop >/dev/null 2>&1 || true
done
echo "install-deps: done"
