#!/usr/bin/env python3
"""signal_at_step.py LOG STEP PID [SIGNAL]: sends SIGNAL (default KILL) to PID as soon as the
trainer's --json-log LOG has a line for step STEP, so a resume test interrupts the run mid-way.

A shell loop of grep + sleep 0.01 reacts in ~15 ms, and a tiny model runs dozens of steps in that
time: on a fast, quiet machine the run could finish before the kill (a flaky test). This watcher
reads only what was appended, every 0.2 ms, and signals at once. Exits 1 if the step never came
(60 s) or the process ended first."""
import os
import signal
import sys
import time

log, step, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sig = getattr(signal, "SIG" + (sys.argv[4] if len(sys.argv) > 4 else "KILL"))
needle = b'"event":"step","step":%d,' % step
seen, off = b"", 0
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        with open(log, "rb") as f:
            f.seek(off)
            chunk = f.read()
    except FileNotFoundError:
        chunk = b""
    if chunk:
        off += len(chunk)
        seen = seen[-200:] + chunk
        if needle in seen:
            os.kill(pid, sig)
            sys.exit(0)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    time.sleep(0.0002)
sys.exit(1)
