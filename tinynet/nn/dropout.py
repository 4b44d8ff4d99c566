"""``Dropout``: inverted dropout with ``p`` the probability of dropping a unit (PyTorch's meaning)."""
from __future__ import annotations

import numpy as np

from .._checks import check_float_array
from ..functional.dropout import dropout_backward, dropout_forward
from .module import Module


class Dropout(Module):
    """Zero each element with probability ``p`` in training and scale the rest by ``1 / (1 - p)``.

    In eval mode it is the identity. Any input shape. Backward: ``dx = dout * mask``.

    Parameters
    ----------
    p : float in [0, 1]
        Drop probability (PyTorch's convention; CS231n's ``p`` is the keep probability).
    rng : np.random.Generator, optional
        Where masks come from. Pass the model's generator for reproducible runs; ``rng`` may also be
        reassigned later (``layer.rng = np.random.default_rng(seed)``).
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p}")
        self.p = float(p)
        self.rng = np.random.default_rng() if rng is None else rng

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_float_array(self._where(), x)
        out, cache = dropout_forward(x, self.p, self.training, self.rng)
        self._save_for_backward(cache, out)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dropout_backward(dout, self._saved_cache(dout))
