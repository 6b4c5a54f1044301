#!/bin/sh
# Appends one enrolled device's release-topic grant to a mosquitto ACL file
# made from broker/acl.conf. Reload mosquitto afterwards (SIGHUP).
#
# Usage: broker/acl-add-device.sh ACL_FILE DEVICE_ID MODEL
set -eu
if [ "$#" -ne 3 ]; then
    echo "usage: $0 ACL_FILE DEVICE_ID MODEL" >&2
    exit 64
fi
acl=$1 id=$2 model=$3
for name in "$id" "$model"; do
    if ! printf '%s' "$name" | grep -Eq '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$'; then
        echo "$0: refusing '$name': use 1-64 of A-Z a-z 0-9 . _ -" >&2
        exit 65
    fi
done
if [ "$id" = hearth-fleet-service ]; then
    echo "$0: '$id' is the fleet service's name, not a device id" >&2
    exit 65
fi
printf '\nuser %s\ntopic read hearth/%s/release\n' "$id" "$model" >> "$acl"
