"""Inverted dropout (PyTorch's semantics: ``p`` is the probability of DROPPING a unit).

CS231n's assignment uses ``p`` as the keep probability; we follow PyTorch so weights and recipes
transfer. Kept units are scaled by ``1 / (1 - p)`` during training so that evaluation is the identity.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class DropoutCache(NamedTuple):
    mask: np.ndarray | None  # 0 or 1/(1-p), x's shape and dtype; None when dropout was the identity


def dropout_forward(x: np.ndarray, p: float, training: bool, rng: np.random.Generator) -> tuple[np.ndarray, DropoutCache]:
    """``out = x * mask`` with ``mask = (u >= p) / (1 - p)``, ``u ~ U[0, 1)``; identity in eval or when p == 0.

    Parameters
    ----------
    x : any shape
    p : drop probability in [0, 1]
    rng : the generator the mask is drawn from (explicit, so runs are reproducible)
    """
    if not training or p == 0.0:
        return x.copy(), DropoutCache(None)
    if p == 1.0:
        mask = np.zeros_like(x)
    else:
        mask = rng.random(x.shape, dtype=x.dtype) >= p  # draw in x's dtype: no float64 temporary
        mask = mask.astype(x.dtype)
        mask *= 1.0 / (1.0 - p)
    return x * mask, DropoutCache(mask)


def dropout_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """``dx = dout * mask`` (the same units are dropped and the same scale applies)."""
    return dout.copy() if cache.mask is None else dout * cache.mask
