SUMMARY = "Hearth signed A/B update bundle (.swu) of hearth-image"
DESCRIPTION = "Packs hearth-image's zstd-compressed ext4 rootfs with a CMS-signed sw-description into a SWUpdate .swu that installs into the slot not running and arms one trial boot."
HOMEPAGE = "https://example.com/hearth"
BUGTRACKER = "https://example.com/hearth/issues"
SECTION = "base"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - this file is written in this layer, under the common MIT text
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

# sw-description is the template shared with the dev image's release path;
# its placeholders are documented in yocto-layer/README.md.
SRC_URI = "file://sw-description"

inherit swupdate hearth_vendor_file features_check

# Keys, board layout and vendor file come with the Hearth distro.
REQUIRED_DISTRO_FEATURES = "hearth"

IMAGE_DEPENDS = "hearth-image"
SWUPDATE_IMAGES = "hearth-image"
SWUPDATE_IMAGES_FSTYPES[hearth-image] = ".rootfs.ext4.zst"
SWUPDATE_IMAGES_NOAPPEND_MACHINE[hearth-image] = "0"

# Only sw-description is signed; it carries the sha256 of the rootfs.
SWUPDATE_SIGNING = "CMS"
SWUPDATE_CMS_CERT = "${HEARTH_SWU_SIGNING_CERT}"
SWUPDATE_CMS_KEY = "${HEARTH_SWU_SIGNING_KEY}"

# Placeholders of the template. Board and hardware revisions come from the
# vendor file in do_swuimage (below); these defaults keep parsing quiet.
HEARTH_SWU_DESCRIPTION ?= "${DISTRO_NAME} ${HEARTH_FIRMWARE_VERSION} for ${MACHINE}"
HEARTH_SWU_ROOTFS_FILE = "hearth-image${IMAGE_MACHINE_SUFFIX}.rootfs.ext4.zst"
HEARTH_SWU_BOARD = ""
HEARTH_SWU_HW_COMPATIBILITY = ""

do_swuimage[vardeps] += "${@swupdate_find_bitbake_variables(d)} HEARTH_HW_REVISION_SUFFIX"
do_swuimage[depends] += "hearth-vendor:do_populate_sysroot"
# A new key or certificate must re-sign.
do_swuimage[file-checksums] += "${@hearth_file_checksums(d, 'HEARTH_SWU_SIGNING_CERT HEARTH_SWU_SIGNING_KEY')}"

python do_swuimage:prepend() {
    for var in ('HEARTH_SWU_SIGNING_CERT', 'HEARTH_SWU_SIGNING_KEY'):
        problem = hearth_missing_key_message(d, var)
        if problem:
            bb.fatal(problem)
    for var in ('HEARTH_SLOT_A_DEVICE', 'HEARTH_SLOT_B_DEVICE'):
        if not d.getVar(var):
            bb.fatal("%s is not set for MACHINE %s: the machine has no Hearth A/B layout. "
                     "Use a machine from meta-hearth-bsp or write conf/hearth-bsp/%s.conf." % (var, d.getVar('MACHINE'), d.getVar('MACHINE')))
    vendor = hearth_vendor_load(d)
    d.setVar('HEARTH_SWU_BOARD', hearth_vendor_model(vendor))
    d.setVar('HEARTH_SWU_HW_COMPATIBILITY', '"%s"' % hearth_vendor_hw_revision(d, vendor))
}
