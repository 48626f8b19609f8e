#!/usr/bin/env python3
"""signal_at_step.py LOG STEP PID [SIGNAL]: sends SIGNAL (default KILL) to PID as soon as the
trainer's --json-log LOG has a line for step STEP, so a resume test interrupts the run mid-way.
signal_at_step.py --run LOG STEP SIGNAL OUT -- COMMAND...: starts COMMAND itself (output to OUT)
once the watcher is ready, does the same, and exits with the command's status as a shell reports
it (128 + the signal when one ended it).

A shell loop of grep + sleep 0.01 reacts in ~15 ms, and a tiny model runs dozens of steps in that
time: on a fast, quiet machine the run could finish before the kill (a flaky test). This watcher
reads only what was appended, every 0.2 ms, and signals at once; with --run the command cannot
get ahead of the watcher's own start-up. Exits 1 if the step never came (60 s) or the process
ended first."""
import os
import signal
import subprocess
import sys
import time

child = None
if sys.argv[1] == "--run":
    log, step, signame, out = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    assert sys.argv[6] == "--"
    child = subprocess.Popen(sys.argv[7:], stdout=open(out, "w"), stderr=subprocess.STDOUT)
    pid = child.pid
    sig = getattr(signal, "SIG" + signame)
else:
    log, step, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sig = getattr(signal, "SIG" + (sys.argv[4] if len(sys.argv) > 4 else "KILL"))


def finish(code):
    if child is None:
        sys.exit(code)
    rc = child.wait()
    sys.exit(128 - rc if rc < 0 else rc)


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
            finish(0)
    if child is not None and child.poll() is not None:
        finish(1)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        finish(1)
    time.sleep(0.0002)
finish(1)
