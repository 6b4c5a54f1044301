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

# apt's options for a private state in DIR, for architecture ARCH: one a line.
private_apt_opts() {
    printf '%s\n' -o "Dir::Etc::SourceList=$1/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
        -o "Dir::State::Lists=$1/lists" -o "Dir::Cache=$1/cache" -o "Dir::State::status=$1/status" \
        -o "APT::Architecture=$2" -o "APT::Architectures::=$2" -o Acquire::Languages=none \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root
}

arm64_cache=$here/cache/arm64
apt_dir=$arm64_cache/apt
mapfile -t apt_opts < <(private_apt_opts "$apt_dir" arm64)
apt_ready=0
apt_update() {
    [ "$apt_ready" = 1 ] && return
    need apt-get apt-cache
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    {
        echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main"
        # The image's kernel may come from the security archive (its
        # headers and source for mtd_modules must match it).
        echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main"
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

# Debian's arm64 cloud kernel has no MTD support at all (its Image has NVMe
# and ext4 built in, so the image needs no initramfs; the generic arm64
# kernel has neither built in, nor a CFI flash driver). Without MTD the guest
# cannot reach U-Boot's environment in QEMU's flash, where the layer's
# qemuarm64/fw_env.config says it is (/dev/mtd0). So the few modules that
# make that flash /dev/mtd0 are built here, once, from Debian's own source
# of the same kernel, with Debian's headers for it: the MTD core (with
# /dev/mtdN and the concatenation of QEMU's two flash banks), the CFI probe
# and Intel command set that QEMU's pflash speaks, and the device-tree
# physmap driver (udev loads it for the "cfi-flash" node). A Yocto
# qemuarm64 kernel gets the same options from the layer (meta-hearth-bsp
# recipes-kernel/linux/files/qemuarm64-mtd.cfg). Prints the folder with the
# .ko files.
mtd_modules_rev=2
mtd_modules() {
    local kver=$1 pkgver=$2 dir
    dir=$arm64_cache/mtd-$kver-$pkgver-$mtd_modules_rev
    if [ -f "$dir/physmap.ko" ]; then
        echo "$dir"
        return
    fi
    need make aarch64-linux-gnu-gcc aarch64-linux-gnu-strip xz dpkg-deb apt-get
    apt_update
    say "building the MTD modules Debian's $kver lacks (once; about a minute)"
    local tmp series hdr
    series=${pkgver%%-*}
    series=${series%.*}
    tmp=$(mktemp -d "$arm64_cache/mtd.XXXXXX")
    (cd "$tmp" && apt-get -q "${apt_opts[@]}" download "linux-headers-$kver=$pkgver" \
        "linux-headers-${kver%-cloud-arm64}-common=$pkgver" "linux-source-$series=$pkgver" >&2) ||
        { rm -rf "$tmp"; die "apt-get download of the headers and source of $kver ($pkgver) failed"; }
    # Kbuild's host tools (fixdep, modpost) for this machine, same version.
    host_apt_update
    (cd "$tmp" && apt-get -q "${host_apt_opts[@]}" download "linux-kbuild-$series:amd64=$pkgver" >&2) ||
        { rm -rf "$tmp"; die "apt-get download linux-kbuild-$series:amd64=$pkgver failed"; }
    local deb
    for deb in "$tmp"/linux-headers-*.deb "$tmp"/linux-kbuild-*.deb; do
        dpkg-deb -x "$deb" "$tmp/root"
    done
    hdr=$tmp/root/usr/src/linux-headers-$kver
    # The headers' Makefile includes the common part by its installed path.
    sed -i "s|/usr/src/|$tmp/root/usr/src/|" "$hdr/Makefile"
    local m=linux-source-$series/drivers/mtd
    dpkg-deb --fsys-tarfile "$tmp"/linux-source-*.deb |
        tar -xO "./usr/src/linux-source-$series.tar.xz" |
        tar -xJ -C "$tmp" "$m/mtdcore.c" "$m/mtdcore.h" "$m/mtdsuper.c" "$m/mtdconcat.c" \
            "$m/mtdpart.c" "$m/mtdchar.c" "$m/chips" "$m/maps" ||
        { rm -rf "$tmp"; die "unpacking the MTD sources of linux-source-$series failed"; }
    mkdir -p "$tmp/build"
    cp "$tmp/$m"/mtd*.[ch] "$tmp/$m"/chips/{chipreg,gen_probe,cfi_util,cfi_probe,cfi_cmdset_0001}.c \
        "$tmp/$m/chips/fwh_lock.h" "$tmp/$m/maps/physmap-core.c" "$tmp/$m"/maps/physmap-*.h "$tmp/build/"
    # The options the cloud kernel's configuration leaves out, for these
    # objects only (the generic arm64 kernel's values, and the two drivers).
    {
        echo 'ccflags-y := -DCONFIG_MTD=1 -DCONFIG_MTD_MAP_BANK_WIDTH_1=1 -DCONFIG_MTD_MAP_BANK_WIDTH_2=1'
        echo 'ccflags-y += -DCONFIG_MTD_MAP_BANK_WIDTH_4=1 -DCONFIG_MTD_CFI_I1=1 -DCONFIG_MTD_CFI_I2=1'
        echo 'ccflags-y += -DCONFIG_MTD_CFI=1 -DCONFIG_MTD_GEN_PROBE=1 -DCONFIG_MTD_CFI_INTELEXT=1'
        echo 'ccflags-y += -DCONFIG_MTD_PHYSMAP_OF=1'
        echo 'obj-m := mtd.o chipreg.o gen_probe.o cfi_util.o cfi_probe.o cfi_cmdset_0001.o physmap.o'
        echo 'mtd-y := mtdcore.o mtdsuper.o mtdconcat.o mtdpart.o mtdchar.o'
        echo 'physmap-y := physmap-core.o'
    } >"$tmp/build/Kbuild"
    make -s -C "$hdr" M="$tmp/build" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- modules >"$tmp/build.log" 2>&1 ||
        { tail -n 30 "$tmp/build.log" >&2; rm -rf "$tmp"; die "building the MTD modules failed (above)"; }
    mkdir -p "$tmp/out"
    # Without their debug information (a tenth of the size), as Debian ships them.
    aarch64-linux-gnu-strip --strip-debug "$tmp"/build/*.ko
    mv "$tmp"/build/*.ko "$tmp/out/"
    # Only the current build is kept: the cache is a cache, not an archive.
    find "$arm64_cache" -maxdepth 1 -name 'mtd-*' -type d -exec rm -rf {} +
    mv "$tmp/out" "$dir"
    rm -rf "$tmp"
    echo "$dir"
}

# This machine's own architecture (kbuild's host tools), in a private apt
# state beside the arm64 one.
host_apt_dir=$arm64_cache/apt-host
mapfile -t host_apt_opts < <(private_apt_opts "$host_apt_dir" amd64)
host_apt_update() {
    mkdir -p "$host_apt_dir/lists/partial" "$host_apt_dir/cache/archives/partial"
    {
        echo "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main"
        echo "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main"
    } >"$host_apt_dir/sources.list"
    : >"$host_apt_dir/status"
    apt-get -q "${host_apt_opts[@]}" update >&2 || die "apt-get update (amd64) failed: is the Debian mirror reachable?"
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
