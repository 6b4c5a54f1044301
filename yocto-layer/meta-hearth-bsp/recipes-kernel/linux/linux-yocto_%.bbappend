# Hearth: the kernel options a board needs to reach its boot environment.
# Only with the Hearth distro, so adding meta-hearth-bsp to another distro
# changes nothing.
require ${@bb.utils.contains('DISTRO_FEATURES', 'hearth', 'hearth/linux-yocto-hearth.inc', '', d)}
