"""Input validation shared by every layer, loss and kernel wrapper.

Errors are raised early and name the layer, what it expected and what it got, so a student never
meets a bare ``IndexError`` or a Numba typing error from deep inside a kernel.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ShapeError(ValueError):
    """An array has the wrong rank or size for the layer it was given to."""


def pair(value: int | Sequence[int], name: str = "value") -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``, as PyTorch's ``_pair``. Rejects non-integers."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def check_float_array(where: str, x, name: str = "input") -> np.ndarray:
    """Return ``x`` if it is a float32/float64 ndarray, else raise ``TypeError`` naming ``where``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{where}: expected {name} to be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{where}: expected {name} of dtype float32 or float64, got {x.dtype}"
            " (convert with x.astype(np.float32))"
        )
    return x


def check_ndim(where: str, x: np.ndarray, ndim: int | tuple[int, ...], layout: str, name: str = "input") -> None:
    """Raise ``ShapeError`` unless ``x.ndim`` is ``ndim`` (or one of them); ``layout`` reads e.g. ``"(N, C, H, W)"``."""
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in allowed:
        raise ShapeError(f"{where}: expected a {'/'.join(map(str, allowed))}-D {name} of shape {layout}, got shape {x.shape}")


def check_dim(where: str, x: np.ndarray, axis: int, expected: int, what: str, layout: str, name: str = "input") -> None:
    """Raise ``ShapeError`` unless ``x.shape[axis] == expected``; ``what`` names the axis (e.g. ``"channels"``)."""
    if x.shape[axis] != expected:
        raise ShapeError(
            f"{where}: expected {name} with {expected} {what} (shape {layout}), got shape {x.shape}"
        )


def check_same_dtype(where: str, x: np.ndarray, param: np.ndarray, param_name: str = "weight") -> None:
    """No silent upcasts: a float64 input to a float32 layer is an error, not a quiet conversion."""
    if x.dtype != param.dtype:
        raise TypeError(
            f"{where}: input dtype {x.dtype} does not match {param_name} dtype {param.dtype};"
            f" convert the input, or the model with model.to(np.{x.dtype})"
        )


def check_layer_input(where: str, x, ndim: int | tuple[int, ...], layout: str, size: int, what: str,
                      param: np.ndarray, param_name: str = "weight") -> None:
    """The input checks of a layer with parameters (``Conv2d``, ``Linear``, ``BatchNorm*``), written once:
    a float ndarray of rank ``ndim``, ``size`` ``what`` (e.g. channels) on axis 1, and ``param``'s dtype."""
    check_float_array(where, x)
    check_ndim(where, x, ndim, layout)
    check_dim(where, x, 1, size, what, layout)
    check_same_dtype(where, x, param, param_name)


def check_dout(where: str, dout, shape: tuple[int, ...], dtype: np.dtype, name: str = "dout",
               dtype_of: str = "output") -> np.ndarray:
    """The one check of every backward's upstream gradient: a float ndarray of exactly the forward
    output's ``shape`` and ``dtype``. A wrong shape is never broadcast or reinterpreted (a Numba kernel
    given a smaller ``dout`` would read past its end); raise ``ShapeError`` / ``TypeError`` naming ``where``."""
    check_float_array(where, dout, name)
    if dout.shape != tuple(shape):
        raise ShapeError(f"{where}: expected {name} of shape {tuple(shape)} (the forward output's), got {dout.shape}")
    if dout.dtype != dtype:
        raise TypeError(f"{where}: {name} dtype {dout.dtype} does not match {dtype_of} dtype {dtype}")
    return dout


def check_same_shape(where: str, a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise ShapeError(f"{where}: {a_name} and {b_name} must have the same shape, got {a.shape} and {b.shape}")
