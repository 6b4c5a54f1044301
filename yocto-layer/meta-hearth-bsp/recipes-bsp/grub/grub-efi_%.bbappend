# Hearth: GRUB modules hearth-grub's grub.cfg needs; only with the Hearth distro.
require ${@bb.utils.contains('DISTRO_FEATURES', 'hearth', 'grub-efi-hearth.inc', '', d)}
