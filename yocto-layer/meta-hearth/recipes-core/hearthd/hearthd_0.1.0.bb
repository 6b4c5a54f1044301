SUMMARY = "Hearth device daemon: first-boot claim, disclosure, signed A/B updates"
DESCRIPTION = "hearthd serves the device's HTTPS setup and status pages, publishes the vendor's disclosure facts and drives SWUpdate for signed A/B updates. It runs as the unprivileged user hearth under a hardened systemd unit."
BUGTRACKER = "https://example.com/hearth/issues"
SECTION = "net"
CVE_PRODUCT = "hearthd"

require recipes-core/hearthd/hearth-source.inc

# The unit, the defaults and the user/tmpfiles snippets are shared with the
# development image (qemu/), which copies them from this folder.
SRC_URI += "\
    file://hearthd.service \
    file://hearth.toml \
    file://hearthd.sysusers.conf \
    file://hearthd.tmpfiles.conf \
    file://hearth-factory-reset.service \
    file://90-hearth-factory-reset.rules \
    file://hearth-reboot.path \
    file://hearth-reboot.service \
    file://hearth-trial-watch.service \
    file://trial-watch \
    file://hearthd-gpio.conf \
    file://91-hearth-gpio.rules \
"

# The board's GPIO lines (hearthd's [board]): a line name from the device
# tree ("GPIO17") or CHIP:OFFSET. Empty: no relay line (the plug is a state
# record) and no reset button. meta-hearth-bsp sets them for the Raspberry Pi.
HEARTH_BOARD_RELAY ??= ""
HEARTH_BOARD_RESET_BUTTON ??= ""

inherit systemd useradd

# Build only the daemon out of the workspace.
CARGO_SRC_DIR = "daemon"

# The account must exist at build time: the rootfs is read-only, so
# systemd-sysusers cannot add it on the device. It matches
# hearthd.sysusers.conf (oe-core's systemd_sysusers_check compares them).
USERADD_PACKAGES = "${PN}"
# Not in group swupdate: hearthd reaches SWUpdate only through
# hearth-update-gate's sockets (group hearth), which hold SWUpdate to the
# running version. Group hearth-gpio may use the GPIO chips (91-hearth-gpio.rules).
GROUPADD_PARAM:${PN} = "--system hearth; --system hearth-gpio"
USERADD_PARAM:${PN} = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --gid hearth --groups hearth-gpio --comment 'Hearth device daemon' hearth"

# hearth-reboot.path turns hearthd's reboot request into a reboot;
# hearth-trial-watch falls back when a new slot is not committed in time.
SYSTEMD_SERVICE:${PN} = "hearthd.service hearth-reboot.path hearth-trial-watch.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_install:append() {
    if [ -z "${HEARTH_SLOT_A_DEVICE}" ] || [ -z "${HEARTH_SLOT_B_DEVICE}" ]; then
        bbfatal "HEARTH_SLOT_A_DEVICE / HEARTH_SLOT_B_DEVICE are not set for MACHINE ${MACHINE}: hearthd.service binds the slots in for delta updates. Use a machine from meta-hearth-bsp."
    fi
    install -D -m 0644 ${UNPACKDIR}/hearthd.service ${D}${systemd_system_unitdir}/hearthd.service
    sed -i -e 's#@HEARTH_SLOT_A_DEVICE@#${HEARTH_SLOT_A_DEVICE}#g' \
        -e 's#@HEARTH_SLOT_B_DEVICE@#${HEARTH_SLOT_B_DEVICE}#g' \
        ${D}${systemd_system_unitdir}/hearthd.service
    install -D -m 0644 ${UNPACKDIR}/hearth.toml ${D}${nonarch_libdir}/hearth/hearth.toml
    install -D -m 0644 ${UNPACKDIR}/hearthd.sysusers.conf ${D}${nonarch_libdir}/sysusers.d/hearthd.conf
    install -D -m 0644 ${UNPACKDIR}/hearthd.tmpfiles.conf ${D}${nonarch_libdir}/tmpfiles.d/hearthd.conf
    # Started only by the physical reset control (the udev rule), so not enabled.
    install -D -m 0644 ${UNPACKDIR}/hearth-factory-reset.service ${D}${systemd_system_unitdir}/hearth-factory-reset.service
    install -D -m 0644 ${UNPACKDIR}/hearth-reboot.path ${D}${systemd_system_unitdir}/hearth-reboot.path
    install -D -m 0644 ${UNPACKDIR}/hearth-reboot.service ${D}${systemd_system_unitdir}/hearth-reboot.service
    install -D -m 0644 ${UNPACKDIR}/hearth-trial-watch.service ${D}${systemd_system_unitdir}/hearth-trial-watch.service
    sed -i -e 's#@HEARTH_BOOTLOADER@#${HEARTH_BOOTLOADER}#g' ${D}${systemd_system_unitdir}/hearth-trial-watch.service
    install -D -m 0755 ${UNPACKDIR}/trial-watch ${D}${libexecdir}/hearth/trial-watch
    if [ -n "${HEARTH_BOARD_RELAY}${HEARTH_BOARD_RESET_BUTTON}" ]; then
        install -D -m 0644 ${UNPACKDIR}/hearthd-gpio.conf ${D}${systemd_system_unitdir}/hearthd.service.d/gpio.conf
        install -D -m 0644 ${UNPACKDIR}/91-hearth-gpio.rules ${D}${nonarch_base_libdir}/udev/rules.d/91-hearth-gpio.rules
        printf '\n[board]\n' >>${D}${nonarch_libdir}/hearth/hearth.toml
        if [ -n "${HEARTH_BOARD_RELAY}" ]; then
            printf 'relay = "%s"\n' "${HEARTH_BOARD_RELAY}" >>${D}${nonarch_libdir}/hearth/hearth.toml
        fi
        if [ -n "${HEARTH_BOARD_RESET_BUTTON}" ]; then
            printf 'reset_button = "%s"\n' "${HEARTH_BOARD_RESET_BUTTON}" >>${D}${nonarch_libdir}/hearth/hearth.toml
        fi
    fi
}
do_install[vardeps] += "HEARTH_BOOTLOADER HEARTH_BOARD_RELAY HEARTH_BOARD_RESET_BUTTON HEARTH_SLOT_A_DEVICE HEARTH_SLOT_B_DEVICE"

# QEMU's reset control: a host-only virtual drive labelled HEARTH-RESET
# (qemu/boot --factory-reset). Only on QEMU machines: on real hardware a USB
# stick with that label would reset the device at once and at every boot
# (the Pi has a reset button, [board] reset_button).
do_install:append:qemuall() {
    install -D -m 0644 ${UNPACKDIR}/90-hearth-factory-reset.rules ${D}${nonarch_base_libdir}/udev/rules.d/90-hearth-factory-reset.rules
}

FILES:${PN} += "\
    ${nonarch_libdir}/hearth/hearth.toml \
    ${nonarch_libdir}/sysusers.d/hearthd.conf \
    ${nonarch_libdir}/tmpfiles.d/hearthd.conf \
    ${systemd_system_unitdir}/hearth-factory-reset.service \
    ${nonarch_base_libdir}/udev/rules.d/90-hearth-factory-reset.rules \
    ${libexecdir}/hearth/trial-watch \
    ${systemd_system_unitdir}/hearthd.service.d/gpio.conf \
    ${nonarch_base_libdir}/udev/rules.d/91-hearth-gpio.rules \
"

# The vendor file is read at start; hearthd refuses to start without it.
# Updates go through hearth-update-gate's sockets.
# trial-watch reads the U-Boot environment with fw_printenv.
HEARTH_BOOTENV_READER = "${@'libubootenv-bin' if d.getVar('HEARTH_BOOTLOADER') == 'uboot' else ''}"
RDEPENDS:${PN} += "${HEARTH_BOOTENV_READER} hearth-update-gate hearth-vendor"
