# Hearth: U-Boot with a redundant environment and setexpr for the A/B boot
# script's trial counter. Only with the Hearth distro, so adding
# meta-hearth-bsp to another distro changes nothing.
require ${@bb.utils.contains('DISTRO_FEATURES', 'hearth', 'hearth/u-boot-hearth.inc', '', d)}
