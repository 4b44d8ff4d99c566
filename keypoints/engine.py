"""Which engine runs the network of the photo commands: tinynet's Numba kernels or plain NumPy.

tinynet runs every op either by a Numba kernel or by its plain NumPy reference
(``tinynet.backends.numba.enabled``). The kernels are faster per face, but a process pays for them once:
importing Numba and loading the cached kernels costs 0.6 to 0.9 s, and on a machine whose kernel cache is
empty (the first run after ``pip install``) compiling them costs about 4-5 s (``predict`` of the portrait,
``benchmarks/bench_start.py``: 5.6-6.9 s cold against 1.7-2.0 s warm; ``python -m tinynet.compile`` compiles them
ahead, on both cores). A few photos are answered sooner without them. The rule, for ``--engine auto`` (the
default of ``predict``, ``filter``, ``video``, ``align`` and ``show-maps``):

- ``numpy`` for at most ``AUTO_NUMPY_MAX_PHOTOS`` photos (a single photo for ``filter`` and ``show-maps``);
- ``numba`` for more photos, for a video, and always for training and evaluation (which do not ask).

The choice is made once, in the process that reads the command line, from the number of photos given,
and travels with :class:`keypoints.batch.PredictOptions` to every ``--workers`` process and Dask task, so
every photo of a run goes through the same engine (the two differ in the last bits of float32: points
within about 1e-4 px of each other). The library's ``Predictor`` uses whichever engine
``tinynet.backends.numba.enabled`` selects (Numba unless switched off), e.g.
``with tinynet.backends.numba.flags(enabled=False): predictor.predict(images)``.
"""
from __future__ import annotations

import argparse
import contextlib

import tinynet.backends.numba as numba_backend

#: the values of ``--engine``
ENGINES = ("auto", "numpy", "numba")

#: ``auto`` runs NumPy for at most this many photos. Measured on 2 busy cores (load 2-2.5), one OpenBLAS thread
#: as ``predict`` runs, ``predict_faces`` on the first 30 test photos (each one face found): 71-82 ms per photo
#: on the kernels, 102-111 ms in NumPy, so the kernels save 20-30 ms per photo; their fixed cost in a fresh
#: process was 0.56-0.74 s warm (import Numba, load the cached kernels) and about 18 s with an empty cache when
#: this was measured; 4-5 s since the kernels are compiled once each, without ``prange`` (``predict`` of the
#: portrait, cold, 5.6-6.9 s against 1.7-2.0 s warm). They pay off after some 20-35 photos warm and a few hundred
#: cold: 32 keeps a warm run of up to 32 photos within a few tenths of a second of the kernels and spares a first
#: run of a few photos the compilation.
AUTO_NUMPY_MAX_PHOTOS = 32


def choose_engine(engine: str, photos: int | None) -> str:
    """``"numpy"`` or ``"numba"`` for ``--engine engine`` and a run of ``photos`` photos (None: a video, or
    an unknown number of images, which ``auto`` gives to Numba)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine != "auto":
        return engine
    return "numpy" if photos is not None and photos <= AUTO_NUMPY_MAX_PHOTOS else "numba"


def engine_flags(engine: str) -> contextlib.AbstractContextManager:
    """A context in which tinynet runs on ``engine`` (``"numpy"`` or ``"numba"``; ``"auto"`` must have been
    resolved by :func:`choose_engine` first)."""
    if engine not in ("numpy", "numba"):
        raise ValueError(f"engine_flags: expected 'numpy' or 'numba' (auto resolved by choose_engine), got {engine!r}")
    return numba_backend.flags(enabled=engine == "numba")


def add_engine_option(parser: argparse.ArgumentParser, auto: str) -> None:
    """``--engine {auto,numpy,numba}``; ``auto`` says what auto means for this command."""
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="what runs the network: tinynet's Numba kernels (fastest per face, but 0.6-0.9 s to"
                             " load per process and about 5 s to compile on a first run, or ahead with python -m"
                             " tinynet.compile) or plain NumPy (no start-up"
                             f" cost); auto: {auto} (default %(default)s)")
