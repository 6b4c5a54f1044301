SUMMARY = "Hearth firmware image: hearthd on a read-only, A/B-updated rootfs"
DESCRIPTION = "The Hearth device image: systemd, hearthd, SWUpdate and the vendor file on a read-only rootfs, with /data as the persistent partition. The disk layout and bootloader come from meta-hearth-bsp; the .swu update of this image is hearth-update."
HOMEPAGE = "https://example.com/hearth"
BUGTRACKER = "https://example.com/hearth/issues"
SECTION = "images"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - this file is written in this layer, under the common MIT text
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit core-image features_check

# The board layout and the mounts come with the Hearth distro.
REQUIRED_DISTRO_FEATURES = "hearth"

IMAGE_INSTALL = "\
    packagegroup-core-boot \
    hearth-base \
    hearth-hardening \
    hearthd \
    hearth-update-gate \
    hearth-vendor \
    swupdate \
    ${HEARTH_IMAGE_EXTRA_INSTALL} \
    ${CORE_IMAGE_EXTRA_INSTALL} \
"
# Per board (meta-hearth-bsp), e.g. the kernel inside each rootfs slot.
HEARTH_IMAGE_EXTRA_INSTALL ?= ""

# No package manager, no SSH, no debug logins. IMAGE_FEATURES lists only
# what the device needs.
IMAGE_FEATURES = "read-only-rootfs"
IMAGE_LINGUAS = ""

# The slots get the ext4 image (hearth-update streams the zstd one); the disk
# image (wic) holds boot + slot A + empty slot B + data.
IMAGE_FSTYPES = "ext4 ext4.zst wic wic.bmap"

# Root is locked: no password, no way in over a console. Accounts with a
# password do not exist; hearthd's owner account lives in its own store.
inherit extrausers
EXTRA_USERS_PARAMS = "usermod -L root;"

# The debug-tweaks parts open the device to anyone with a console or network
# access; none may reach a Hearth image, however they are asked for
# (IMAGE_FEATURES, EXTRA_IMAGE_FEATURES in local.conf).
HEARTH_FORBIDDEN_IMAGE_FEATURES = "\
    allow-empty-password allow-root-login empty-root-password serial-autologin-root \
    post-install-logging debug-tweaks tools-debug ssh-server-dropbear ssh-server-openssh \
"

python hearth_check_image_features() {
    bad = [f for f in d.getVar('HEARTH_FORBIDDEN_IMAGE_FEATURES').split()
           if f in (d.getVar('IMAGE_FEATURES') or '').split()]
    if bad:
        bb.fatal("hearth-image must not have %s: remove them from IMAGE_FEATURES / EXTRA_IMAGE_FEATURES "
                 "(for a debugging build, enable the core/yocto/root-login-with-empty-password fragment in "
                 "a separate build directory and never ship that image)." % ", ".join(bad))
    for var in ('HEARTH_BOOTLOADER', 'HEARTH_SLOT_A_DEVICE', 'HEARTH_SLOT_B_DEVICE'):
        if not d.getVar(var):
            bb.fatal("%s is not set for MACHINE %s: the machine has no Hearth A/B layout. "
                     "Use a machine from meta-hearth-bsp or write conf/hearth-bsp/%s.conf."
                     % (var, d.getVar('MACHINE'), d.getVar('MACHINE')))
}
hearth_check_image_features[doc] = "Refuses debug logins and boards without an A/B layout"
do_rootfs[prefuncs] += "hearth_check_image_features"
do_rootfs[vardeps] += "HEARTH_FORBIDDEN_IMAGE_FEATURES"
