#!/usr/bin/python3
"""transcript_compare.py EXPECTED ACTUAL — compares two CLI transcripts line by line.

Text and integers must match exactly (ids, counts, exit codes, finish reasons). Floating-point
numbers (a decimal point or an exponent) are compared with a tolerance, because another CPU or
another OpenBLAS kernel (AVX2 vs AVX-512) changes the low digits of sums:
    |expected - actual| <= max(REL * max(|e|, |a|), ULP_PRINTED)
with REL = 1e-4 and ULP_PRINTED one unit in the last printed decimal of the expected value
(so "-21.43" may read "-21.44": a rounding boundary can flip by one printed unit). A float
printed to 17 digits thus matches within 1e-4 relative, far above the ~2e-6 seen between kernels
and far below any real change of a model's numbers. Exits 0 when equal, 1 (with the lines that
differ) otherwise."""
import difflib
import re
import sys

REL = 1e-4
NUM = re.compile(r'-?(?:\d+\.\d+|\d+)(?:[eE][-+]?\d+)?')


def split(line):
    """The line as alternating text and number tokens."""
    out, pos = [], 0
    for m in NUM.finditer(line):
        out.append(('t', line[pos:m.start()]))
        out.append(('n', m.group()))
        pos = m.end()
    out.append(('t', line[pos:]))
    return out


def is_float(s):
    return '.' in s or 'e' in s or 'E' in s


def last_unit(s):
    mant = re.split('[eE]', s)[0]
    exp = int(re.split('[eE]', s)[1]) if re.search('[eE]', s) else 0
    decimals = len(mant.split('.')[1]) if '.' in mant else 0
    return 10.0 ** (exp - decimals)


def numbers_close(e, a):
    if not is_float(e) or not is_float(a):
        return e == a
    x, y = float(e), float(a)
    return abs(x - y) <= max(REL * max(abs(x), abs(y)), last_unit(e) * 1.0000001)


def lines_match(e, a):
    if e == a:
        return True
    te, ta = split(e), split(a)
    if len(te) != len(ta):
        return False
    for (ke, ve), (ka, va) in zip(te, ta):
        if ke != ka:
            return False
        if ke == 't':
            # Columns padded to a width may shift by the width of a flipped digit or sign.
            if ve != va and ve.strip() != va.strip():
                return False
        elif not numbers_close(ve, va):
            return False
    return True


def main():
    exp = open(sys.argv[1], encoding='utf-8', errors='surrogateescape').read().splitlines()
    act = open(sys.argv[2], encoding='utf-8', errors='surrogateescape').read().splitlines()
    bad = []
    if len(exp) != len(act):
        bad.append(f'line count differs: expected {len(exp)}, got {len(act)}')
    else:
        for i, (e, a) in enumerate(zip(exp, act), 1):
            if not lines_match(e, a):
                bad.append(f'line {i} differs beyond tolerance')
    if not bad:
        return 0
    sys.stdout.writelines(difflib.unified_diff([l + '\n' for l in exp], [l + '\n' for l in act],
                                               sys.argv[1], sys.argv[2]))
    for b in bad[:20]:
        print(b)
    return 1


if __name__ == '__main__':
    sys.exit(main())
