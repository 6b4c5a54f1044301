#!/usr/bin/env python3
"""Validate kas files offline: each file (and every local file it includes)
against the schema shipped with kas, then the merged configuration of each
top-level file for what Hearth requires (a machine, distro "hearth", every
remote repository pinned to a full commit on a named branch).

Run with the Python that has kas installed (pip install kas).
usage: kas_validate.py FILE.yml ...
"""
import os
import re
import subprocess
import sys

import yaml
from jsonschema.validators import validator_for
from kas.configschema import CONFIGSCHEMA


def repo_root(path):
    out = subprocess.run(['git', '-C', os.path.dirname(os.path.abspath(path)), 'rev-parse', '--show-toplevel'],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def merge(dest, upd):
    """kas's merge: mappings merge recursively, anything else is replaced."""
    for key, value in upd.items():
        if isinstance(value, dict) and isinstance(dest.get(key), dict):
            merge(dest[key], value)
        else:
            dest[key] = value
    return dest


def load(path, root, validator, errors, seen):
    with open(path) as f:
        cfg = yaml.safe_load(f)
    rel = os.path.relpath(path, root)
    for err in validator.iter_errors(cfg):
        errors.append('%s: %s (at %s)' % (rel, err.message, '/'.join(str(p) for p in err.absolute_path) or 'top'))
    merged = {}
    for inc in (cfg.get('header') or {}).get('includes', []):
        if not isinstance(inc, str):
            errors.append('%s: include %r from another repository cannot be checked offline' % (rel, inc))
            continue
        inc_path = os.path.join(root, inc)  # kas: local includes are repository-relative
        if not os.path.isfile(inc_path):
            errors.append('%s: include %s does not exist (kas includes are relative to the repository root)' % (rel, inc))
            continue
        if inc_path in seen:
            errors.append('%s: include loop through %s' % (rel, inc))
            continue
        merge(merged, load(inc_path, root, validator, errors, seen | {inc_path}))
    return merge(merged, cfg)


def main():
    validator = validator_for(CONFIGSCHEMA)(CONFIGSCHEMA)
    errors = []
    for path in sys.argv[1:]:
        root = repo_root(path)
        cfg = load(os.path.abspath(path), root, validator, errors, {os.path.abspath(path)})
        rel = os.path.relpath(path, root)
        if not cfg.get('machine'):
            errors.append('%s: no machine' % rel)
        if cfg.get('distro') != 'hearth':
            errors.append('%s: distro is %r, not "hearth"' % (rel, cfg.get('distro')))
        for name, repo in (cfg.get('repos') or {}).items():
            if not repo or not repo.get('url'):
                continue
            if not re.fullmatch(r'[0-9a-f]{40}', str(repo.get('commit', ''))):
                errors.append('%s: repo %s is not pinned to a full commit id' % (rel, name))
            if not repo.get('branch'):
                errors.append('%s: repo %s names no branch' % (rel, name))
        print('%s: machine %s, distro %s, %d repos, targets %s' % (
            rel, cfg.get('machine'), cfg.get('distro'), len(cfg.get('repos') or {}), cfg.get('target')))
    for e in errors:
        print('kas_validate: ' + e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
