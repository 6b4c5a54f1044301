#!/bin/sh
# ============================================================================
#  NOT FOR PRODUCTION. Development and test PKI for the Hearth fleet broker.
# ============================================================================
# Makes a throw-away CA, a broker certificate for 127.0.0.1/localhost, and one
# client certificate per name given, all with fresh P-256 keys and a 30-day
# life. The tests run it into a temporary directory; nothing it makes is ever
# committed. A vendor's real fleet CA lives offline or in an HSM, signs
# device certificates on the production line (or from CSRs, docs/mqtt.md),
# and never sits next to the broker's configuration like this.
#
# Usage: broker/dev-pki.sh OUT_DIR CLIENT_CN...
#   OUT_DIR/ca.crt                        the CA (the devices' fleet.ca_file
#                                         and the broker's cafile)
#   OUT_DIR/broker.crt, broker.key        the broker's identity (also names
#                                         10.0.2.100, where a QEMU guest reaches
#                                         the host through a guestfwd rule; the
#                                         tests' HTTPS update server uses it too)
#   OUT_DIR/<cn>.crt, <cn>.key            one client identity per CN; a
#                                         device's CN is its device id
set -eu

if [ "$#" -lt 1 ]; then
    echo "usage: $0 OUT_DIR CLIENT_CN..." >&2
    exit 64
fi
out=$1
shift
mkdir -p "$out"
cd "$out"
umask 077

# Device ids become MQTT topic levels and mosquitto usernames: the same
# rule as hearthd's topic check.
for cn in "$@"; do
    if ! printf '%s' "$cn" | grep -Eq '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$'; then
        echo "$0: refusing client name '$cn': use 1-64 of A-Z a-z 0-9 . _ -" >&2
        exit 65
    fi
done

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -out ca.crt -days 30 -sha256 \
    -subj "/O=Hearth development/CN=Hearth DEV fleet CA - NOT FOR PRODUCTION" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"

# sign NAME SUBJECT EXTENSIONS
sign() {
    key "$1.key"
    openssl req -new -key "$1.key" -out "$1.csr" -subj "$2"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out "$1.crt" -days 30 -sha256 -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

sign broker "/O=Hearth development/CN=localhost" \
"basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,IP:10.0.2.100"

for cn in "$@"; do
    sign "$cn" "/O=Hearth development/CN=$cn" \
"basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
done
rm -f ca.srl
