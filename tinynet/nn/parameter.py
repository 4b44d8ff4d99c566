"""``Parameter``: a trainable array and the gradient accumulated for it (``torch.nn.Parameter``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import FLOAT_DTYPES


class Parameter:
    """A trainable array and the gradient accumulated for it.

    Attributes
    ----------
    data : ndarray
        The values, float32 by default. Optimizers update it in place.
    grad : ndarray or None
        Same shape and dtype as ``data``; ``None`` until the first backward (and after
        ``zero_grad()``), as in PyTorch.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: Any, dtype: Any = None, copy: bool = True):
        """``copy=False`` takes ``data`` itself when it is an ndarray of the dtype: for an array made for the
        parameter and held by no one else (a layer's freshly initialised weight), whose copy would be one more
        pass over the model's memory (NaimishNet-96: 30 MB, 10-20 ms of building it to load a checkpoint)."""
        array = np.array(data, dtype=dtype) if copy else np.asarray(data, dtype=dtype)  # copy: its own memory
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError(f"Parameter: expected float32 or float64 data, got {array.dtype}")
        self.data = array
        self.grad: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def accumulate_grad(self, grad: np.ndarray) -> None:
        """Add ``grad`` into ``self.grad`` (``grad`` must be a fresh array no one else holds)."""
        if grad.shape != self.data.shape or grad.dtype != self.data.dtype:
            raise ValueError(
                f"Parameter.accumulate_grad: expected a gradient of shape {self.data.shape} and dtype"
                f" {self.data.dtype}, got {grad.shape} {grad.dtype}"
            )
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
