"""Finite-difference gradient checking, for tests and for lessons.

A hand-written backward pass is only trustworthy once it agrees with the definition of a derivative.
For a layer ``y = f(x)`` and an upstream gradient ``dout``, backward must return the gradient of the
scalar ``L = sum(f(x) * dout)``. Central differences estimate each component::

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

with an error of order ``eps**2``, in float64 so rounding does not swamp it. Use a random, non-uniform
``dout``: with ``dout = 1`` (i.e. ``L = sum(f(x))``) a batch-norm layer's input gradient is exactly zero
and a wrong backward that also returns zero would pass.

Example (a lesson)::

    layer = tinynet.nn.Linear(4, 3).double()
    x = np.random.default_rng(0).normal(size=(5, 4))
    print(tinynet.gradcheck(layer, x))     # relative errors ~1e-10: the backward is right
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .nn.module import Module


def numerical_gradient(f: Callable[[], object], x: np.ndarray, dout: np.ndarray | float, eps: float = 1e-6) -> np.ndarray:
    """Gradient of ``sum(f() * dout)`` with respect to ``x`` by central differences.

    ``f`` takes no arguments and reads ``x`` (which is perturbed in place, one element at a time, and
    restored exactly). Returns an array of ``x``'s shape.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)  # a view: writing flat[i] perturbs x
    if not np.shares_memory(flat, x):
        raise ValueError("numerical_gradient: x must be contiguous so it can be perturbed in place")
    grad_flat = grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        try:
            flat[i] = original + eps
            plus = float(np.sum(np.asarray(f()) * dout))
            flat[i] = original - eps
            minus = float(np.sum(np.asarray(f()) * dout))
        finally:
            flat[i] = original  # also when f raises: x is often a parameter's live data
        grad_flat[i] = (plus - minus) / (2.0 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / max(||a|| + ||b||, 1e-12)``: 0 when equal, about 1 when unrelated.

    A norm over the whole array rather than a per-element maximum: elements that are zero in exact
    arithmetic (ReLU's dead units) would otherwise turn rounding noise into a large "error".
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error: shapes differ, {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


class GradcheckError(AssertionError):
    """A backward pass disagrees with finite differences."""


@dataclass
class GradcheckResult:
    """Relative error of each checked gradient, by name (``"input"``, ``"input1"``, ``"weight"``, ...).

    A gradient passes when its relative error is at most ``tol``, or when its largest absolute
    difference (``abs_errors``) is at most ``atol``: a gradient that is zero in exact arithmetic (the
    bias of a layer followed by BatchNorm) leaves only rounding noise on both sides, whose relative
    error is about 1 and means nothing.
    """

    errors: dict[str, float] = field(default_factory=dict)
    tol: float = 1e-7
    abs_errors: dict[str, float] = field(default_factory=dict)
    atol: float = 0.0

    def ok(self, name: str) -> bool:
        return self.errors[name] <= self.tol or self.abs_errors.get(name, np.inf) <= self.atol

    @property
    def passed(self) -> bool:
        return all(self.ok(name) for name in self.errors)

    def __str__(self) -> str:
        lines = [f"gradcheck ({'passed' if self.passed else 'FAILED'}, tol {self.tol:.0e}, atol {self.atol:.0e}):"]
        for name, err in self.errors.items():
            absolute = f", max abs error {self.abs_errors[name]:.2e}" if name in self.abs_errors else ""
            lines.append(f"  {name:<24} relative error {err:.2e}{absolute}{'' if self.ok(name) else '  <-- too large'}")
        return "\n".join(lines)


def gradcheck(
    module: Module,
    *inputs: np.ndarray,
    dout: np.ndarray | float | None = None,
    eps: float = 1e-6,
    tol: float = 1e-7,
    atol: float = 1e-8,
    rng: np.random.Generator | None = None,
    check_params: bool = True,
    raise_on_failure: bool = True,
) -> GradcheckResult:
    """Compare ``module.backward`` with finite differences for its inputs and parameters.

    Parameters
    ----------
    module : Module
        A float64 layer, model or loss (``module.double()`` converts one). Its forward must be
        deterministic (a Dropout layer draws a new mask each call: check ``dropout_backward`` instead).
    *inputs : float64 arrays (after the first, also integer arrays of class indices)
        Passed to ``module(*inputs)``. The gradient returned by ``backward`` is compared with the first
        input's (or, if backward returns a tuple, with each input's in order).
    dout : array or float, optional
        Upstream gradient; by default drawn from N(0, 1) with ``rng`` (non-uniform on purpose).
    eps, tol : float
        Finite-difference step and the largest relative error accepted.
    atol : float
        A gradient whose largest absolute difference is at most ``atol`` passes whatever its relative
        error (finite differences of a loss of order 1 carry noise of order 1e-10; see GradcheckResult).
    check_params : bool
        Also check every parameter's gradient (named as in ``named_parameters()``).

    Returns
    -------
    GradcheckResult with ``errors`` and ``passed``; raises ``GradcheckError`` on failure unless
    ``raise_on_failure=False``.
    """
    if not isinstance(module, Module):
        raise TypeError(f"gradcheck: expected a tinynet Module, got {type(module).__name__}")
    for index, x in enumerate(inputs):
        if index > 0 and isinstance(x, np.ndarray) and x.dtype.kind in "iu":
            continue  # class indices (a CrossEntropyLoss target): passed as they are, never differentiated
        if not isinstance(x, np.ndarray) or x.dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {index} must be a float64 ndarray (finite differences need the precision)"
                " or, after the first, an integer array of class indices"
            )
    params = list(module.named_parameters()) if check_params else []
    for name, param in params:
        if param.dtype != np.float64:
            raise TypeError(f"gradcheck: parameter {name!r} is {param.dtype}; call module.double() first")
    # a fixed default seed unlike the 0/1/42 a user draws inputs with: dout equal to x would make the
    # batch-norm input gradient vanish and the check meaningless
    rng = np.random.default_rng(0x5EED_CAFE) if rng is None else rng
    inputs = tuple(np.array(x, copy=True, order="C") for x in inputs)  # private copies we may perturb

    out = module(*inputs)
    if dout is None:
        dout = rng.standard_normal(np.shape(out)) if np.ndim(out) else float(rng.standard_normal())
    module.zero_grad()
    analytic = module.backward(np.asarray(dout, dtype=np.float64) if np.ndim(out) else dout)
    analytic_inputs = analytic if isinstance(analytic, tuple) else (analytic,)
    analytic_params = {name: None if p.grad is None else p.grad.copy() for name, p in params}

    def loss_value() -> object:
        return module(*inputs)

    result = GradcheckResult(tol=tol, atol=atol)

    def record(name: str, grad: np.ndarray, numeric: np.ndarray) -> None:
        result.errors[name] = relative_error(grad, numeric)
        result.abs_errors[name] = float(np.max(np.abs(grad - numeric), initial=0.0))

    for index, grad in enumerate(analytic_inputs):
        if grad is None or index >= len(inputs):
            continue
        numeric = numerical_gradient(loss_value, inputs[index], dout, eps)
        record("input" if index == 0 else f"input{index}", grad, numeric)
    for name, param in params:
        numeric = numerical_gradient(loss_value, param.data, dout, eps)
        grad = analytic_params[name]
        record(name, np.zeros_like(numeric) if grad is None else grad, numeric)
    if raise_on_failure and not result.passed:
        raise GradcheckError(f"{module._describe()}: {result}")
    return result
