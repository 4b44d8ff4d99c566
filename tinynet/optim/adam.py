"""``Adam`` and ``AdamW``: adaptive moment estimation, with L2 or decoupled weight decay.

Both follow ``torch.optim.Adam`` / ``torch.optim.AdamW`` formula for formula. The update runs in
place, one Numba pass per parameter (``tinynet.kernels.adam.adam_update_kernel``: every element read
and written once, on every core), because the fully connected layers of the keypoint model hold
millions of weights and are stepped every batch. ``adam_update_reference`` at the bottom of this file
is the same update as NumPy ``out=`` operations, one line per formula, which the tests compare the
kernel against and which runs instead when ``tinynet.backends.numba.enabled`` is False. For float32 parameters every operation stays in float32 in both.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ..nn.parameter import Parameter
from .. import backends, kernels
from .optimizer import Optimizer


class Adam(Optimizer):
    r"""Adam (Kingma and Ba, 2015), exactly ``torch.optim.Adam``.

    For each parameter :math:`p` with gradient :math:`g`, at step :math:`t = 1, 2, \ldots`
    (:math:`\eta` = ``lr``, :math:`\lambda` = ``weight_decay``, :math:`\epsilon` = ``eps``):

    .. math::

        g &\leftarrow g + \lambda p \qquad \text{(L2 penalty, added to the gradient)} \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        \hat v &\leftarrow \max(\hat v, v) \text{ with ``amsgrad``, else } \hat v = v \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t} \,
            \frac{m}{\sqrt{\hat v} / \sqrt{1 - \beta_2^t} + \epsilon}

    :math:`m` and :math:`v` start at zero; the bias corrections :math:`1 - \beta^t` undo that start.
    Note :math:`\epsilon` is added *after* the bias correction of :math:`\sqrt{v}`, as in PyTorch.

    Parameters
    ----------
    params : iterable of Parameter or of parameter-group dicts
    lr : float
        :math:`\eta \ge 0`.
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``: decay rates of the moment estimates.
    eps : float
        :math:`\epsilon \ge 0`, keeps the denominator away from zero.
    weight_decay : float
        :math:`\lambda \ge 0`. For Adam this is an L2 penalty whose gradient passes through the
        adaptive scaling; ``AdamW`` decouples it.
    amsgrad : bool
        Use the running maximum of :math:`v` (Reddi et al., 2018).

    State
    -----
    ``"step"`` (int), ``"exp_avg"`` (:math:`m`), ``"exp_avg_sq"`` (:math:`v`) and, with ``amsgrad``,
    ``"max_exp_avg_sq"`` (:math:`\hat v`); arrays like the parameter.
    """

    _decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        betas = tuple(betas) if isinstance(betas, (list, tuple)) else betas  # validated in _validate_group
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        self._check_number("lr", group["lr"])
        self._check_number("eps", group["eps"])
        if not np.float32(group["eps"]) > 0:  # eps = 0 divides by zero where a gradient is 0 since the start
            raise ValueError(
                f"{self._name}: invalid eps {group['eps']!r} (expected eps > 0, also in float32, whose"
                " smallest positive value is 1.4e-45)"
            )
        self._check_number("weight_decay", group["weight_decay"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{self._name}: betas must be a pair (beta1, beta2), got {betas!r}")
        self._check_number("beta1", betas[0], 0.0, 1.0)
        self._check_number("beta2", betas[1], 0.0, 1.0)
        if not isinstance(group["amsgrad"], (bool, np.bool_)):
            raise ValueError(f"{self._name}: amsgrad must be a bool, got {group['amsgrad']!r}")

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        keys = ("step", "exp_avg", "exp_avg_sq")
        return keys + ("max_exp_avg_sq",) if group["amsgrad"] else keys

    def _step_group(self, group: dict[str, Any], params: list[Parameter]) -> None:
        # Python floats: with a float32 array they stay float32 (an np.float64 scalar would upcast)
        lr = float(group["lr"])
        beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
        eps = float(group["eps"])
        weight_decay = float(group["weight_decay"])
        amsgrad = bool(group["amsgrad"])
        for param in params:
            state = self.state.setdefault(param, {})
            if not state:
                state["step"] = 0
                state["exp_avg"] = np.zeros_like(param.data)
                state["exp_avg_sq"] = np.zeros_like(param.data)
            if amsgrad and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = np.zeros_like(param.data)
            state["step"] += 1
            _adam_update_(
                param.data, param.grad, state["exp_avg"], state["exp_avg_sq"],
                state["max_exp_avg_sq"] if amsgrad else None,
                step=state["step"], lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                weight_decay=weight_decay, decoupled=self._decoupled_weight_decay,
            )


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov and Hutter, 2019), exactly ``torch.optim.AdamW``.

    Identical to ``Adam`` except for the weight decay, which shrinks the parameter directly instead
    of entering the gradient (so it is not rescaled by :math:`1 / \sqrt{\hat v}`):

    .. math::

        p &\leftarrow p \, (1 - \eta \lambda) \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t} \,
            \frac{m}{\sqrt{\hat v} / \sqrt{1 - \beta_2^t} + \epsilon}

    The default ``weight_decay`` is ``1e-2``, as in PyTorch. Parameters and state as ``Adam``.
    """

    _decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


def _adam_update_(p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One Adam/AdamW update of ``p``, ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq``) in place,
    by the one-pass kernel ``tinynet.kernels.adam.adam_update_kernel`` (``adam_update_reference`` is
    the same update in NumPy, which runs instead when ``tinynet.backends.numba.enabled`` is False). ``step``
    is the new step count (1 on the first update)."""
    if not backends.numba.enabled:
        adam_update_reference(p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, np.empty_like(p), step=step, lr=lr,
                              beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, decoupled=decoupled)
        return
    bias_correction1 = 1.0 - beta1**step
    bias_correction2 = 1.0 - beta2**step
    decay = 1.0 - lr * weight_decay if (decoupled and weight_decay != 0) else 1.0
    l2 = weight_decay if not decoupled else 0.0
    kernels.adam.adam_update_kernel(
        p.reshape(-1), np.ascontiguousarray(grad, dtype=p.dtype).reshape(-1), exp_avg.reshape(-1),
        exp_avg_sq.reshape(-1), exp_avg_sq.reshape(-1) if max_exp_avg_sq is None else max_exp_avg_sq.reshape(-1),
        max_exp_avg_sq is not None, decay, l2, beta1, beta2, lr / bias_correction1, math.sqrt(bias_correction2), eps,
    )


def adam_update_reference(
    p: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    max_exp_avg_sq: np.ndarray | None,
    scratch: np.ndarray,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
) -> None:
    """``_adam_update_`` in NumPy, one formula per line (the reference the tests compare the kernel to).

    ``grad`` is read only; ``scratch`` is the single work array (like ``p``). ``step`` is the new
    step count, already incremented (1 on the first update).
    """
    l2 = 0.0
    if weight_decay != 0:
        if decoupled:
            p *= 1.0 - lr * weight_decay
        else:
            l2 = weight_decay

    def effective_grad() -> np.ndarray:
        # Adam's L2 term: g + wd * p, rebuilt in scratch each time it is needed rather than kept
        # in a second buffer (p does not change until the end, so both copies are identical)
        if l2 == 0:
            return grad
        np.multiply(p, l2, out=scratch)
        return np.add(scratch, grad, out=scratch)

    # m <- m + (1 - beta1) (g - m), i.e. beta1 m + (1 - beta1) g, as torch's exp_avg.lerp_(g, 1 - beta1)
    np.subtract(effective_grad(), exp_avg, out=scratch)
    scratch *= 1.0 - beta1
    exp_avg += scratch
    # v <- beta2 v + (1 - beta2) g^2
    exp_avg_sq *= beta2
    g = effective_grad()
    np.multiply(g, g, out=scratch)
    scratch *= 1.0 - beta2
    exp_avg_sq += scratch
    if max_exp_avg_sq is not None:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second_moment = max_exp_avg_sq
    else:
        second_moment = exp_avg_sq

    bias_correction1 = 1.0 - beta1**step
    bias_correction2 = 1.0 - beta2**step
    step_size = lr / bias_correction1
    # denominator sqrt(v) / sqrt(1 - beta2^t) + eps, then p <- p - step_size * m / denominator
    np.sqrt(second_moment, out=scratch)
    scratch /= math.sqrt(bias_correction2)
    scratch += eps
    np.divide(exp_avg, scratch, out=scratch)
    scratch *= -step_size
    p += scratch
