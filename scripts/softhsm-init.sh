#!/usr/bin/env bash
# Creates a SoftHSM2 token for PKCS#11 tests and demos, in DIR (a new temp
# directory when not given), and prints the settings to use:
#   DIR/softhsm2.conf   export SOFTHSM2_CONF=DIR/softhsm2.conf
#   DIR/pin             the user PIN (pin_file)
#   token "proxylab" holding two key pairs generated outside and imported:
#     label ec  id 01   ECDSA P-256   certificate DIR/ec.pem
#     label rsa id 02   RSA-2048      certificate DIR/rsa.pem
#   DIR/ca.pem          the test CA that signed both (SANs localhost, 127.0.0.1)
# The private keys' PEM files are deleted once imported.
set -euo pipefail
dir=${1:-$(mktemp -d -t softhsm-XXXXXX)}
module=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
command -v softhsm2-util >/dev/null || { echo "softhsm-init: softhsm2-util missing (make deps installs softhsm2)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "softhsm-init: openssl missing" >&2; exit 1; }
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = true
CONF
export SOFTHSM2_CONF=$dir/softhsm2.conf
pin=1234
printf '%s\n' "$pin" >"$dir/pin"
chmod 600 "$dir/pin"
softhsm2-util --init-token --free --label proxylab --pin "$pin" --so-pin 5678 >/dev/null

cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.pem \
  -days 30 -subj "/CN=proxylab softhsm test CA" 2>/dev/null
issue() { # name keyargs...
  local name=$1; shift
  openssl genpkey "$@" -out "$name-key.pem" 2>/dev/null
  openssl req -new -key "$name-key.pem" -subj "/CN=localhost" -out "$name.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
    -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
issue ec -algorithm EC -pkeyopt ec_paramgen_curve:P-256
issue rsa -algorithm RSA -pkeyopt rsa_keygen_bits:2048
softhsm2-util --import ec-key.pem --token proxylab --label ec --id 01 --pin "$pin" >/dev/null
softhsm2-util --import rsa-key.pem --token proxylab --label rsa --id 02 --pin "$pin" >/dev/null
rm -f ec-key.pem rsa-key.pem ca-key.pem ca.srl
echo "SOFTHSM2_CONF=$dir/softhsm2.conf"
echo "module: $module"
echo "token_label: proxylab  pin_file: $dir/pin"
echo "keys: {key_label: ec, cert_file: $dir/ec.pem} {key_label: rsa, cert_file: $dir/rsa.pem}"
