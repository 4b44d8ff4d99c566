"""Another compute job on the same machine, for measuring speed under load (``bench_train.py --load N``).

The job is what a user's laptop typically runs beside a training run: a plain NumPy process multiplying
float32 matrices (1024 x 1024) in a loop with ``N`` BLAS threads, with OpenBLAS's own defaults (its idle
threads spin, as in any NumPy program), importing nothing of tinynet. It counts its products, so the
benchmark can say how much work the job itself got done beside each framework::

    with CompetingLoad(threads=2) as load:
        ...                      # measure
    load.gflops                  # the job's own rate while it ran
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# the job: report "ready" after its first product, then multiply until SIGTERM and report how many it did
JOB = """
import signal, sys, time
import numpy as np
n = 1024
a = np.random.default_rng(0).random((n, n), dtype=np.float32)
b = a.T.copy()
a @ b
print("ready", flush=True)
done, start, stop = 0, time.perf_counter(), []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
while not stop:
    a @ b
    done += 1
print(f"{done} {time.perf_counter() - start:.6f} {2 * n ** 3}", flush=True)
"""


class CompetingLoad:
    """A context manager running :data:`JOB` with ``threads`` BLAS threads while the block runs.

    After the block, ``gflops`` is the job's own rate over its life (matrix products only).
    """

    def __init__(self, threads: int):
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"CompetingLoad: threads must be a positive integer, got {threads!r}")
        self.threads = threads
        self.gflops: float | None = None
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "CompetingLoad":
        env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_THREAD_TIMEOUT"}
        env.update({name: str(self.threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
        self._process = subprocess.Popen([sys.executable, "-c", JOB], stdout=subprocess.PIPE, text=True, env=env)
        line = self._process.stdout.readline().strip()
        if line != "ready":
            self._process.kill()
            raise RuntimeError(f"CompetingLoad: the load job did not start (it printed {line!r})")
        time.sleep(0.5)  # let it reach its steady state before anything is measured
        return self

    def __exit__(self, *exc) -> None:
        process, self._process = self._process, None
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return
        fields = out.split()
        if len(fields) == 3:
            done, seconds, flops = int(fields[0]), float(fields[1]), int(fields[2])
            self.gflops = done * flops / seconds / 1e9 if seconds > 0 else None
