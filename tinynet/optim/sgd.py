"""``SGD``: stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..nn.parameter import Parameter
from .optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent, exactly ``torch.optim.SGD``.

    For each parameter :math:`p` with gradient :math:`g` (:math:`\lambda` = ``weight_decay``,
    :math:`\mu` = ``momentum``, :math:`\tau` = ``dampening``, :math:`\eta` = ``lr``):

    .. math::

        g &\leftarrow g + \lambda p \\
        b &\leftarrow g \text{ on the first step, else } \mu b + (1 - \tau) g \\
        d &= g + \mu b \text{ (Nesterov), else } d = b \\
        p &\leftarrow p - \eta d

    Without momentum (:math:`\mu = 0`) the update is plain :math:`p \leftarrow p - \eta g` and no
    state is kept. Note PyTorch's convention (also CS231n's): the velocity is a running *sum* of
    gradients, scaled by the learning rate when applied, not Sutskever et al.'s ``v = mu v - lr g``.

    Parameters
    ----------
    params : iterable of Parameter or of parameter-group dicts
    lr : float
        Learning rate :math:`\eta \ge 0` (required, as in PyTorch).
    momentum : float
        :math:`\mu \ge 0`.
    dampening : float
        :math:`\tau`: the fraction of each new gradient *not* added to the momentum buffer.
    weight_decay : float
        L2 penalty :math:`\lambda \ge 0`, added to the gradient.
    nesterov : bool
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.

    State
    -----
    ``"momentum_buffer"`` : array like the parameter, when ``momentum != 0``.
    """

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        self._check_number("lr", group["lr"])
        self._check_number("momentum", group["momentum"])
        self._check_number("dampening", group["dampening"], low=-float("inf"))
        self._check_number("weight_decay", group["weight_decay"])
        if not isinstance(group["nesterov"], (bool, np.bool_)):
            raise ValueError(f"{self._name}: nesterov must be a bool, got {group['nesterov']!r}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"{self._name}: Nesterov momentum requires momentum > 0 and dampening == 0, got"
                f" momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _step_group(self, group: dict[str, Any], params: list[Parameter]) -> None:
        # Python floats: with a float32 array they stay float32 (an np.float64 scalar would upcast)
        lr = float(group["lr"])
        momentum = float(group["momentum"])
        dampening = float(group["dampening"])
        weight_decay = float(group["weight_decay"])
        nesterov = bool(group["nesterov"])
        for param in params:
            state = self.state.setdefault(param, {}) if momentum != 0 else None
            _sgd_update_(
                param.data, param.grad, state, self._scratch(param),
                lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
            )


def _sgd_update_(
    p: np.ndarray,
    grad: np.ndarray,
    state: dict[str, Any] | None,
    scratch: np.ndarray,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
) -> None:
    """One SGD update of ``p`` in place; ``grad`` is read only, ``scratch`` is a work array like ``p``."""
    if weight_decay != 0:
        g = np.multiply(p, weight_decay, out=scratch)  # g = grad + wd * p, in the scratch buffer
        g += grad
    else:
        g = grad
    if momentum == 0:
        np.multiply(g, -lr, out=scratch)
        p += scratch
        return
    buf = state.get("momentum_buffer")
    if buf is None:
        state["momentum_buffer"] = buf = g.copy()  # first step: b = g (not (1 - dampening) g)
    else:
        buf *= momentum
        if dampening == 0:
            buf += g
        else:
            np.multiply(g, 1.0 - dampening, out=scratch)  # g may live in scratch: it is not needed after
            buf += scratch
    if nesterov:
        # p -= lr * (g + momentum * b), applied as two in-place updates so that one scratch buffer
        # suffices when g itself lives in it (dampening is 0, so g is intact here)
        np.multiply(g, -lr, out=scratch)
        p += scratch
        np.multiply(buf, -lr * momentum, out=scratch)
        p += scratch
    else:
        np.multiply(buf, -lr, out=scratch)
        p += scratch
