SUMMARY = "Hearth operating-system hardening shared with the development image"
DESCRIPTION = "Kernel settings (sysctl.d), modules the device never loads (modprobe.d: dccp, sctp, rds, tipc, USB storage, FireWire) and no core dumps (systemd manager and coredump drop-ins, pam_limits). docs/hardening.md gives the reason for each line."
HOMEPAGE = "https://example.com/hearth"
BUGTRACKER = "https://example.com/hearth/issues"
SECTION = "base"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - these files are written in this layer, under the common MIT text
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

# The same files qemu/ installs (qemu/layer-files lists where).
SRC_URI = "\
    file://99-zz-hearth-hardening.conf \
    file://hearth-hardening.modprobe.conf \
    file://hearth-hardening.system.conf \
    file://hearth-hardening.coredump.conf \
    file://hearth-hardening.limits.conf \
"

inherit allarch features_check

# systemd-sysctl applies the sysctl.d file and the drop-ins are systemd's.
REQUIRED_DISTRO_FEATURES = "systemd"

S = "${UNPACKDIR}"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -D -m 0644 ${S}/99-zz-hearth-hardening.conf ${D}${nonarch_libdir}/sysctl.d/99-zz-hearth-hardening.conf
    # /etc/modprobe.d: where lynis looks (kmod also reads /usr/lib/modprobe.d).
    install -D -m 0644 ${S}/hearth-hardening.modprobe.conf ${D}${sysconfdir}/modprobe.d/hearth-hardening.conf
    install -D -m 0644 ${S}/hearth-hardening.system.conf ${D}${nonarch_libdir}/systemd/system.conf.d/hearth-hardening.conf
    install -D -m 0644 ${S}/hearth-hardening.coredump.conf ${D}${nonarch_libdir}/systemd/coredump.conf.d/hearth-hardening.conf
    install -D -m 0644 ${S}/hearth-hardening.limits.conf ${D}${sysconfdir}/security/limits.d/hearth-hardening.conf
}

FILES:${PN} += "\
    ${nonarch_libdir}/sysctl.d \
    ${nonarch_libdir}/systemd/system.conf.d \
    ${nonarch_libdir}/systemd/coredump.conf.d \
"

RDEPENDS:${PN} = "systemd"
