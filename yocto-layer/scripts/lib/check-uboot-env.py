#!/usr/bin/env python3
"""Check, for every Hearth U-Boot board, that the three places that say where
U-Boot's environment lives agree:

- the U-Boot configuration fragments the layer applies (hearth-env-redundant.cfg
  and the board's hearth-env.cfg, found the way bitbake's FILESPATH finds
  them: the machine's own folder, then the "rpi" override for the Pis);
- the board's fw_env.config, which libubootenv (SWUpdate, fw_setenv) reads;
- the board's wic layout (WKS_FILE): an environment in raw SD card sectors
  must lie after the partition table and before the first partition.

Environments in raw MMC sectors (the Pis) and in NOR flash (qemuarm64's
pflash) are understood; anything else is reported, not guessed at.

Usage: check-uboot-env.py META_HEARTH_BSP      (exit 0 = all agree)
       check-uboot-env.py --self-test          (the check catches bad layouts)
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from uboot_boards import uboot_boards  # noqa: E402  (the same conf reader as step 4)

UBOOT_DIR = 'recipes-bsp/u-boot/hearth'
WIC_DIR = 'files/wic'
# QEMU virt: two 64 MiB pflash banks at 0x0 and 0x4000000; Linux sees both
# as one MTD device, so fw_env.config offsets count from bank 0.
QEMU_FLASH = (0x0, 0x8000000)
MBR_END = 512
GPT_END = 34 * 512


def fragment_values(path):
    values = {}
    with open(path) as f:
        for line in f:
            m = re.match(r'^(CONFIG_[A-Z0-9_]+)=(.*)$', line.strip())
            if m:
                values[m.group(1)] = m.group(2).strip('"')
    return values


def fw_env_lines(path):
    lines = []
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].split()
            if line:
                lines.append({
                    'device': line[0],
                    'offset': int(line[1], 0),
                    'size': int(line[2], 0),
                    'sector': int(line[3], 0) if len(line) > 3 else None,
                })
    return lines


def wks_layout(path):
    """(partition table end, first partition's start) of a wks file."""
    gpt = False
    first_align_kib = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith('bootloader') and '--ptable gpt' in line:
                gpt = True
            if line.startswith('part ') and first_align_kib is None:
                m = re.search(r'--align\s+(\d+)', line)
                first_align_kib = int(m.group(1)) if m else 1
    table_end = GPT_END if gpt else MBR_END
    # wic puts the first partition at the first multiple of --align past the
    # partition table.
    align = first_align_kib * 1024
    start = ((table_end + align - 1) // align) * align
    return table_end, start


def check_board(machine, cfg, env, layout):
    """Problems (sentences) for one board; cfg: CONFIG values, env: the
    fw_env.config lines, layout: (table end, first partition start) or None
    when the environment is not on the boot disk."""
    problems = []
    redundant = cfg.get('CONFIG_ENV_REDUNDANT') == 'y'
    want = 2 if redundant else 1
    if len(env) != want:
        problems.append('%s: fw_env.config has %d copies, U-Boot keeps %d (CONFIG_ENV_REDUNDANT=%s)'
                        % (machine, len(env), want, cfg.get('CONFIG_ENV_REDUNDANT', 'n')))
    size = int(cfg.get('CONFIG_ENV_SIZE', '0'), 0)
    for n, line in enumerate(env, 1):
        if line['size'] != size:
            problems.append('%s: fw_env.config copy %d is 0x%x bytes, CONFIG_ENV_SIZE is 0x%x'
                            % (machine, n, line['size'], size))
    if cfg.get('CONFIG_ENV_IS_IN_MMC') == 'y':
        names = ['CONFIG_ENV_OFFSET', 'CONFIG_ENV_OFFSET_REDUND'][:want]
        where = [int(cfg.get(k, '-1'), 0) for k in names]
        if not all(line['device'].startswith('/dev/mmcblk') for line in env):
            problems.append('%s: an MMC environment, but fw_env.config names %s'
                            % (machine, [line['device'] for line in env]))
        if layout is None:
            problems.append('%s: an MMC environment, but no wic layout to place it in' % machine)
        else:
            table_end, first = layout
            for name, off in zip(names, where):
                if off < table_end or off + size > first:
                    problems.append('%s: %s 0x%x..0x%x overlaps the partition table (to 0x%x) or the first partition (from 0x%x)'
                                    % (machine, name, off, off + size, table_end, first))
    elif cfg.get('CONFIG_ENV_IS_IN_FLASH') == 'y':
        names = ['CONFIG_ENV_ADDR', 'CONFIG_ENV_ADDR_REDUND'][:want]
        where = [int(cfg.get(k, '-1'), 0) - QEMU_FLASH[0] for k in names]
        sector = int(cfg.get('CONFIG_ENV_SECT_SIZE', '0'), 0)
        for name, off in zip(names, where):
            if sector == 0 or off % sector or size > sector:
                problems.append('%s: %s 0x%x is not one copy at the start of its own 0x%x erase block'
                                % (machine, name, off, sector))
            if not QEMU_FLASH[0] <= off < QEMU_FLASH[1] - size:
                problems.append('%s: %s 0x%x is outside the flash' % (machine, name, off))
        if len(set(off // sector for off in where if sector)) != len(where):
            problems.append('%s: the copies share an erase block, so one erase loses both' % machine)
        for line in env:
            if line['sector'] != sector:
                problems.append('%s: fw_env.config sector size %s, CONFIG_ENV_SECT_SIZE 0x%x'
                                % (machine, line['sector'], sector))
    else:
        problems.append('%s: the environment is neither in MMC nor in flash; this check does not know where it is'
                        % machine)
        return problems
    offsets = [line['offset'] for line in env]
    if offsets != where[:len(offsets)]:
        problems.append('%s: fw_env.config offsets %s, U-Boot %s'
                        % (machine, [hex(o) for o in offsets], [hex(o) for o in where]))
    spans = sorted((o, o + size) for o in where)
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
        problems.append('%s: the two copies overlap' % machine)
    return problems


def board_files(bsp, machine):
    """The files bitbake would pick: <machine>/ first, then rpi/ for the Pis."""
    overrides = [machine]
    if 'hearth-rpi.inc' in open(os.path.join(bsp, 'conf/hearth-bsp', machine + '.conf')).read():
        overrides.append('rpi')
    found = {}
    for name in ('hearth-env.cfg', 'fw_env.config'):
        for o in overrides:
            path = os.path.join(bsp, UBOOT_DIR, o, name)
            if os.path.exists(path):
                found[name] = path
                break
        else:
            sys.exit('check-uboot-env: %s: no %s in %s' % (machine, name, overrides))
    return found


def main(bsp):
    problems = []
    boards = []
    for machine, values in uboot_boards(bsp):
        files = board_files(bsp, machine)
        cfg = fragment_values(os.path.join(bsp, UBOOT_DIR, 'hearth-env-redundant.cfg'))
        cfg.update(fragment_values(files['hearth-env.cfg']))
        env = fw_env_lines(files['fw_env.config'])
        layout = None
        if cfg.get('CONFIG_ENV_IS_IN_MMC') == 'y':
            layout = wks_layout(os.path.join(bsp, WIC_DIR, values['WKS_FILE']))
        problems += check_board(machine, cfg, env, layout)
        boards.append(machine)
    for p in problems:
        print('check-uboot-env: ' + p, file=sys.stderr)
    if not boards:
        sys.exit('check-uboot-env: no U-Boot board found in %s/conf/hearth-bsp' % bsp)
    if problems:
        sys.exit(1)
    print('check-uboot-env: fragments, fw_env.config and layout agree for %s' % ' '.join(boards))


def self_test():
    """Each kind of disagreement is caught (run by scripts/check)."""
    pi = {'CONFIG_ENV_REDUNDANT': 'y', 'CONFIG_ENV_IS_IN_MMC': 'y', 'CONFIG_ENV_SIZE': '0x4000',
          'CONFIG_ENV_OFFSET': '0x400000', 'CONFIG_ENV_OFFSET_REDUND': '0x800000'}
    env = [{'device': '/dev/mmcblk0', 'offset': 0x400000, 'size': 0x4000, 'sector': None},
           {'device': '/dev/mmcblk0', 'offset': 0x800000, 'size': 0x4000, 'sector': None}]
    layout = (MBR_END, 16 << 20)
    assert check_board('pi', pi, env, layout) == [], check_board('pi', pi, env, layout)
    cases = [
        ('a wrong offset', dict(pi, CONFIG_ENV_OFFSET_REDUND='0x804000'), env, layout),
        ('a wrong size', dict(pi, CONFIG_ENV_SIZE='0x2000'), env, layout),
        ('one copy in fw_env.config', pi, env[:1], layout),
        ('the first partition at 8 MiB', pi, env, (MBR_END, 8 << 20)),
        ('the environment over the MBR', dict(pi, CONFIG_ENV_OFFSET='0x0'),
         [dict(env[0], offset=0), env[1]], layout),
    ]
    flash = {'CONFIG_ENV_REDUNDANT': 'y', 'CONFIG_ENV_IS_IN_FLASH': 'y', 'CONFIG_ENV_SIZE': '0x4000',
             'CONFIG_ENV_ADDR': '0x4000000', 'CONFIG_ENV_ADDR_REDUND': '0x4040000',
             'CONFIG_ENV_SECT_SIZE': '0x40000'}
    fenv = [{'device': '/dev/mtd0', 'offset': 0x4000000, 'size': 0x4000, 'sector': 0x40000},
            {'device': '/dev/mtd0', 'offset': 0x4040000, 'size': 0x4000, 'sector': 0x40000}]
    assert check_board('qemu', flash, fenv, None) == [], check_board('qemu', flash, fenv, None)
    cases += [
        ('copies in one erase block', dict(flash, CONFIG_ENV_ADDR_REDUND='0x4004000'),
         [fenv[0], dict(fenv[1], offset=0x4004000)], None),
        ('a sector size that differs', flash, [fenv[0], dict(fenv[1], sector=0x10000)], None),
    ]
    for what, cfg, e, lay in cases:
        assert check_board('x', cfg, e, lay), 'not caught: ' + what
    print('check-uboot-env: self-test: %d bad layouts caught' % len(cases))


if __name__ == '__main__':
    if sys.argv[1:] == ['--self-test']:
        self_test()
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        sys.exit(__doc__)
