"""Weight initialisation, with ``torch.nn.init``'s names and formulas.

Every function fills an array in place from an explicit ``np.random.Generator`` and returns it.
Fans follow PyTorch: for a weight of shape ``(out, in, *kernel)``, ``fan_in = in * prod(kernel)`` and
``fan_out = out * prod(kernel)``.

PyTorch's default for ``Conv2d`` and ``Linear`` is ``kaiming_uniform_(w, a=sqrt(5))``, which works out
to ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and the bias from the same range; ``default_weight_``
and ``default_bias_`` reproduce that.

``skip_random_init()`` is a context in which the random initialisers leave zeros and draw nothing, for a
model whose weights are loaded right after it is built (as ``torch.nn.utils.skip_init``).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np

_SKIPPING: list[bool] = []  # non-empty inside skip_random_init()


@contextlib.contextmanager
def skip_random_init() -> Iterator[None]:
    """Inside this context ``uniform_`` and ``normal_`` (and so every random initialiser, which all end in
    one of them) fill the array with zeros and draw nothing from ``rng``. For a model built only to receive
    a checkpoint's weights: NaimishNet-96 draws 7.4 million numbers (about 50 ms) that loading overwrites.
    The ``rng`` is then not advanced: layers that keep it (``Dropout``) draw other masks than in a model
    built outside the context, so build a model to train outside it."""
    _SKIPPING.append(True)
    try:
        yield
    finally:
        _SKIPPING.pop()


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (``torch.nn.init.calculate_gain``)."""
    linear = {"linear", "conv1d", "conv2d", "conv3d", "sigmoid"}
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``; needs at least 2 dimensions."""
    if len(shape) < 2:
        raise ValueError(f"fan_in_and_fan_out: need a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape: tuple[int, ...], mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(array: np.ndarray, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    if _SKIPPING:
        return zeros_(array)
    array[...] = rng.uniform(low, high, size=array.shape)
    return array


def normal_(array: np.ndarray, mean: float, std: float, rng: np.random.Generator) -> np.ndarray:
    if _SKIPPING:
        return zeros_(array)
    array[...] = rng.normal(mean, std, size=array.shape)
    return array


def zeros_(array: np.ndarray) -> np.ndarray:
    array.fill(0)
    return array


def ones_(array: np.ndarray) -> np.ndarray:
    array.fill(1)
    return array


def kaiming_uniform_(
    array: np.ndarray,
    rng: np.random.Generator,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
) -> np.ndarray:
    """He et al. (2015): ``U(-b, b)`` with ``b = gain * sqrt(3 / fan)``."""
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(array.shape, mode))
    return uniform_(array, -bound, bound, rng)


def kaiming_normal_(
    array: np.ndarray,
    rng: np.random.Generator,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
) -> np.ndarray:
    """He et al. (2015): ``N(0, std^2)`` with ``std = gain / sqrt(fan)``."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(array.shape, mode))
    return normal_(array, 0.0, std, rng)


def xavier_uniform_(array: np.ndarray, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """Glorot and Bengio (2010): ``U(-b, b)`` with ``b = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = fan_in_and_fan_out(array.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(array, -bound, bound, rng)


def xavier_normal_(array: np.ndarray, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """Glorot and Bengio (2010): ``N(0, std^2)`` with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = fan_in_and_fan_out(array.shape)
    return normal_(array, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def default_weight_(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """PyTorch's default for Conv2d/Linear weights: ``kaiming_uniform_(a=sqrt(5))``."""
    return kaiming_uniform_(array, rng, a=math.sqrt(5.0))


def default_bias_(array: np.ndarray, fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """PyTorch's default for Conv2d/Linear biases: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform_(array, -bound, bound, rng)
