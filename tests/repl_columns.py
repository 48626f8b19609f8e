#!/usr/bin/env python3
"""repl_columns.py — side-by-side columns (repl/columns.c) line up on a terminal: every row of a
band has its ' | ' separators at the same display columns and the same total width, measured
here with Python's own Unicode tables (East Asian Width W/F = 2 columns, combining marks and
format characters 0), for texts mixing ASCII, CJK, Hangul, fullwidth letters, emoji, combining
accents and long words that must wrap.

usage: repl_columns.py REPL_COLUMNS_EXE
"""
import os
import subprocess
import sys
import unicodedata


def width(s):
    w = 0
    for ch in s:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        w += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return w


TEXTS = [
    "Hello, world! A plain ASCII answer that is long enough to wrap over several lines of its column.",
    "漢字とかなが混じった日本語の答えです。幅の広い文字は二列を使います。",
    "한국어 답변도 두 칸씩 차지합니다. 😀🎉 emoji too, and ＦＵＬＬＷＩＤＴＨ letters.",
    "Cafe\u0301 cre\u0300me bru\u0302le\u0301e: combining accents take no column. e\u0301e\u0301e\u0301",
    "supercalifragilisticexpialidocious_without_any_blank_to_break_at_all_1234567890",
]

fails = 0
for cols in (100, 61, 200):
    env = dict(os.environ, COLUMNS=str(cols))
    out = subprocess.run([sys.argv[1]] + TEXTS, capture_output=True, text=True, env=env, check=True).stdout
    bands, cur = [], []
    for line in out.splitlines():
        if not line:
            bands.append(cur)
            cur = []
        else:
            cur.append(line)
    bands.append(cur)
    for b, lines in enumerate(bands):
        def seps(line):
            pos, col, i = [], 0, 0
            while i < len(line):
                if line.startswith(" | ", i) or line.startswith("-+-", i):
                    pos.append(col)
                    col += 3
                    i += 3
                else:
                    col += width(line[i])
                    i += 1
            return tuple(pos), col
        shapes = {seps(l) for l in lines}
        ok = len(shapes) == 1 and max(width(l) for l in lines) <= cols
        print("%s COLUMNS=%d band %d: %d lines, separators at %s" % ("ok  " if ok else "FAIL", cols, b, len(lines), sorted(shapes)))
        if not ok:
            fails += 1
            print(out)
    # nothing lost in wrapping: each column's cells, joined, give back its text (blanks aside)
    got = []
    for lines in bands:
        rules = [i for i, l in enumerate(lines) if set(l) <= set("-+")]
        cells = [l.split(" | ") for l in lines[rules[0] + 1:rules[1]]]
        got += ["".join("".join(row[j].split()) for row in cells) for j in range(len(cells[0]))]
    want = ["".join(t.split()) for t in TEXTS]
    if got != want:
        print("FAIL COLUMNS=%d: the columns' texts differ from the inputs:\n%s\n%s" % (cols, got, want))
        fails += 1
print("all column checks passed" if not fails else "%d column checks failed" % fails)
sys.exit(1 if fails else 0)
