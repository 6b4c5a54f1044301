#!/bin/sh
# =====================================================================
#  NOT FOR PRODUCTION. These keys are published in the Hearth repository:
#  anyone can sign an update that a device built with them installs.
# =====================================================================
#
# Makes the DEVELOPMENT update-signing keys for SWUpdate's CMS signatures:
#   hearth-dev-root.cert.pem      trust anchor, installed into the image
#                                 (HEARTH_SWU_TRUST_CERT, swupdate -k)
#   hearth-dev-root.key.pem       signs the signing certificate only
#   hearth-dev-signing.cert.pem   signs sw-description (HEARTH_SWU_SIGNING_CERT)
#   hearth-dev-signing.key.pem    (HEARTH_SWU_SIGNING_KEY)
#
# A vendor makes real keys with the release tool (hearth-release keygen; see
# docs/update-security.md), keeps the root key offline, and points the
# HEARTH_SWU_* variables at them (yocto-layer/README.md, section Keys).
#
# Usage: make-dev-keys.sh [OUTDIR]   (default: meta-hearth/files/dev-keys)
# Refuses to overwrite existing keys; delete them first to regenerate.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../meta-hearth/files/dev-keys"}
mkdir -p "$out"
cd "$out"

for f in hearth-dev-root.key.pem hearth-dev-signing.key.pem; do
    if [ -e "$f" ]; then
        echo "make-dev-keys.sh: $out/$f exists; delete the old development keys first if you really want new ones" >&2
        exit 1
    fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The root: a self-signed CA that may only certify signing certificates.
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
    -keyout hearth-dev-root.key.pem -out hearth-dev-root.cert.pem -days 3650 \
    -subj "/O=Hearth DEVELOPMENT ONLY/CN=Hearth development update root (NOT FOR PRODUCTION)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# The signing certificate: SWUpdate's CMS check wants digitalSignature and
# the S/MIME (emailProtection) purpose unless told otherwise.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
    -keyout hearth-dev-signing.key.pem -out "$tmp/signing.csr" \
    -subj "/O=Hearth DEVELOPMENT ONLY/CN=Hearth development release signer (NOT FOR PRODUCTION)" 2>/dev/null
cat > "$tmp/ext.cnf" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=emailProtection
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in "$tmp/signing.csr" -CA hearth-dev-root.cert.pem \
    -CAkey hearth-dev-root.key.pem -CAcreateserial -days 1825 \
    -extfile "$tmp/ext.cnf" -out hearth-dev-signing.cert.pem 2>/dev/null
rm -f hearth-dev-root.cert.srl

chmod 0644 ./*.pem
openssl verify -CAfile hearth-dev-root.cert.pem hearth-dev-signing.cert.pem
echo "make-dev-keys.sh: DEVELOPMENT keys written to $out (NOT FOR PRODUCTION)"
