# Hearth: U-Boot with a boot counter and a redundant environment for A/B
# fallback. Only with the Hearth distro, so adding meta-hearth-bsp to another
# distro changes nothing.
require ${@bb.utils.contains('DISTRO_FEATURES', 'hearth', 'hearth/u-boot-hearth.inc', '', d)}
