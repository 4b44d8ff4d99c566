"""``no_grad()``: run forward passes without keeping what backward would need.

tinynet has no autograd, but every layer's forward keeps a cache for its backward. In inference
that cache is wasted memory (BatchNorm's normalised input, Dropout's mask, ...); inside
``with tinynet.no_grad():`` layers skip it, as ``torch.no_grad()`` skips building a graph.
"""
from __future__ import annotations

import contextlib
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def no_grad():
    previous = is_grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = previous
