# Hearth's SWUpdate: signed (CMS) A/B updates, no webserver. Only with the
# Hearth distro, so adding meta-hearth to another distro changes nothing.
require ${@bb.utils.contains('DISTRO_FEATURES', 'hearth', 'hearth/swupdate-hearth.inc', '', d)}
