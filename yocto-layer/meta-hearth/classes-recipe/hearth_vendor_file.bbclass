# hearth_vendor_file: read the vendor file (hearth-vendor's vendor.toml) at
# build time, so os-release and the update bundle carry the same facts as the
# device's own pages. A recipe reads the checked file from hearth-vendor's
# sysroot; a product overrides it with a hearth-vendor bbappend and
# everything follows.

DEPENDS:append:hearth = " hearth-vendor"

def hearth_vendor_load(d):
    """The vendor file as a dict. Fails the task with a sentence if unreadable."""
    path = d.expand('${RECIPE_SYSROOT}${nonarch_libdir}/hearth/vendor.toml')
    try:
        import tomllib
    except ImportError:
        bb.fatal("Reading the Hearth vendor file needs Python 3.11 or later (tomllib) on the build host; "
                 "install it or use oe-core's buildtools (scripts/install-buildtools).")
    try:
        with open(path, 'rb') as f:
            return tomllib.load(f)
    except OSError as err:
        bb.fatal("Cannot read the Hearth vendor file %s (%s); it comes from the hearth-vendor recipe." % (path, err.strerror))
    except tomllib.TOMLDecodeError as err:
        bb.fatal("The Hearth vendor file %s is not valid TOML: %s. Run hearth-vendor check on it." % (path, err))

def hearth_vendor_get(vendor, dotted, required=True):
    """vendor['a']['b'] for dotted = 'a.b' as a string; None if absent and not required."""
    value = vendor
    for key in dotted.split('.'):
        if not isinstance(value, dict) or key not in value:
            if required:
                bb.fatal("The Hearth vendor file has no %s; add it (the keys are in docs/disclosure.md)." % dotted)
            return None
        value = value[key]
    return str(value)

def hearth_vendor_model(vendor):
    """The model designation, which is also SWUpdate's board name (/etc/hwrevision, sw-description)."""
    import re
    model = hearth_vendor_get(vendor, 'product.model')
    # sw-description uses it as a libconfig setting name.
    if not re.fullmatch(r'[A-Za-z][-A-Za-z0-9_]*', model):
        bb.fatal("product.model %r in the Hearth vendor file cannot name a SWUpdate board: "
                 "use letters, digits, '-' and '_', starting with a letter." % model)
    return model

def hearth_vendor_hw_revision(d, vendor):
    """The hardware revision SWUpdate compares: the vendor file's, plus HEARTH_HW_REVISION_SUFFIX."""
    return hearth_vendor_get(vendor, 'product.hardware_revision') + (d.getVar('HEARTH_HW_REVISION_SUFFIX') or '')

def hearth_file_checksums(d, variables):
    """file-checksums entries ("path:exists") for the files the variables name,
    so a new key or certificate reruns the task."""
    paths = [d.getVar(v) for v in variables.split()]
    return ' '.join('%s:%s' % (p, os.path.exists(p)) for p in paths if p)
