# Hearth A/B boot script for U-Boot (Raspberry Pi 4/5, qemuarm64).
# The one copy in the repository: hearth-uboot-script fills in the board
# values (names between double at-signs) and compiles it into boot.scr;
# yocto-layer/scripts/check compiles it for every board in CI.
#
# Slots: hearth_slot=A boots partition 2, B partition 3 (1 = boot, 4 = /data).
# The bootcount pattern (U-Boot CONFIG_BOOTCOUNT_LIMIT + CONFIG_BOOTCOUNT_ENV,
# environment stored twice with CONFIG_ENV_REDUNDANT):
#   - an update (SWUpdate bootenv) sets hearth_slot=<new>, upgrade_available=1
#     and bootcount=0;
#   - while upgrade_available=1, U-Boot adds 1 to bootcount at every boot and
#     saves it; once bootcount > bootlimit it runs altbootcmd instead of
#     bootcmd;
#   - altbootcmd (set below) swaps hearth_slot back, clears
#     upgrade_available and bootcount, sets ustate=3 (SWUpdate's "failed")
#     and boots;
#   - the new system confirms itself (hearthd sets upgrade_available=0,
#     bootcount=0, ustate=0), after which no more counting happens.
# With bootlimit=1 the new slot gets exactly one trial boot.

# First boot, or an environment written by an older script: set defaults.
if test "${hearth_env}" != "1"; then
    setenv hearth_env 1
    if test -z "${hearth_slot}"; then setenv hearth_slot A; fi
    setenv bootlimit @@HEARTH_BOOTLIMIT@@
    setenv upgrade_available 0
    setenv bootcount 0
    setenv altbootcmd 'echo "Hearth: slot ${hearth_slot} failed its trial boot, going back"; if test "${hearth_slot}" = "B"; then setenv hearth_slot A; else setenv hearth_slot B; fi; setenv upgrade_available 0; setenv bootcount 0; setenv ustate 3; saveenv; run bootcmd'
    saveenv
fi

if test "${hearth_slot}" = "B"; then
    setenv hearth_part 3
else
    setenv hearth_slot A
    setenv hearth_part 2
fi
echo "Hearth: booting slot ${hearth_slot} (partition ${hearth_part}), upgrade_available=${upgrade_available} bootcount=${bootcount}/${bootlimit}"

# Kernel command line: the board's base arguments, then the slot.
setenv bootargs "@@HEARTH_BOOTARGS@@"
if test "@@HEARTH_FIRMWARE_BOOTARGS@@" = "1"; then
    # The Raspberry Pi firmware passes cmdline.txt in the device tree.
    fdt addr ${fdt_addr} && fdt get value bootargs /chosen bootargs
fi
setenv bootargs "${bootargs} root=@@HEARTH_ROOT_PREFIX@@${hearth_part} rootfstype=ext4 rootwait ro hearth.slot=${hearth_slot}"

# The kernel lives inside the slot, so an update replaces it with the rootfs.
if load @@HEARTH_BOOT_IF@@ @@HEARTH_BOOT_DEV@@:${hearth_part} ${kernel_addr_r} /boot/@@KERNEL_IMAGETYPE@@; then
    @@KERNEL_BOOTCMD@@ ${kernel_addr_r} - ${fdt_addr}
fi

# Only reached when the slot has no bootable kernel.
echo "Hearth: no bootable kernel in slot ${hearth_slot}"
if test "${upgrade_available}" = "1"; then
    # A trial boot: reset, so bootcount rises and altbootcmd takes over.
    reset
fi
# A confirmed slot that cannot boot: try the other one (this boot only,
# nothing is saved), then give up and reset.
if test "${hearth_slot}" = "B"; then setenv hearth_slot A; setenv hearth_part 2; else setenv hearth_slot B; setenv hearth_part 3; fi
echo "Hearth: trying slot ${hearth_slot} once"
setenv bootargs "@@HEARTH_BOOTARGS@@"
if test "@@HEARTH_FIRMWARE_BOOTARGS@@" = "1"; then
    fdt addr ${fdt_addr} && fdt get value bootargs /chosen bootargs
fi
setenv bootargs "${bootargs} root=@@HEARTH_ROOT_PREFIX@@${hearth_part} rootfstype=ext4 rootwait ro hearth.slot=${hearth_slot}"
if load @@HEARTH_BOOT_IF@@ @@HEARTH_BOOT_DEV@@:${hearth_part} ${kernel_addr_r} /boot/@@KERNEL_IMAGETYPE@@; then
    @@KERNEL_BOOTCMD@@ ${kernel_addr_r} - ${fdt_addr}
fi
echo "Hearth: no slot can boot"
reset
