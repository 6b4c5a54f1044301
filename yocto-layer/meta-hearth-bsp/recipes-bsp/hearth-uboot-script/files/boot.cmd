# Hearth A/B boot script for U-Boot (Raspberry Pi 4/5, qemuarm64).
# The one copy in the repository: hearth-uboot-script fills in the board
# values (names between double at-signs) and compiles it into boot.scr;
# yocto-layer/scripts/check compiles it for every board in CI, and
# qemu/uboot-arm64 boots it in QEMU for tests/system/uboot.rs.
#
# Slots: hearth_slot=A boots partition 2, B partition 3 (1 = boot, 4 = /data).
# The trial is keyed on SWUpdate's own update state, ustate, so that the new
# system commits itself with one SWUpdate IPC call (SET_UPDATE_STATE '0'):
#   - an update arms the trial in ONE environment write (SWUpdate bootenv):
#     hearth_slot=<new>, bootcount=0, ustate=1 (INSTALLED);
#   - while ustate=1 this script adds 1 to bootcount and saves it before each
#     boot; once bootcount >= bootlimit the slot has had its trial boots and
#     did not commit: hearth_slot goes back to the other slot, bootcount=0,
#     ustate=3 (SWUpdate's FAILED), saved, and that slot boots;
#   - the commit: SWUpdate writes ustate=0, after which nothing is counted;
#   - a trial slot whose kernel cannot be loaded resets the board at once, so
#     the next boot falls back.
# With bootlimit=1 the new slot gets exactly one trial boot. A trial boot that
# hangs instead of resetting needs the board's watchdog to reset it.
# setexpr counts in hexadecimal and test -ge compares decimals: the two agree
# up to 9, so the recipe allows a bootlimit of 1 to 9.
# The environment is stored twice (CONFIG_ENV_REDUNDANT), so a power cut
# during saveenv leaves the previous copy.

# Without a bootlimit the trial below could never end.
if test -z "${bootlimit}"; then setenv bootlimit @@HEARTH_BOOTLIMIT@@; fi

# First boot: save the environment once, so that the flash holds a complete
# one (with bootcmd) before SWUpdate ever writes to it.
if test "${hearth_env}" != "1"; then
    setenv hearth_env 1
    if test -z "${hearth_slot}"; then setenv hearth_slot A; fi
    saveenv
fi

# The trial: count this boot, or fall back once the trial boots are used up.
if test "${ustate}" = "1"; then
    if test -z "${bootcount}"; then setenv bootcount 0; fi
    if test ${bootcount} -ge ${bootlimit}; then
        echo "Hearth: slot ${hearth_slot} used ${bootcount} of ${bootlimit} trial boot(s) without a commit; falling back"
        if test "${hearth_slot}" = "B"; then setenv hearth_slot A; else setenv hearth_slot B; fi
        setenv bootcount 0
        setenv ustate 3
    else
        setexpr bootcount ${bootcount} + 1
        echo "Hearth: trial boot ${bootcount} of ${bootlimit} of slot ${hearth_slot}"
    fi
    saveenv
fi

if test "${hearth_slot}" = "B"; then
    setenv hearth_part 3
else
    setenv hearth_slot A
    setenv hearth_part 2
fi
echo "Hearth: booting slot ${hearth_slot} (partition ${hearth_part}), ustate=${ustate} bootcount=${bootcount}/${bootlimit}"

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
if test "${ustate}" = "1"; then
    # A trial boot: reset, so that the next boot falls back.
    echo "Hearth: slot ${hearth_slot} cannot boot its trial; resetting"
    reset
fi
# A committed slot that cannot boot: try the other one (this boot only,
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
