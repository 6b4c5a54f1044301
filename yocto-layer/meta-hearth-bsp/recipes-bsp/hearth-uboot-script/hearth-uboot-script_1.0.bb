SUMMARY = "Hearth A/B boot script (boot.scr) for U-Boot with a counted trial boot"
DESCRIPTION = "Fills the board values into boot.cmd and compiles it with mkimage. It boots slot A or B from the U-Boot environment; while SWUpdate's ustate is 1 (installed, not committed) it counts boots and falls back to the other slot once bootlimit is reached."
HOMEPAGE = "https://example.com/hearth"
BUGTRACKER = "https://example.com/hearth/issues"
SECTION = "bootloaders"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - this file is written in this layer, under the common MIT text
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

DEPENDS = "u-boot-mkimage-native"

# Replaces meta-raspberrypi's rpi-u-boot-scr through
# PREFERRED_PROVIDER_u-boot-default-script (conf/hearth-bsp/*.conf).
PROVIDES += "u-boot-default-script"

SRC_URI = "file://boot.cmd"

INHIBIT_DEFAULT_DEPS = "1"

inherit kernel-arch deploy nopackages

S = "${UNPACKDIR}"

# boot.scr is filled with the MACHINE's values (conf/hearth-bsp/<machine>.conf).
PACKAGE_ARCH = "${MACHINE_ARCH}"

# Board values; conf/hearth-bsp/<machine>.conf sets them (KNOBS.md).
HEARTH_BOOTLIMIT ?= "1"
HEARTH_UBOOT_BOOT_IF ?= "mmc"
HEARTH_UBOOT_BOOT_DEV ?= "0"
HEARTH_UBOOT_ROOT_PREFIX ?= "/dev/mmcblk0p"
HEARTH_UBOOT_BOOTARGS ?= ""
HEARTH_UBOOT_FIRMWARE_BOOTARGS ?= "0"
KERNEL_BOOTCMD ?= "booti"

do_configure[noexec] = "1"

do_compile() {
    # setexpr counts in hexadecimal, test -ge compares decimals: equal up to 9.
    case "${HEARTH_BOOTLIMIT}" in
        [1-9]) ;;
        *) bbfatal "HEARTH_BOOTLIMIT is '${HEARTH_BOOTLIMIT}': set it to a number of trial boots from 1 to 9" ;;
    esac
    sed -e 's#@@HEARTH_BOOTLIMIT@@#${HEARTH_BOOTLIMIT}#g' \
        -e 's#@@HEARTH_BOOT_IF@@#${HEARTH_UBOOT_BOOT_IF}#g' \
        -e 's#@@HEARTH_BOOT_DEV@@#${HEARTH_UBOOT_BOOT_DEV}#g' \
        -e 's#@@HEARTH_ROOT_PREFIX@@#${HEARTH_UBOOT_ROOT_PREFIX}#g' \
        -e 's#@@HEARTH_BOOTARGS@@#${HEARTH_UBOOT_BOOTARGS}#g' \
        -e 's#@@HEARTH_FIRMWARE_BOOTARGS@@#${HEARTH_UBOOT_FIRMWARE_BOOTARGS}#g' \
        -e 's#@@KERNEL_IMAGETYPE@@#${KERNEL_IMAGETYPE}#g' \
        -e 's#@@KERNEL_BOOTCMD@@#${KERNEL_BOOTCMD}#g' \
        ${S}/boot.cmd > ${B}/boot.cmd
    if grep -n '@@' ${B}/boot.cmd; then
        bbfatal "boot.cmd still has a placeholder (above): add it to hearth-uboot-script's do_compile"
    fi
    mkimage -A ${UBOOT_ARCH} -T script -C none -n "Hearth A/B boot script" -d ${B}/boot.cmd ${B}/boot.scr
}

do_deploy() {
    install -D -m 0644 ${B}/boot.scr ${DEPLOYDIR}/boot.scr
}

# qemuarm64: runqemu backs QEMU's second flash bank, where U-Boot keeps its
# environment, with this file (QB_OPT_APPEND in conf/hearth-bsp/qemuarm64.conf):
# 64 MiB of erased flash (0xff), so the first boot starts from U-Boot's defaults.
do_deploy:append:qemuarm64() {
    head -c 67108864 /dev/zero | tr '\000' '\377' > ${DEPLOYDIR}/hearth-uboot-env.flash
}
addtask deploy after do_compile before do_build

COMPATIBLE_MACHINE = "^(rpi|qemuarm64)$"
