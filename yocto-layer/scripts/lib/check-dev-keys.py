#!/usr/bin/env python3
"""The development-key policy of meta-hearth, run without bitbake.

Runs hearth_sanity.bbclass's own Python (its `def` functions, its event
handler and its task functions, exec'd from the class file, so nothing here
is a copy of the logic) against a stand-in datastore and these cases:

  - the class's fingerprints of the development certificates are openssl's
    and are all in files/dev-keys/fingerprints;
  - the development root COPIED to another path, HEARTH_ALLOW_DEV_KEYS unset:
    refused, with the sentence that says what to do (also the install task);
  - the same with HEARTH_ALLOW_DEV_KEYS = "1": passes with a warning, and the
    install task writes /etc/hearth/development-keys with the marker's text;
  - a fresh P-256 root (openssl req -x509): passes, no warning, no marker;
  - a fresh root but the development signing certificate: refused;
  - the dev image (../qemu/layer-files) installs the marker exactly when
    the trust anchor it installs is a development key.

usage: check-dev-keys.py YOCTO_LAYER_DIR
"""
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import types


class Refused(Exception):
    """bb.fatal, or a SanityCheckFailed event."""


def bb_stub(log):
    bb = types.SimpleNamespace()
    bb.warn = lambda msg: log.append(msg)
    bb.note = lambda *a: None

    def fatal(msg):
        raise Refused(msg)
    bb.fatal = fatal
    bb.utils = types.SimpleNamespace(mkdirhier=lambda p: os.makedirs(p, exist_ok=True))

    class SanityCheckFailed:
        def __init__(self, msg, network_error=False):
            self.msg = msg

    def fire(event, d):
        if isinstance(event, SanityCheckFailed):
            raise Refused(event.msg)
    bb.event = types.SimpleNamespace(SanityCheckFailed=SanityCheckFailed, fire=fire)
    return bb


class Data:
    """The part of bitbake's datastore the class uses: ${VAR} expansion."""

    def __init__(self, values):
        self.values = values

    def expand(self, s):
        return re.sub(r'\$\{([A-Za-z0-9_]+)\}', lambda m: self.getVar(m.group(1)) or '', s)

    def getVar(self, name):
        value = self.values.get(name)
        return None if value is None else self.expand(value)


def load_class(path, bb):
    """The class's plain assignments, and a namespace with its Python."""
    text = open(path).read()
    assigns = dict(re.findall(r'^([A-Z_]+) \??\??= "(.*)"$', text, re.M))
    ns = {'os': os, 'bb': bb}
    # `def` functions: from "def" to the next unindented line.
    for block in re.findall(r'^def .*?(?=^\S|\Z)', text, re.M | re.S):
        exec(block, ns)
    # `python name() { ... }` functions, made callable as name(d[, e]).
    for name, body in re.findall(r'^python (\w+)\(\) \{\n(.*?)^\}', text, re.M | re.S):
        exec('def %s(d, e=None):\n%s' % (name, textwrap.indent(textwrap.dedent(body), '    ')), ns)
    return assigns, ns


def openssl_fingerprint(cert):
    pub = subprocess.run(['openssl', 'x509', '-in', cert, '-noout', '-pubkey'],
                         check=True, capture_output=True).stdout
    der = subprocess.run(['openssl', 'pkey', '-pubin', '-outform', 'DER'], input=pub,
                         check=True, capture_output=True).stdout
    import hashlib
    return hashlib.sha256(der).hexdigest()


def main():
    top = sys.argv[1]
    layer = os.path.join(top, 'meta-hearth')
    keys = os.path.join(layer, 'files/dev-keys')
    warnings = []
    bb = bb_stub(warnings)
    assigns, ns = load_class(os.path.join(layer, 'classes-global/hearth_sanity.bbclass'), bb)
    failures = []

    def check(ok, what):
        print('%s: %s' % ('ok' if ok else 'FAILED', what))
        if not ok:
            failures.append(what)

    tmp = tempfile.mkdtemp()
    fresh = os.path.join(tmp, 'vendor-root.cert.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
                    '-noenc', '-keyout', os.path.join(tmp, 'vendor-root.key.pem'), '-out', fresh,
                    '-days', '1', '-subj', '/CN=check-dev-keys vendor root'],
                   check=True, capture_output=True)
    copied = os.path.join(tmp, 'copied-root.cert.pem')
    with open(os.path.join(keys, 'hearth-dev-root.cert.pem')) as src, open(copied, 'w') as dst:
        dst.write(src.read())
    marker_text = open(os.path.join(keys, 'development-keys.marker')).read() \
        if os.path.exists(os.path.join(keys, 'development-keys.marker')) else None

    # 1. The class's fingerprints are openssl's, and the list has the dev ones.
    fingerprint = ns.get('hearth_cert_fingerprints')
    listed = open(os.path.join(keys, 'fingerprints')).read() \
        if os.path.exists(os.path.join(keys, 'fingerprints')) else ''
    for cert in sorted(f for f in os.listdir(keys) if f.endswith('.cert.pem')) + [fresh]:
        path = cert if os.path.isabs(cert) else os.path.join(keys, cert)
        want = openssl_fingerprint(path)
        got = fingerprint(path) if fingerprint else None
        check(got == [want], 'fingerprint of %s is openssl\'s (%s)' % (os.path.basename(path), want))
        if path != fresh:
            check(re.search(r'^%s\s' % want, listed, re.M) is not None,
                  '%s is in files/dev-keys/fingerprints' % cert)

    def run(label, trust, signing, allow, refused, marker):
        """Run the SanityCheck handler and swupdate's install-task functions."""
        print('-- %s' % label)
        del warnings[:]
        root = os.path.join(tmp, 'image-' + re.sub(r'\W+', '-', label))
        d = Data(dict(assigns, HEARTH_DEV_KEYS_DIR=keys, HEARTH_SWU_TRUST_CERT=trust,
                      HEARTH_SWU_SIGNING_CERT=signing, HEARTH_ALLOW_DEV_KEYS=allow,
                      SECURITY_CFLAGS='-fstack-protector-strong', D=root, sysconfdir='/etc'))
        event = types.SimpleNamespace(data=d, generateevents=False)
        why = None
        try:
            ns['hearth_sanity_eventhandler'](d, event)
        except Refused as err:
            why = str(err)
        if refused:
            check(why is not None and 'HEARTH_ALLOW_DEV_KEYS = "1"' in why and 'hearth-release keygen' in why,
                  'the build is refused, saying what to do: %s' % why)
            task_why = None
            try:
                ns['hearth_check_trust_cert'](d)
            except Refused as err:
                task_why = str(err)
            check(task_why is not None and task_why == why, 'swupdate\'s install task is refused the same way')
            return
        check(why is None, 'the build passes%s' % ('' if why is None else ': ' + why))
        check(bool(warnings) == marker, 'a warning is printed' if marker else 'no warning')
        for w in warnings:
            print('   bb.warn: %s' % w)
        if 'hearth_install_dev_keys_marker' not in ns:
            check(False, 'the class has hearth_install_dev_keys_marker (swupdate do_install postfunc)')
            return
        ns['hearth_install_dev_keys_marker'](d)
        installed = os.path.join(root, 'etc/hearth/development-keys')
        if marker:
            ok = os.path.isfile(installed) and open(installed).read() == marker_text \
                and oct(os.stat(installed).st_mode & 0o777) == '0o644'
            check(ok, 'the image gets /etc/hearth/development-keys (0644): %r' % marker_text)
        else:
            check(not os.path.exists(installed), 'the image has no /etc/hearth/development-keys')

    dev_signing = os.path.join(keys, 'hearth-dev-signing.cert.pem')
    run('copied development root, HEARTH_ALLOW_DEV_KEYS unset', copied, dev_signing, None,
        refused=True, marker=False)
    run('copied development root, HEARTH_ALLOW_DEV_KEYS = "1"', copied, dev_signing, '1',
        refused=False, marker=True)
    run('fresh root and signing certificate', fresh, fresh, None, refused=False, marker=False)
    run('fresh root, development signing certificate', fresh, dev_signing, None,
        refused=True, marker=False)

    # The dev image (qemu/layer-files, beside this layer in the Hearth
    # repository) carries the marker exactly when its trust anchor is a
    # development key, as the swupdate recipe does.
    layer_files = os.path.join(top, '../qemu/layer-files')
    if os.path.exists(layer_files):
        print('-- the dev image (qemu/layer-files)')
        installs = {}
        for line in open(layer_files):
            fields = line.split('#', 1)[0].split()
            if len(fields) >= 3 and not fields[0].startswith('@'):
                installs[fields[1]] = fields[0]
        anchor = installs.get('/usr/share/hearth/swupdate-trust.pem')
        check(anchor is not None, 'it installs a trust anchor to /usr/share/hearth/swupdate-trust.pem')
        if anchor:
            d = Data(dict(assigns, HEARTH_DEV_KEYS_DIR=keys, HEARTH_SWU_TRUST_CERT=os.path.join(top, anchor)))
            dev = ns['hearth_trusts_dev_keys'](d)
            marker = installs.get('/etc/hearth/development-keys')
            check(marker == ('meta-hearth/files/dev-keys/development-keys.marker' if dev else None),
                  '/etc/hearth/development-keys is %s (its anchor %s a development key)'
                  % (marker or 'not installed', 'is' if dev else 'is not'))

    subprocess.run(['rm', '-rf', tmp])
    if failures:
        print('check-dev-keys: %d failed' % len(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
