#!/usr/bin/env python3
"""Print, for each Hearth U-Boot board, "MACHINE|sed expression" that fills
boot.cmd's placeholders the way the hearth-uboot-script recipe does.

The values are read from meta-hearth-bsp: the recipe's ?= defaults, then
conf/hearth-bsp/<machine>.conf and the files it requires. Only plain
assignments (=, ?=, :=) are understood, which is all those files use.
KERNEL_IMAGETYPE comes from the MACHINE's own conf in bitbake; every Hearth
U-Boot board is 64-bit Arm, where it is "Image" (qemuarm64.conf,
meta-raspberrypi raspberrypi4-64.conf and raspberrypi5.conf).
"""
import os
import re
import sys

ASSIGN = re.compile(r'^([A-Za-z0-9_]+)\s*(\?=|:=|=)\s*"(.*)"\s*$')
REQUIRE = re.compile(r'^(?:require|include)\s+(conf/hearth-bsp/\S+)\s*$')
PLACEHOLDERS = {
    'HEARTH_BOOTLIMIT': 'HEARTH_BOOTLIMIT',
    'HEARTH_BOOT_IF': 'HEARTH_UBOOT_BOOT_IF',
    'HEARTH_BOOT_DEV': 'HEARTH_UBOOT_BOOT_DEV',
    'HEARTH_ROOT_PREFIX': 'HEARTH_UBOOT_ROOT_PREFIX',
    'HEARTH_BOOTARGS': 'HEARTH_UBOOT_BOOTARGS',
    'HEARTH_FIRMWARE_BOOTARGS': 'HEARTH_UBOOT_FIRMWARE_BOOTARGS',
    'KERNEL_IMAGETYPE': 'KERNEL_IMAGETYPE',
    'KERNEL_BOOTCMD': 'KERNEL_BOOTCMD',
}


def read(path, values, layer):
    with open(path) as f:
        for line in f:
            line = line.strip()
            m = REQUIRE.match(line)
            if m:
                read(os.path.join(layer, m.group(1)), values, layer)
                continue
            m = ASSIGN.match(line)
            if not m:
                continue
            name, op, value = m.groups()
            if op == '?=' and name in values:
                continue
            values[name] = value


def uboot_boards(layer):
    """(machine, values of conf/hearth-bsp/<machine>.conf) for each board
    that boots Hearth with U-Boot, in name order."""
    confdir = os.path.join(layer, 'conf/hearth-bsp')
    for conf in sorted(os.listdir(confdir)):
        if not conf.endswith('.conf'):
            continue
        values = {}
        read(os.path.join(confdir, conf), values, layer)
        if values.get('HEARTH_BOOTLOADER') == 'uboot':
            yield conf[:-len('.conf')], values


def main():
    layer = sys.argv[1]
    recipe = os.path.join(layer, 'recipes-bsp/hearth-uboot-script/hearth-uboot-script_1.0.bb')
    for machine, values in uboot_boards(layer):
        defaults = {'KERNEL_IMAGETYPE': 'Image'}
        read(recipe, defaults, layer)
        # Machine values win over the recipe's ?= defaults, as in bitbake.
        defaults.update(values)
        exprs = []
        for placeholder, var in PLACEHOLDERS.items():
            if var not in defaults:
                sys.exit("uboot_boards: %s: %s is not set" % (machine, var))
            exprs.append('s#@@%s@@#%s#g' % (placeholder, defaults[var].replace('#', r'\#')))
        print('%s|%s' % (machine, '; '.join(exprs)))


if __name__ == '__main__':
    main()
