# Hearth fields from the vendor file; only with the Hearth distro, so adding
# meta-hearth to another distro changes nothing.
require ${@bb.utils.contains('DISTRO_FEATURES', 'hearth', 'os-release-hearth.inc', '', d)}
