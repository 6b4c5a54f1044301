#!/usr/bin/env python3
"""The factory-reset udev rule (a drive labelled HEARTH-RESET resets the
device) is for QEMU only, checked statically:

  - every line of the Hearth layers that installs 90-hearth-factory-reset.rules
    is in a function with the qemuall override, which only oe-core's QEMU
    machines have (conf/machine/include/qemu.inc puts it in MACHINEOVERRIDES;
    meta-raspberrypi's machines do not include that file), and no Hearth layer
    adds qemuall to MACHINEOVERRIDES itself;
  - the rule matches only a disk driven by virtio_blk (QEMU's), so a USB stick
    with that label resets nothing even where the rule is installed.

The real bitbake -e check per MACHINE is in README.md, "Checking the layers".

usage: check-reset-rule.py YOCTO_LAYER_DIR
"""
import os
import re
import sys

RULE = '90-hearth-factory-reset.rules'


def main():
    top = sys.argv[1]
    failures = []
    installs = 0
    for layer in ('meta-hearth', 'meta-hearth-distro', 'meta-hearth-bsp'):
        for dirpath, _, files in os.walk(os.path.join(top, layer)):
            for name in files:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, top)
                if not re.search(r'\.(bb|bbappend|inc|bbclass|conf)$', name):
                    continue
                func = None
                for n, line in enumerate(open(path), 1):
                    m = re.match(r'^(?:python )?([\w:${}-]+)\s*\(\)\s*\{', line)
                    if m:
                        func = m.group(1)
                    elif line.startswith('}'):
                        func = None
                    if re.search(r'MACHINEOVERRIDES.*qemuall', line):
                        failures.append('%s:%d adds qemuall to MACHINEOVERRIDES' % (rel, n))
                    if RULE in line and re.search(r'\binstall\b', line):
                        installs += 1
                        if not (func and func.endswith(':qemuall')):
                            failures.append('%s:%d installs %s outside a :qemuall function (in %s)'
                                            % (rel, n, RULE, func or 'no function'))
    if installs == 0:
        failures.append('no recipe installs %s' % RULE)
    rule = os.path.join(top, 'meta-hearth/recipes-core/hearthd/files', RULE)
    active = [l for l in open(rule) if l.strip() and not l.startswith('#')]
    if not active or not all('DRIVERS=="virtio_blk"' in l and 'SUBSYSTEMS=="virtio"' in l for l in active):
        failures.append('%s: every rule must match SUBSYSTEMS=="virtio", DRIVERS=="virtio_blk"' % RULE)
    for f in failures:
        print('check-reset-rule: %s' % f, file=sys.stderr)
    if failures:
        sys.exit(1)
    print('%s: installed by %d line(s), each under :qemuall; it matches only virtio_blk disks' % (RULE, installs))


if __name__ == '__main__':
    main()
