#!/bin/bash
# Fill the sw-description template the way meta-swupdate's swupdate class
# does for hearth-update (@@VAR@@ values, then $swupdate_get_sha256(file)),
# sign it with the development keys (the class's openssl cms command), pack a
# .swu (sw-description, sw-description.sig, image; cpio crc) and let the real
# swupdate check it (-c: parse, verify the signature, check the hardware;
# nothing is installed). Then make sure swupdate refuses the same bundle for
# another board, another hardware revision and with a tampered sw-description.
#
# usage: check-sw-description.sh YOCTO_LAYER_DIR
set -eu

top=$1
keys=$top/meta-hearth/files/dev-keys
template=$top/meta-hearth/recipes-core/hearth-update/files/sw-description
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

model=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["product"]["model"])' \
    "$top/meta-hearth/recipes-core/hearth-vendor/files/vendor.toml")
rev=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["product"]["hardware_revision"])' \
    "$top/meta-hearth/recipes-core/hearth-vendor/files/vendor.toml")-qemux86-64
image=hearth-image-qemux86-64.rootfs.ext4.zst

# A stand-in rootfs: its content does not matter to -c, its hash does.
head -c 1048576 /dev/urandom > "$tmp/rootfs.ext4"
zstd -q "$tmp/rootfs.ext4" -o "$tmp/$image"
sha=$(sha256sum "$tmp/$image" | cut -d' ' -f1)

sed -e "s#@@HEARTH_FIRMWARE_VERSION@@#0.1.0#g" \
    -e "s#@@HEARTH_SWU_DESCRIPTION@@#Hearth 0.1.0 for qemux86-64 (scripts/check)#g" \
    -e "s#@@HEARTH_SWU_BOARD@@#$model#g" \
    -e "s#@@HEARTH_SWU_HW_COMPATIBILITY@@#\"$rev\"#g" \
    -e "s#@@HEARTH_SWU_ROOTFS_FILE@@#$image#g" \
    -e "s#@@HEARTH_SLOT_A_DEVICE@@#/dev/disk/by-partlabel/hearth-a#g" \
    -e "s#@@HEARTH_SLOT_B_DEVICE@@#/dev/disk/by-partlabel/hearth-b#g" \
    -e "s#\$swupdate_get_sha256($image)#$sha#g" \
    "$template" > "$tmp/sw-description"
if grep -n -e '@@' -e "\$swupdate_get_sha256(" "$tmp/sw-description"; then
    echo "check-sw-description: a placeholder is left (above)" >&2
    exit 1
fi

pack() {  # pack OUT.swu from sw-description in $tmp
    openssl cms -sign -in "$tmp/sw-description" -out "$tmp/sw-description.sig" \
        -signer "$keys/hearth-dev-signing.cert.pem" -inkey "$keys/hearth-dev-signing.key.pem" \
        -outform DER -nosmimecap -binary
    (cd "$tmp" && printf '%s\n' sw-description sw-description.sig "$image" | cpio -o -H crc --quiet > "$1")
}

run() {  # run SWU BOARD:REV -> swupdate's exit status; output in $tmp/log
    swupdate -c -v -i "$1" -k "$keys/hearth-dev-root.cert.pem" -e stable,copy2 -H "$2" > "$tmp/log" 2>&1
}
why() {  # swupdate's first error, to show it refused for the right reason
    grep -m 1 -E 'ERROR|error' "$tmp/log" | sed 's/^/    swupdate: /'
}

pack "$tmp/good.swu"
if ! run "$tmp/good.swu" "$model:$rev"; then
    cat "$tmp/log" >&2
    echo "check-sw-description: swupdate refused the filled template for $model:$rev" >&2
    exit 1
fi
echo "swupdate -c accepts the bundle for $model:$rev (stable,copy2)"

status=0
if run "$tmp/good.swu" "OTHER-MODEL:$rev"; then echo "check-sw-description: accepted on another board" >&2; status=1;
else echo "refused on another board (OTHER-MODEL:$rev)"; why; fi
if run "$tmp/good.swu" "$model:Z-other"; then echo "check-sw-description: accepted on another hardware revision" >&2; status=1;
else echo "refused on another hardware revision ($model:Z-other)"; why; fi

# Tampered: the signature no longer matches sw-description.
pack "$tmp/signed.swu"
sed -i 's/"0.1.0"/"9.9.9"/' "$tmp/sw-description"
(cd "$tmp" && printf '%s\n' sw-description sw-description.sig "$image" | cpio -o -H crc --quiet > tampered.swu)
if run "$tmp/tampered.swu" "$model:$rev"; then echo "check-sw-description: accepted a tampered sw-description" >&2; status=1;
else echo "refused a tampered sw-description"; why; fi
exit $status
