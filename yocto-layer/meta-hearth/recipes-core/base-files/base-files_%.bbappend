# Hearth's mounts (/boot, /data); only with the Hearth distro.
require ${@bb.utils.contains('DISTRO_FEATURES', 'hearth', 'base-files-hearth.inc', '', d)}
