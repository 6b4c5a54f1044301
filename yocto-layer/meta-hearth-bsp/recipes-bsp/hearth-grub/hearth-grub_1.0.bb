SUMMARY = "Hearth GRUB A/B configuration: grub.cfg and the initial grubenv"
DESCRIPTION = "Deploys the A/B grub.cfg (the very file the development image uses) and the GRUB environment block of a factory-new disk for the EFI system partition, and ships a reference copy of grub.cfg as grub-efi's virtual-grub-bootconf."
HOMEPAGE = "https://example.com/hearth"
BUGTRACKER = "https://example.com/hearth/issues"
SECTION = "bootloaders"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - this file is written in this layer, under the common MIT text
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

# Both files are shared with qemu/ (the dev image copies them from here).
SRC_URI = "file://grub.cfg file://grubenv.defaults"

S = "${UNPACKDIR}"

inherit deploy

do_configure[noexec] = "1"

do_compile() {
    # The environment block of a factory-new disk (slot A, no trial boot
    # pending), from the name=value lines of grubenv.defaults.
    # GRUB's 1024-byte block with ONE header line, as SWUpdate writes it:
    # grub-editenv's extra "# WARNING" line is read by SWUpdate 2022.12 as
    # part of the first variable's name, which then appears twice after an
    # update (the dev image builds its block the same way).
    printf '# GRUB Environment Block\n' >${B}/grubenv
    grep -v -e '^#' -e '^[[:space:]]*$' ${S}/grubenv.defaults >>${B}/grubenv
    size=$(stat -c %s ${B}/grubenv)
    if [ "$size" -gt 1024 ]; then
        bbfatal "grubenv.defaults does not fit GRUB's 1024-byte environment block"
    fi
    # expr, not $((...)): bitbake's shell parser does not take arithmetic.
    head -c "$(expr 1024 - "$size")" /dev/zero | tr '\0' '#' >>${B}/grubenv
}

do_install() {
    # Reference copy; GRUB reads the one on the ESP (see do_deploy).
    install -D -m 0644 ${S}/grub.cfg ${D}${datadir}/hearth-grub/grub.cfg
}

do_deploy() {
    install -D -m 0644 ${S}/grub.cfg ${DEPLOYDIR}/hearth-grub/grub.cfg
    install -D -m 0644 ${B}/grubenv ${DEPLOYDIR}/hearth-grub/grubenv
}
addtask deploy after do_compile before do_build

RPROVIDES:${PN} += "virtual-grub-bootconf"

COMPATIBLE_HOST = "(x86_64|i.86|aarch64|riscv64).*-linux"
