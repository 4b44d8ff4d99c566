"""This machine's single-precision matmul peak, and the BLAS that gives it (``bench_train.py`` measures the
training's GFLOP/s against it)."""
from __future__ import annotations

import time


def blas_description() -> str:
    """NumPy's BLAS as ``threadpoolctl`` sees it: library, version, CPU kernel, threads."""
    from threadpoolctl import threadpool_info

    pools = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    if not pools:
        return "unknown BLAS"
    pool = pools[0]
    kernel = f", {pool['architecture']} kernel" if pool.get("architecture") else ""
    return f"{pool['internal_api']} {pool.get('version') or ''}{kernel}, {pool['num_threads']} threads".replace("  ", " ")


def matmul_peak(sizes: tuple[int, ...] = (1024, 2048), repeat: int = 5) -> dict:
    """This process's single-precision matmul peak: the best GFLOP/s of ``repeat`` products ``a @ b``
    (float32, n x n) at each of ``sizes``, after one warm-up product each; and the BLAS that gave it."""
    import numpy as np

    best = 0.0
    for n in sizes:
        a = np.random.default_rng(0).random((n, n), dtype=np.float32)
        b = a.T.copy()
        a @ b  # warm-up: threads started, pages touched
        for _ in range(repeat):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return dict(matmul_peak_gflops=best, blas=blas_description())
