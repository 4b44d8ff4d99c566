"""Learning-rate schedulers: ``StepLR`` and ``CosineAnnealingLR``, with an optional linear warmup.

As in ``torch.optim.lr_scheduler``, a scheduler rewrites ``group["lr"]`` of every parameter group of
its optimizer. Constructing it sets the rate for epoch 0; call ``scheduler.step()`` once per epoch,
*after* that epoch's ``optimizer.step()`` calls::

    scheduler = CosineAnnealingLR(optimizer, T_max=50, warmup_epochs=3)
    for epoch in range(53):
        train_one_epoch(model, optimizer)   # uses scheduler.get_last_lr()
        scheduler.step()

Every schedule here is a closed-form function of ``last_epoch`` (PyTorch's ``_get_closed_form_lr``),
not PyTorch's default recursive update of the current rate; the two agree unless something else
also edits ``group["lr"]``. Because the rate depends only on ``last_epoch`` and ``base_lrs``,
``load_state_dict`` also writes the restored rate into the optimizer, so it does not matter whether
the optimizer's or the scheduler's state is loaded first.

Warmup: with ``warmup_epochs = W > 0`` the rate rises linearly from ``warmup_start_factor * base_lr``
at epoch 0 to ``base_lr`` at epoch ``W``, then the schedule runs as if it had started at epoch
``W`` (``torch.optim.lr_scheduler.SequentialLR`` of ``LinearLR`` and the schedule, milestone ``W``).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .optimizer import Optimizer


class LRScheduler:
    """Base class: ``step()``, ``get_last_lr()``, ``last_epoch``, state dicts and the linear warmup.

    Subclasses set their hyper-parameters (named in ``_hyper_parameters``) before calling
    ``LRScheduler.__init__`` and implement ``_validate_hyper(values)`` and ``_closed_form(base_lr, epoch)``.

    Parameters
    ----------
    optimizer : Optimizer
    warmup_epochs : int
        Number of warmup epochs ``W >= 0`` (0: no warmup).
    warmup_start_factor : float
        Fraction of the base rate used at epoch 0 of the warmup, in ``(0, 1]``.

    Attributes
    ----------
    base_lrs : list of float
        Each group's ``"initial_lr"`` (its ``"lr"`` when the first scheduler was attached).
    last_epoch : int
        Number of ``step()`` calls since construction (0 right after construction).
    """

    _hyper_parameters: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer, warmup_epochs: int = 0, warmup_start_factor: float = 0.1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected a tinynet Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.warmup_epochs = warmup_epochs
        self.warmup_start_factor = warmup_start_factor
        self._set_hyper(self._hyper_values())
        for group in optimizer.param_groups:
            # as PyTorch: the first scheduler records the starting rate; a resumed optimizer keeps it
            group.setdefault("initial_lr", float(group["lr"]))
        self.base_lrs: list[float] = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = -1
        self._last_lr: list[float] = []
        self.step()

    # ------------------------------------------------------------------ schedule
    def _closed_form(self, base_lr: float, epoch: int) -> float:
        """The rate at ``epoch`` (counted from the end of the warmup) for a group starting at ``base_lr``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _closed_form()")

    def lr_at(self, epoch: int) -> list[float]:
        """Every group's learning rate at ``epoch`` (warmup included), without changing anything."""
        warmup = self.warmup_epochs
        if epoch < warmup:
            factor = self.warmup_start_factor + (1.0 - self.warmup_start_factor) * epoch / warmup
            return [base_lr * factor for base_lr in self.base_lrs]
        return [float(self._closed_form(base_lr, epoch - warmup)) for base_lr in self.base_lrs]

    def step(self) -> None:
        """Advance one epoch and write the new rate into every parameter group."""
        self.last_epoch += 1
        self._apply(self.lr_at(self.last_epoch))

    def _apply(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last ``step()`` (or by construction), one per group."""
        return list(self._last_lr)

    # ------------------------------------------------------------------ validation
    def _hyper_values(self) -> dict[str, Any]:
        names = ("warmup_epochs", "warmup_start_factor") + self._hyper_parameters
        return {name: getattr(self, name) for name in names}

    def _set_hyper(self, values: dict[str, Any]) -> None:
        """Validate, then set the hyper-parameters as Python numbers (so ``state_dict`` stays JSON)."""
        self._validate(values)
        for name, value in values.items():
            setattr(self, name, value.item() if isinstance(value, np.generic) else value)

    def _validate(self, values: dict[str, Any]) -> None:
        """Raise ``ValueError`` for a bad hyper-parameter in ``values`` (the warmup's here, the rest in subclasses)."""
        _check_int(self, "warmup_epochs", values["warmup_epochs"], minimum=0)
        factor = values["warmup_start_factor"]
        if not (_is_real(factor) and 0.0 < factor <= 1.0):
            raise ValueError(f"{type(self).__name__}: warmup_start_factor must be in (0, 1], got {factor!r}")
        self._validate_hyper(values)

    def _validate_hyper(self, values: dict[str, Any]) -> None:
        """Subclasses: validate their own hyper-parameters."""

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> dict[str, Any]:
        """``last_epoch``, ``base_lrs``, ``last_lr`` and the hyper-parameters: plain JSON values."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs), "last_lr": list(self._last_lr),
                **self._hyper_values()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from ``state_dict()`` and set the optimizer's rates for the restored ``last_epoch``.

        The keys must be exactly those of this scheduler's ``state_dict()`` (so a ``StepLR`` state
        cannot be loaded into a ``CosineAnnealingLR``) and ``base_lrs`` must have one rate per
        parameter group; otherwise ``ValueError`` is raised and nothing changes.
        """
        where = f"{type(self).__name__}.load_state_dict"
        expected = set(self.state_dict())
        if not isinstance(state_dict, dict):
            raise ValueError(f"{where}: expected a dict, got {type(state_dict).__name__}")
        missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
        if missing or unexpected:
            raise ValueError(f"{where}: missing keys {missing}, unexpected keys {unexpected}")
        base_lrs = state_dict["base_lrs"]
        if not isinstance(base_lrs, (list, tuple)) or len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"{where}: expected base_lrs with one rate per parameter group"
                f" ({len(self.optimizer.param_groups)}), got {base_lrs!r}"
            )
        if not all(_is_real(lr) and lr >= 0 for lr in base_lrs):
            raise ValueError(f"{where}: base_lrs must be numbers >= 0, got {base_lrs!r}")
        _check_int(self, "last_epoch", state_dict["last_epoch"], minimum=0)
        self._set_hyper({name: state_dict[name] for name in self._hyper_values()})
        self.base_lrs = [float(lr) for lr in base_lrs]
        self.last_epoch = int(state_dict["last_epoch"])
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["initial_lr"] = base_lr
        self._apply(self.lr_at(self.last_epoch))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyper_values().items())
        return f"{type(self).__name__}({args}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    r"""Multiply the rate by ``gamma`` every ``step_size`` epochs: :math:`\eta_e = \eta_0 \gamma^{\lfloor e / s \rfloor}`.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Period :math:`s \ge 1` of the decay, in epochs.
    gamma : float
        Multiplicative factor :math:`\gamma \ge 0`.
    warmup_epochs, warmup_start_factor
        See ``LRScheduler``; the epoch :math:`e` above is counted from the end of the warmup.
    """

    _hyper_parameters = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, warmup_epochs: int = 0,
                 warmup_start_factor: float = 0.1):
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, warmup_epochs, warmup_start_factor)

    def _validate_hyper(self, values: dict[str, Any]) -> None:
        _check_int(self, "step_size", values["step_size"], minimum=1)
        if not (_is_real(values["gamma"]) and values["gamma"] >= 0):
            raise ValueError(f"StepLR: gamma must be a finite number >= 0, got {values['gamma']!r}")

    def _closed_form(self, base_lr: float, epoch: int) -> float:
        return base_lr * float(self.gamma) ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing (Loshchilov and Hutter, 2017, without restarts), PyTorch's closed form.

    .. math::

        \eta_e = \eta_{min} + (\eta_0 - \eta_{min}) \frac{1 + \cos(\pi e / T_{max})}{2}

    so the rate falls from :math:`\eta_0` at :math:`e = 0` to :math:`\eta_{min}` at :math:`e = T_{max}`.
    Past :math:`T_{max}` the formula keeps going (the rate rises again), as PyTorch's closed form does:
    set ``T_max`` to the number of epochs after the warmup.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Half period :math:`T_{max} \ge 1`, in epochs.
    eta_min : float
        Minimum rate :math:`\eta_{min} \ge 0`.
    warmup_epochs, warmup_start_factor
        See ``LRScheduler``; the epoch :math:`e` above is counted from the end of the warmup.
    """

    _hyper_parameters = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, warmup_epochs: int = 0,
                 warmup_start_factor: float = 0.1):
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, warmup_epochs, warmup_start_factor)

    def _validate_hyper(self, values: dict[str, Any]) -> None:
        _check_int(self, "T_max", values["T_max"], minimum=1)
        if not (_is_real(values["eta_min"]) and values["eta_min"] >= 0):
            raise ValueError(f"CosineAnnealingLR: eta_min must be a finite number >= 0, got {values['eta_min']!r}")

    def _closed_form(self, base_lr: float, epoch: int) -> float:
        eta_min = float(self.eta_min)
        return eta_min + (base_lr - eta_min) * (1.0 + math.cos(math.pi * epoch / self.T_max)) / 2.0


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _check_int(scheduler: LRScheduler, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{type(scheduler).__name__}: {name} must be an int >= {minimum}, got {value!r}")
