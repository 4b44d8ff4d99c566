"""``python -m keypoints <command>`` (:mod:`keypoints.cli`).

A command that returns ends the process at once: the functions registered with ``atexit`` run, stdout and stderr
are flushed, and ``os._exit`` skips the interpreter's teardown of every module and object, which took 50-60 ms
after a ``predict`` of one photo (NumPy's and OpenCV's modules; 3 ms this way; 7 ms for a Python that imported
nothing). Every file a command writes is closed before it returns. A command that raises ends as Python ends it.
"""
import atexit
import os
import sys

from .cli import main, run

code = run(main)
atexit._run_exitfuncs()  # what sys.exit would run (thread pools, temporary folders, logging), then no teardown
try:
    sys.stdout.flush()
    sys.stderr.flush()
except (BrokenPipeError, OSError):  # a reader that went away: Python's own exit says 120
    code = code or 120
os._exit(code if isinstance(code, int) else 0)
