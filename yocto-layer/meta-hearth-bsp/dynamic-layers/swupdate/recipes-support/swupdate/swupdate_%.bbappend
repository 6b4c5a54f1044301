# Hearth U-Boot boards: /etc/fw_env.config for SWUpdate (libubootenv). Only
# with the Hearth distro.
require ${@bb.utils.contains('DISTRO_FEATURES', 'hearth', 'swupdate-hearth-bsp.inc', '', d)}
