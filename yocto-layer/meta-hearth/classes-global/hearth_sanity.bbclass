# hearth_sanity: checks made once per build, before any task runs, when the
# Hearth distro is selected (meta-hearth-distro INHERITs this class).
#
# - The compiler hardening of security_flags.inc is in place.
# - The update trust anchor (HEARTH_SWU_TRUST_CERT) must exist: it goes into
#   the image, and SWUpdate accepts only updates signed under it. Missing, the
#   build stops with a sentence that says how to make one.
# - A build that still uses the development keys prints a warning naming the
#   variables to set. Those keys are public: anyone can sign an update that a
#   device built with them installs.

HEARTH_KEY_HELP = "Make your keys with the release tool (hearth-release keygen, see docs/update-security.md) and set HEARTH_SWU_TRUST_CERT, HEARTH_SWU_SIGNING_CERT and HEARTH_SWU_SIGNING_KEY in local.conf or your distro; for a throw-away development set run yocto-layer/scripts/make-dev-keys.sh."

HEARTH_KEY_VARS = "HEARTH_SWU_TRUST_CERT HEARTH_SWU_SIGNING_CERT HEARTH_SWU_SIGNING_KEY"

def hearth_dev_keys_in_use(d):
    """The key variables that still point into the development key folder."""
    dev_dir = os.path.abspath(d.getVar('HEARTH_DEV_KEYS_DIR') or '/nonexistent')
    used = []
    for var in d.getVar('HEARTH_KEY_VARS').split():
        path = os.path.abspath(d.getVar(var) or '')
        if path.startswith(dev_dir + os.sep):
            used.append(var)
    return used

def hearth_missing_key_message(d, var):
    """None when the file named by var exists, else a sentence saying what to do."""
    path = d.getVar(var) or ''
    if not path:
        return "%s is empty. %s" % (var, d.getVar('HEARTH_KEY_HELP'))
    if not os.path.isfile(path):
        return "%s names %s, which does not exist. %s" % (var, path, d.getVar('HEARTH_KEY_HELP'))
    return None

hearth_sanity_eventhandler[doc] = "Checks the update keys once per build"
addhandler hearth_sanity_eventhandler
hearth_sanity_eventhandler[eventmask] = "bb.event.BuildStarted"
python hearth_sanity_eventhandler() {
    d = e.data
    if not (d.getVar('SECURITY_CFLAGS') or '').strip():
        bb.event.fire(bb.event.SanityCheckFailed(
            "SECURITY_CFLAGS is empty: the Hearth distro must build with oe-core's security_flags.inc "
            "(conf/distro/defaultsetup.conf requires it; check your distro and local.conf)."), d)
        return
    problem = hearth_missing_key_message(d, 'HEARTH_SWU_TRUST_CERT')
    if problem:
        bb.event.fire(bb.event.SanityCheckFailed(problem), d)
        return
    used = hearth_dev_keys_in_use(d)
    if used:
        bb.warn("This build uses the Hearth DEVELOPMENT keys (%s point into %s). "
                "Anyone can sign an update that these devices install: never ship it. "
                "Set %s to your own keys (README.md, section Keys)."
                % (", ".join(used), d.getVar('HEARTH_DEV_KEYS_DIR'), ", ".join(used)))
}

# For recipes that install the trust anchor (swupdate): fail the task, with
# the same sentence, if the certificate has gone missing since the build began.
hearth_check_trust_cert[doc] = "Fails the task if HEARTH_SWU_TRUST_CERT is missing"
python hearth_check_trust_cert() {
    problem = hearth_missing_key_message(d, 'HEARTH_SWU_TRUST_CERT')
    if problem:
        bb.fatal(problem)
}

# For swupdate (which inherits hearth_vendor_file): SWUpdate's /etc/hwrevision,
# "<board> <revision>", board = the vendor file's model designation. Kept in
# this global class so the swupdate bbappend only names it (prefuncs).
hearth_write_hwrevision[doc] = "Writes /etc/hwrevision from the vendor file"
python hearth_write_hwrevision() {
    vendor = hearth_vendor_load(d)
    with open(d.expand('${WORKDIR}/hwrevision'), 'w') as f:
        f.write("%s %s\n" % (hearth_vendor_model(vendor), hearth_vendor_hw_revision(d, vendor)))
}
hearth_write_hwrevision[vardeps] += "HEARTH_HW_REVISION_SUFFIX"
