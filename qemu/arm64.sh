# shellcheck shell=bash
# shellcheck disable=SC2154 # here and repo come from the sourcing script
# What the aarch64 scripts (uboot-arm64, board-arm64, build-image --arch
# arm64) share: hearthd cross-built, Debian's arm64 packages and kernel, and
# running QEMU. Sourced, not run; the caller sets `here` (the qemu/ folder)
# and `repo`, and defines say, die and need.
#
# Debian's package archive is used through a private apt state under
# qemu/cache/arm64 (the host's own apt set-up and dpkg are not touched).

# The host packages every aarch64 script needs (the arm64 group of
# qemu/host-packages), installed through qemu/setup-host: nothing to do, and
# no network, when they are all there.
arm64_setup_host() {
    "$here/setup-host" arm64 || die "installing the aarch64 host packages failed (see above)"
}

arm64_cache=$here/cache/arm64
apt_dir=$arm64_cache/apt
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::State::status=$apt_dir/status" -o APT::Architecture=arm64
    -o APT::Architectures::=arm64 -o Acquire::Languages=none
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root
)
apt_ready=0
apt_update() {
    [ "$apt_ready" = 1 ] && return
    need apt-get apt-cache
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    {
        echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main"
        echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main"
    } >"$apt_dir/sources.list"
    : >"$apt_dir/status"
    apt-get -q "${apt_opts[@]}" update >&2 || die "apt-get update (arm64, sources) failed: is the Debian mirror reachable?"
    apt_ready=1
}

# Downloads the arm64 packages PKG... and unpacks them into DIR (no
# maintainer scripts run).
unpack_debs() {
    local dir=$1 tmp deb
    shift
    need dpkg-deb
    apt_update
    tmp=$(mktemp -d "$arm64_cache/debs.XXXXXX")
    (cd "$tmp" && apt-get -q "${apt_opts[@]}" download "$@" >&2) || { rm -rf "$tmp"; die "apt-get download $* failed"; }
    for deb in "$tmp"/*.deb; do
        dpkg-deb -x "$deb" "$dir"
    done
    rm -rf "$tmp"
}

# Debian's arm64 cloud kernel, downloaded once: prints the folder that holds
# Image (Debian's arm64 vmlinuz is already the uncompressed Image booti and
# QEMU's -kernel need) and modules/ (the kernel's modules tree).
kernel_dir() {
    local found
    mkdir -p "$arm64_cache"
    found=$(find "$arm64_cache" -maxdepth 1 -name 'kernel-*' -type d | sort | tail -n 1)
    if [ -n "$found" ] && [ -f "$found/Image" ]; then
        echo "$found"
        return
    fi
    apt_update
    say "fetching Debian's arm64 cloud kernel (once; about 27 MB)"
    local pkg ver tmp
    pkg=$(apt-cache "${apt_opts[@]}" depends linux-image-cloud-arm64 | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n 1)
    [ -n "$pkg" ] || die "cannot tell which kernel linux-image-cloud-arm64 depends on"
    ver=${pkg#linux-image-}
    tmp=$(mktemp -d "$arm64_cache/kernel.XXXXXX")
    unpack_debs "$tmp/root" "$pkg"
    mkdir -p "$tmp/kernel"
    mv "$tmp/root/boot/vmlinuz-$ver" "$tmp/kernel/Image"
    mv "$tmp/root/lib/modules/$ver" "$tmp/kernel/modules"
    rm -rf "$arm64_cache/kernel-$ver"
    mv "$tmp/kernel" "$arm64_cache/kernel-$ver"
    rm -rf "$tmp"
    echo "$arm64_cache/kernel-$ver"
}

# Runs qemu-system-aarch64 ARGS...; with WATCH_PARENT=1 it also stops when
# the caller's parent (a test) goes away, so no QEMU outlives its test.
run_qemu() {
    local watch_parent=$1
    shift
    need qemu-system-aarch64
    if [ "$watch_parent" != 1 ]; then
        exec qemu-system-aarch64 "$@"
    fi
    local parent=$PPID
    qemu-system-aarch64 "$@" &
    local qemu_pid=$!
    (
        while kill -0 "$parent" 2>/dev/null && kill -0 "$qemu_pid" 2>/dev/null; do sleep 1; done
        kill "$qemu_pid" 2>/dev/null || true
    ) &
    wait "$qemu_pid"
}

# HEARTH_ACCEL for an aarch64 guest: kvm only on an arm64 host, else tcg.
# Prints "ACCEL CPU".
accel_and_cpu() {
    local accel=${HEARTH_ACCEL:-tcg}
    if [ "$accel" != tcg ] && [ "$(uname -m)" != aarch64 ]; then
        say "HEARTH_ACCEL=$accel cannot run an aarch64 guest on $(uname -m): using tcg"
        accel=tcg
    fi
    if [ "$accel" = kvm ]; then echo "kvm host"; else echo "$accel cortex-a57"; fi
}

# hearthd cross-built for aarch64 (release, with Debian's
# gcc-aarch64-linux-gnu as linker) in its own target dir, beside the host's
# build: prints the binary's path.
rust_target=aarch64-unknown-linux-gnu
arm64_cargo_dir() { echo "${CARGO_TARGET_DIR:-$repo/target}/arm64"; }
arm64_target_dir() { echo "$(arm64_cargo_dir)/$rust_target"; }
cross_build() {
    need aarch64-linux-gnu-gcc cargo rustup
    rustup target list --installed | grep -qx "$rust_target" || rustup target add "$rust_target" >&2
    say "hearthd, hearth-update-gate: cargo build --release --target $rust_target (the first build takes minutes)"
    (
        cd "$repo"
        # Run from a test (tests/system/board.rs), the environment holds the
        # test's CARGO_PKG_*, CARGO_MANIFEST_* and OUT_DIR; ring's build
        # script tracks them, so cargo would rebuild ring and all above it.
        for v in $(compgen -e); do
            case "$v" in CARGO_PKG_* | CARGO_MANIFEST_* | CARGO_CRATE_NAME | CARGO_BIN_* | \
                CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | OUT_DIR) unset "$v" ;; esac
        done
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
        export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
        CARGO_TARGET_DIR=$(arm64_cargo_dir) cargo build --release --locked -p hearthd -p update-gate --target "$rust_target" >&2
    ) || die "cross-building hearthd failed (see above)"
    echo "$(arm64_target_dir)/release/hearthd"
}
