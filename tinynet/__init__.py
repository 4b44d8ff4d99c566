"""tinynet: a from-scratch convolutional network library in NumPy + Numba.

Numba is imported by the first kernel an op calls, not here; ``tinynet.backends.numba.enabled = False``
(or ``TINYNET_NUMBA=0``) runs every op in plain NumPy instead (see ``tinynet/backends/numba.py``).

Hand-written forward and backward passes (no autograd), PyTorch's names, layouts and semantics::

    import numpy as np, tinynet
    from tinynet import nn

    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 13 * 13, 10))
    out = model(x)                           # x: (N, 1, 28, 28) float32
    loss = criterion(out, y)
    model.zero_grad(); model.backward(criterion.backward()); optimizer.step()
"""
import os as _os
import sys as _sys

# OpenBLAS reads this when it loads: idle BLAS threads sleep at once instead of spinning for ~0.1 s on the cores
# the next Numba kernel needs (see tinynet/_numba.py). A user's setting wins. NumPy imported first: blas.py below.
_numpy_first = "numpy" in _sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in _os.environ
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")

from . import _memory  # noqa: E402,F401  (reuse freed memory: see tinynet/_memory.py)
from . import backends, blas, functional, init, nn, optim, serialization  # noqa: E402
from ._checks import ShapeError  # noqa: E402
from ._grad_mode import is_grad_enabled, no_grad
from .backends.numba import report_compilation  # noqa: E402
from .gradcheck import GradcheckError, gradcheck, numerical_gradient, relative_error
from .serialization import load, load_metadata, save

if _numpy_first:
    blas._openblas_threads_sleep_at_once()

__version__ = "0.1.0"

__all__ = [
    "backends", "blas", "nn", "functional", "init", "optim", "serialization",
    "save", "load", "load_metadata", "gradcheck", "numerical_gradient", "relative_error", "GradcheckError",
    "no_grad", "is_grad_enabled", "ShapeError", "report_compilation",
]
