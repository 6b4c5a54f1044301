SUMMARY = "Hearth base system settings shared with the development image"
DESCRIPTION = "Network configuration (DHCP on wired interfaces) for a Hearth device. The mounts of hearth-base/files/fstab are added to /etc/fstab by meta-hearth's base-files bbappend."
HOMEPAGE = "https://example.com/hearth"
BUGTRACKER = "https://example.com/hearth/issues"
SECTION = "base"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - this file is written in this layer, under the common MIT text
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

# The same files qemu/ installs (qemu/layer-files lists where).
SRC_URI = "file://20-hearth-wired.network"

inherit allarch features_check

# systemd-networkd configuration: useless, and unbuildable, without systemd
# (yocto-check-layer's world build with poky's sysvinit found the RDEPENDS).
REQUIRED_DISTRO_FEATURES = "systemd"

S = "${UNPACKDIR}"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -D -m 0644 ${S}/20-hearth-wired.network ${D}${nonarch_libdir}/systemd/network/20-hearth-wired.network
}

FILES:${PN} += "${nonarch_libdir}/systemd/network"

# The .network file is for systemd-networkd.
RDEPENDS:${PN} = "systemd"
