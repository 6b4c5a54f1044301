#!/bin/sh
# =====================================================================
#  NOT FOR PRODUCTION. These keys are published in the Hearth repository:
#  anyone can sign a release manifest that a device built with them trusts.
# =====================================================================
#
# Makes the DEVELOPMENT manifest trust material from the development keys
# beside this script (made by yocto-layer/scripts/make-dev-keys.sh; P-256,
# so the same keys sign both the CMS signature and the manifest):
#   hearth-dev-root.pub.pem      the device's manifest trust anchor
#                                (update_manifest::TrustedRoot)
#   hearth-dev-signing.pub.pem   the release-signing key's public half
#   hearth-dev-keyring.json      key ring v1: the development root certifies
#                                the development signing key, with the dates
#                                of hearth-dev-signing.cert.pem
#
# A vendor makes real keys with hearth-release keygen/certify on an offline
# machine (docs/update-security.md, "Making real keys").
#
# Usage, from the repository root:
#   yocto-layer/meta-hearth/files/dev-keys/make-dev-manifest-keys.sh
# Set HEARTH_RELEASE to a built hearth-release binary to skip cargo.
# Refuses to overwrite; delete the three files first to regenerate. The key
# ring expires with the signing certificate (5 years after make-dev-keys.sh).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
for f in hearth-dev-root.pub.pem hearth-dev-signing.pub.pem hearth-dev-keyring.json; do
    if [ -e "$f" ]; then
        echo "make-dev-manifest-keys.sh: $here/$f exists; delete it first if you really want new ones" >&2
        exit 1
    fi
done
release=${HEARTH_RELEASE:-"cargo run --quiet --manifest-path $here/../../../../Cargo.toml -p hearth-release --"}

openssl pkey -in hearth-dev-root.key.pem -pubout -out hearth-dev-root.pub.pem
openssl pkey -in hearth-dev-signing.key.pem -pubout -out hearth-dev-signing.pub.pem
# Valid as long as the development signing certificate.
days=$(( ( $(date -d "$(openssl x509 -in hearth-dev-signing.cert.pem -noout -enddate | cut -d= -f2)" +%s) - $(date +%s) ) / 86400 ))
$release certify --dev --root hearth-dev-root --key hearth-dev-signing --no-cert \
    --name "Hearth development release signer (NOT FOR PRODUCTION)" \
    --keyring hearth-dev-keyring.json --keyring-days "$days"
chmod 0644 hearth-dev-root.pub.pem hearth-dev-signing.pub.pem hearth-dev-keyring.json
echo "make-dev-manifest-keys.sh: DEVELOPMENT manifest keys written to $here (NOT FOR PRODUCTION)"
