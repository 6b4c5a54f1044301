SUMMARY = "Hearth vendor file: product identity, disclosure policy, support period"
DESCRIPTION = "Installs the vendor file that every disclosure surface of the device is generated from, after checking it with hearth-vendor check (the rules hearthd applies at start), so a bad file fails the build, not the device."
HOMEPAGE = "https://example.com/hearth"
BUGTRACKER = "https://example.com/hearth/issues"
SECTION = "base"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - this file is written in this layer, under the common MIT text
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

DEPENDS = "hearth-tools-native"

# A product replaces this file from its own layer, with a bbappend holding
#   FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
# and its vendor.toml in files/ (README.md, "Forking").
SRC_URI = "file://vendor.toml"

S = "${UNPACKDIR}"

inherit allarch

do_configure[noexec] = "1"

do_compile() {
    # Same check as hearthd's start-up; the message names the field to fix.
    hearth-vendor check ${S}/vendor.toml
}

do_install() {
    install -D -m 0644 ${S}/vendor.toml ${D}${nonarch_libdir}/hearth/vendor.toml
}

FILES:${PN} += "${nonarch_libdir}/hearth/vendor.toml"
