SUMMARY = "Hearth update gate: SWUpdate never installs below the running version"
DESCRIPTION = "hearth-update-gate stands between hearthd and SWUpdate's IPC sockets. It forwards only the requests hearthd makes, raises every version range to at least the running version (os-release IMAGE_VERSION) and passes the image stream through unchanged, so a compromised hearthd cannot install an older signed release. It runs as its own unprivileged user in group swupdate, socket-activated."
BUGTRACKER = "https://example.com/hearth/issues"
SECTION = "admin"
CVE_PRODUCT = "hearth-update-gate"

require recipes-core/hearthd/hearth-source.inc

# The units and the user snippet are shared with the development image
# (qemu/), which copies them from this folder.
SRC_URI += "\
    file://hearth-update-gate.socket \
    file://hearth-update-gate.service \
    file://hearth-update-gate.sysusers.conf \
"

inherit systemd useradd

# Build only the gate out of the workspace.
CARGO_SRC_DIR = "crates/update-gate"
CARGO_BUILD_FLAGS += "--bin hearth-update-gate"

# The account must exist at build time (read-only rootfs); it matches
# hearth-update-gate.sysusers.conf. Group hearth (hearthd's) owns the gate's
# sockets; group swupdate owns SWUpdate's.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system hearth-update-gate; --system swupdate; --system hearth"
USERADD_PARAM:${PN} = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --gid hearth-update-gate --groups swupdate --comment 'Hearth update gate' hearth-update-gate"

SYSTEMD_SERVICE:${PN} = "hearth-update-gate.socket"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_install:append() {
    install -D -m 0644 ${UNPACKDIR}/hearth-update-gate.socket ${D}${systemd_system_unitdir}/hearth-update-gate.socket
    install -D -m 0644 ${UNPACKDIR}/hearth-update-gate.service ${D}${systemd_system_unitdir}/hearth-update-gate.service
    install -D -m 0644 ${UNPACKDIR}/hearth-update-gate.sysusers.conf ${D}${nonarch_libdir}/sysusers.d/hearth-update-gate.conf
}

FILES:${PN} += "${nonarch_libdir}/sysusers.d/hearth-update-gate.conf"

# SWUpdate is what the gate talks to.
RDEPENDS:${PN} += "swupdate"
