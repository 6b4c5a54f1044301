# hearth_sanity: checks made whenever bitbake parses the configuration
# (every build, and bitbake -p), before any recipe is parsed, when the Hearth
# distro is selected (meta-hearth-distro INHERITs this class).
#
# - The compiler hardening of security_flags.inc is in place.
# - The update trust anchor (HEARTH_SWU_TRUST_CERT) must exist: it goes into
#   the image, and SWUpdate accepts only updates signed under it. Missing, the
#   build stops with a sentence that says how to make one.
# - The development keys are refused unless HEARTH_ALLOW_DEV_KEYS = "1". They
#   are public: anyone can sign an update that a device built with them
#   installs. They are recognised by their public keys' fingerprints
#   (files/dev-keys/fingerprints), not by path, so a copied development
#   certificate is caught too; HEARTH_SWU_TRUST_CERT and
#   HEARTH_SWU_SIGNING_CERT are checked. Allowed, the build warns, and the
#   image carries /etc/hearth/development-keys (hearth_install_dev_keys_marker).

HEARTH_KEY_HELP = "Make your keys with the release tool (hearth-release keygen, see docs/update-security.md) and set HEARTH_SWU_TRUST_CERT, HEARTH_SWU_SIGNING_CERT and HEARTH_SWU_SIGNING_KEY in local.conf or your distro; for a throw-away development set run yocto-layer/scripts/make-dev-keys.sh."

# "1": a development build that may use the development keys (never shipped).
HEARTH_ALLOW_DEV_KEYS ??= ""
HEARTH_DEV_KEY_FINGERPRINTS = "${HEARTH_DEV_KEYS_DIR}/fingerprints"
# Installed as /etc/hearth/development-keys; the dev image installs the same file.
HEARTH_DEV_KEYS_MARKER = "${HEARTH_DEV_KEYS_DIR}/development-keys.marker"

def hearth_cert_fingerprints(path):
    """The fingerprint of each certificate in the PEM file at path, or None if
    it holds none that can be read. Fingerprint: lowercase hex SHA-256 of the
    DER SubjectPublicKeyInfo, update-manifest's KeyId (= openssl x509 -pubkey
    | openssl pkey -pubin -outform DER | sha256sum). Plain Python: bitbake's
    host may lack the cryptography module."""
    import base64, hashlib, re

    def tlv(der, pos):
        # (start of content, end) of the DER element at pos: a one-byte tag,
        # then the length, short form or 0x8N followed by N bytes.
        n = der[pos + 1]
        pos += 2
        if n & 0x80:
            pos, n = pos + (n & 0x7f), int.from_bytes(der[pos:pos + (n & 0x7f)], 'big')
        return pos, pos + n

    fingerprints = []
    try:
        with open(path) as f:
            pems = re.findall(r'-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----', f.read(), re.S)
        for pem in pems:
            der = base64.b64decode(pem)
            tbs = tlv(der, 0)[0]              # Certificate: SEQUENCE { tbsCertificate, ... }
            pos = tlv(der, tbs)[0]            # tbsCertificate: SEQUENCE {
            if der[pos] == 0xa0:              #   [0] version (absent in v1)
                pos = tlv(der, pos)[1]
            for _ in range(5):                #   serial, signature alg., issuer, validity, subject
                pos = tlv(der, pos)[1]
            if der[pos] != 0x30:              #   subjectPublicKeyInfo: SEQUENCE, taken whole
                return None
            fingerprints.append(hashlib.sha256(der[pos:tlv(der, pos)[1]]).hexdigest())
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        return None
    return fingerprints or None

def hearth_dev_keys_in_use(d):
    """(variable, key name) for each certificate in HEARTH_SWU_TRUST_CERT and
    HEARTH_SWU_SIGNING_CERT that is a development key, by fingerprint."""
    dev = {}
    with open(d.getVar('HEARTH_DEV_KEY_FINGERPRINTS')) as f:
        for line in f:
            fields = line.split('#', 1)[0].split()
            if fields:
                dev[fields[0].lower()] = ' '.join(fields[1:])
    used = []
    for var in ('HEARTH_SWU_TRUST_CERT', 'HEARTH_SWU_SIGNING_CERT'):
        for fp in hearth_cert_fingerprints(d.getVar(var) or '') or []:
            if fp in dev:
                used.append((var, dev[fp]))
    return used

def hearth_missing_key_message(d, var):
    """None when the file named by var exists, else a sentence saying what to do."""
    path = d.getVar(var) or ''
    if not path:
        return "%s is empty. %s" % (var, d.getVar('HEARTH_KEY_HELP'))
    if not os.path.isfile(path):
        return "%s names %s, which does not exist. %s" % (var, path, d.getVar('HEARTH_KEY_HELP'))
    return None

def hearth_key_problem(d):
    """None when this build may use its update keys, else one sentence saying what to do."""
    problem = hearth_missing_key_message(d, 'HEARTH_SWU_TRUST_CERT')
    if problem:
        return problem
    if not hearth_cert_fingerprints(d.getVar('HEARTH_SWU_TRUST_CERT')):
        return "HEARTH_SWU_TRUST_CERT names %s, which holds no PEM certificate. %s" % (
            d.getVar('HEARTH_SWU_TRUST_CERT'), d.getVar('HEARTH_KEY_HELP'))
    used = hearth_dev_keys_in_use(d)
    if used and d.getVar('HEARTH_ALLOW_DEV_KEYS') != '1':
        return ("%s %s, with which anyone can sign updates for this image: "
                "make your own keys with hearth-release keygen (yocto-layer/README.md, \"Keys\") and set "
                "HEARTH_SWU_TRUST_CERT, HEARTH_SWU_SIGNING_CERT and HEARTH_SWU_SIGNING_KEY to them, or set "
                "HEARTH_ALLOW_DEV_KEYS = \"1\" for a development build that must never ship."
                % (hearth_dev_keys_text(used), "hold public Hearth development keys" if len(used) > 1
                   else "holds a public Hearth development key"))
    return None

def hearth_dev_keys_text(used):
    """'HEARTH_SWU_TRUST_CERT (hearth-dev-root) and ...' for hearth_dev_keys_in_use's list."""
    return " and ".join('%s (%s)' % u for u in used)

def hearth_trusts_dev_keys(d):
    """True when the image's trust anchor is a development key."""
    return any(var == 'HEARTH_SWU_TRUST_CERT' for var, _ in hearth_dev_keys_in_use(d))

hearth_sanity_eventhandler[doc] = "Checks the hardening flags and the update keys whenever the configuration is parsed"
addhandler hearth_sanity_eventhandler
hearth_sanity_eventhandler[eventmask] = "bb.event.SanityCheck"
python hearth_sanity_eventhandler() {
    d = e.data
    if not (d.getVar('SECURITY_CFLAGS') or '').strip():
        problem = ("SECURITY_CFLAGS is empty: the Hearth distro must build with oe-core's security_flags.inc "
                   "(conf/distro/defaultsetup.conf requires it; check your distro and local.conf).")
    else:
        problem = hearth_key_problem(d)
    if problem:
        # As oe-core's sanity class does: a UI that asked for events gets
        # SanityCheckFailed; knotty does not show that event, so stop here.
        if e.generateevents:
            bb.event.fire(bb.event.SanityCheckFailed(problem), d)
        else:
            bb.fatal(problem)
        return
    used = hearth_dev_keys_in_use(d)
    if used:
        bb.warn("This build uses the Hearth DEVELOPMENT keys in %s, allowed by HEARTH_ALLOW_DEV_KEYS = \"1\": "
                "anyone can sign an update that these devices install, and the image says so in %s. Never ship it."
                % (hearth_dev_keys_text(used), d.expand('${sysconfdir}/hearth/development-keys')))
}

# For the recipe that installs the trust anchor (swupdate): fail the task, with
# the same sentence, if the keys have changed for the worse since the build began.
hearth_check_trust_cert[doc] = "Fails the task if the update keys may not be used (hearth_key_problem)"
python hearth_check_trust_cert() {
    problem = hearth_key_problem(d)
    if problem:
        bb.fatal(problem)
}
hearth_check_trust_cert[vardeps] += "HEARTH_ALLOW_DEV_KEYS"

# For the same recipe (a do_install postfunc): /etc/hearth/development-keys,
# exactly when the installed trust anchor is a development key. hearthd
# refuses a development root without it, and shows it.
hearth_install_dev_keys_marker[doc] = "Installs /etc/hearth/development-keys when the trust anchor is a development key"
python hearth_install_dev_keys_marker() {
    if hearth_trusts_dev_keys(d):
        import shutil
        dest = d.expand('${D}${sysconfdir}/hearth/development-keys')
        bb.utils.mkdirhier(os.path.dirname(dest))
        shutil.copyfile(d.getVar('HEARTH_DEV_KEYS_MARKER'), dest)
        os.chmod(dest, 0o644)
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
