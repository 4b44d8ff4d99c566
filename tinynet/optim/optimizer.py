"""``Optimizer``: the base class of ``SGD``, ``Adam`` and ``AdamW``, with ``torch.optim.Optimizer``'s API.

An optimizer holds

- ``param_groups``: a list of dicts, each with a ``"params"`` list and that group's hyper-parameters
  (``"lr"``, ``"weight_decay"``, ...). Groups give different parameters different settings, e.g. no
  weight decay for biases::

      decay = [p for name, p in model.named_parameters() if not name.endswith("bias")]
      no_decay = [p for name, p in model.named_parameters() if name.endswith("bias")]
      opt = AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)

  Learning-rate schedulers work by rewriting ``group["lr"]``.
- ``state``: a dict from each ``Parameter`` to its own dict of running statistics (SGD's
  ``"momentum_buffer"``, Adam's ``"step"``, ``"exp_avg"``, ``"exp_avg_sq"``), created on the first
  ``step()`` that sees a gradient for it.

``state_dict()`` has PyTorch's structure and is made only of ndarrays, ints, floats, bools, strings,
lists and dicts, so ``tinynet.serialization.save`` can store it without pickle::

    {"state": {0: {"step": 3, "exp_avg": ndarray, "exp_avg_sq": ndarray}, 1: {...}},
     "param_groups": [{"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.0,
                       "amsgrad": False, "params": [0, 1]}]}

Parameters are numbered in the order the groups list them, so the state dict can be loaded into a
new optimizer built over a new model with the same architecture.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any, Callable

import numpy as np

from ..nn.module import Module
from ..nn.parameter import Parameter


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad``, ``step`` and state dicts.

    Subclasses pass their default hyper-parameters to ``__init__`` and implement

    - ``_validate_group(group)``: raise ``ValueError`` for a bad hyper-parameter (called for every
      group, including groups added later and groups loaded from a state dict);
    - ``_step_group(group, params)``: update the parameters of one group that have a gradient;
    - ``_required_state(group)``: the state keys a stepped parameter of that group must have (used
      to validate ``load_state_dict``).

    Parameters
    ----------
    params : iterable of Parameter, or iterable of dict
        The parameters to optimize (e.g. ``model.parameters()``), or parameter groups: dicts with a
        ``"params"`` entry and any hyper-parameters that override ``defaults`` for that group.
    defaults : dict
        The hyper-parameters of groups that do not set their own.
    """

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self._validate_group(self.defaults)
        if isinstance(params, (Module, Parameter, np.ndarray)) or not isinstance(params, Iterable):
            raise TypeError(
                f"{self._name}: expected an iterable of Parameters (e.g. model.parameters()) or of"
                f" parameter-group dicts, got {type(params).__name__}"
            )
        params = list(params)
        if not params:
            raise ValueError(f"{self._name}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.state: dict[Parameter, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        # scratch buffers shared by every parameter of a dtype (see _scratch)
        self._scratch_buffers: dict[np.dtype, np.ndarray] = {}
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self) -> str:
        return type(self).__name__

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyper-parameters (missing ones come from ``defaults``).

        Useful to start training a frozen layer part way through, as ``torch.optim``.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"{self._name}: a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{self._name}: a parameter group needs a 'params' entry, got keys {sorted(param_group)}")
        params = param_group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        for index, param in enumerate(params):
            if not isinstance(param, Parameter):
                raise TypeError(
                    f"{self._name}: parameter {index} of group {len(self.param_groups)} is a"
                    f" {type(param).__name__}, expected a tinynet Parameter"
                )
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{self._name}: parameter group {len(self.param_groups)} lists a parameter twice")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{self._name}: some parameters appear in more than one parameter group")
        group = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self._validate_group(group)
        group["params"] = params
        self.param_groups.append(group)

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Raise ``ValueError`` if a hyper-parameter of ``group`` is invalid (subclasses override)."""

    def _check_number(self, name: str, value: Any, low: float = 0.0, high: float | None = None) -> None:
        """Raise ``ValueError`` unless ``value`` is a finite number with ``low <= value`` (``< high`` if given)."""
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{self._name}: {name} must be a number, got {value!r}")
        if not (math.isfinite(value) and value >= low and (high is None or value < high)):
            expected = f"{low} <= {name} < {high}" if high is not None else f"{name} >= {low}"
            raise ValueError(f"{self._name}: invalid {name} {value!r} (expected {expected})")

    # ------------------------------------------------------------------ gradients and steps
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``grad = None`` (PyTorch's default, frees memory) or fill with zeros."""
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none or param.grad is None:
                    param.grad = None
                else:
                    param.grad.fill(0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; parameters whose ``grad`` is ``None`` are skipped.

        Parameters
        ----------
        closure : callable, optional
            Recomputes the loss (forward, ``zero_grad``, backward) and returns it; it is called first.

        Returns
        -------
        The closure's loss, or ``None``.
        """
        loss = closure() if closure is not None else None
        # every gradient is checked before any parameter changes: a step updates all of them or none
        steps = []
        for group_index, group in enumerate(self.param_groups):
            params = []
            for param_index, param in enumerate(group["params"]):
                if param.grad is None:
                    continue
                grad = param.grad
                if grad.shape != param.data.shape or grad.dtype != param.data.dtype:
                    raise ValueError(
                        f"{self._name}.step: parameter {param_index} of group {group_index} has shape"
                        f" {param.data.shape} and dtype {param.data.dtype} but its gradient has shape"
                        f" {grad.shape} and dtype {grad.dtype}"
                    )
                params.append(param)
            if params:
                steps.append((group, params))
        for group, params in steps:
            self._step_group(group, params)
        return loss

    def _step_group(self, group: dict[str, Any], params: list[Parameter]) -> None:
        raise NotImplementedError(f"{self._name} does not implement _step_group()")

    def _scratch(self, param: Parameter) -> np.ndarray:
        """A work array of ``param``'s shape and dtype, reused by every parameter and every step.

        One flat buffer per dtype, as large as the largest parameter: the updates need one
        temporary, and allocating a fresh 37M-float array per step would cost more than the update.
        """
        dtype = param.data.dtype
        buffer = self._scratch_buffers.get(dtype)
        if buffer is None or buffer.size < param.data.size:
            buffer = np.empty(param.data.size, dtype=dtype)
            self._scratch_buffers[dtype] = buffer
        return buffer[: param.data.size].reshape(param.data.shape)

    # ------------------------------------------------------------------ state dict
    def _required_state(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        """The state keys a parameter of ``group`` must have once it has been stepped (subclasses)."""
        return ()

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as plain data: ``{"state": {index: {...}}, "param_groups": [...]}``.

        Parameters are replaced by their index (counting through the groups in order). Arrays are
        copies, so later steps do not change a state dict already taken; tuples become lists and
        NumPy scalars Python numbers, so the result is JSON plus ndarrays.
        """
        index_of: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {key: _plain(value) for key, value in group.items() if key != "params"}
            packed["params"] = [index_of.setdefault(id(p), len(index_of)) for p in group["params"]]
            groups.append(packed)
        state: dict[int, dict[str, Any]] = {}
        for group in self.param_groups:
            for param in group["params"]:
                if self.state.get(param):
                    state[index_of[id(param)]] = {key: _plain(value) for key, value in self.state[param].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyper-parameters and per-parameter state from ``state_dict()`` (or a loaded checkpoint).

        The state dict must have as many groups as this optimizer, each with as many parameters, and
        every state array must have its parameter's shape; otherwise ``ValueError`` is raised and
        nothing changes. Parameter indices may be ints or strings (a JSON round trip turns keys into
        strings). Arrays are copied (no aliasing with ``state_dict``) and cast to the parameter's
        dtype, as PyTorch casts floating-point state; ``"step"`` stays an int.
        """
        where = f"{self._name}.load_state_dict"
        if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{where}: expected a dict with 'state' and 'param_groups' entries")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, Mapping):
            raise ValueError(f"{where}: 'param_groups' must be a list and 'state' a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{where}: the state dict has {len(saved_groups)} parameter groups, this optimizer has"
                f" {len(self.param_groups)}"
            )
        param_of: dict[int, Parameter] = {}
        new_groups = []
        for group_index, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if not isinstance(saved, Mapping) or not isinstance(saved.get("params"), (list, tuple)):
                raise ValueError(f"{where}: parameter group {group_index} must be a dict with a 'params' list")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{where}: parameter group {group_index} has {len(saved['params'])} parameters in the"
                    f" state dict but {len(group['params'])} in this optimizer"
                )
            for saved_index, param in zip(saved["params"], group["params"]):
                param_of[_as_index(where, saved_index)] = param
            new_group = {key: value for key, value in group.items() if key != "params"}
            for key, value in saved.items():
                if key != "params":
                    # lists come back from JSON where the optimizer uses tuples (betas)
                    restored = copy.deepcopy(value)
                    new_group[key] = tuple(restored) if isinstance(group.get(key), tuple) else restored
            self._validate_group(new_group)
            new_group["params"] = group["params"]
            new_groups.append(new_group)
        group_of = {id(p): g for g in new_groups for p in g["params"]}

        new_state: dict[Parameter, dict[str, Any]] = {}
        for key, saved in saved_state.items():
            index = _as_index(where, key)
            if index not in param_of:
                raise ValueError(f"{where}: the state dict has state for parameter {key!r}, which no group lists")
            param = param_of[index]
            if not isinstance(saved, Mapping):
                raise ValueError(f"{where}: the state of parameter {index} must be a dict, got {type(saved).__name__}")
            entry: dict[str, Any] = {}
            for name, value in saved.items():
                if name == "step":
                    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                        raise ValueError(f"{where}: 'step' of parameter {index} must be an int >= 0, got {value!r}")
                    entry[name] = int(value)
                elif isinstance(value, np.ndarray):
                    if value.shape != param.data.shape:
                        raise ValueError(
                            f"{where}: state {name!r} of parameter {index} has shape {value.shape}, expected"
                            f" {param.data.shape} (the parameter's shape)"
                        )
                    if value.dtype.kind not in "fiu":
                        raise ValueError(f"{where}: state {name!r} of parameter {index} has dtype {value.dtype}, expected floats")
                    entry[name] = np.array(value, dtype=param.data.dtype, order="C", copy=True)
                else:  # every state entry but "step" is an array like the parameter (momentum, moments)
                    raise ValueError(
                        f"{where}: state {name!r} of parameter {index} must be an array of shape"
                        f" {param.data.shape}, got {type(value).__name__}"
                    )
            if entry:
                missing = [k for k in self._required_state(group_of[id(param)]) if k not in entry]
                if missing:
                    raise ValueError(f"{where}: the state of parameter {index} lacks {', '.join(map(repr, missing))}")
                new_state[param] = entry
        self.param_groups = new_groups
        self.state = new_state

    # ------------------------------------------------------------------ printing
    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for index, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {index}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    """A copy of ``value`` made of ndarrays and JSON types only (tuples -> lists, NumPy scalars -> Python)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _as_index(where: str, key: Any) -> int:
    """A parameter index from a state dict: an int, or its decimal string after a JSON round trip."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key)
    if isinstance(key, str) and key.isdigit():
        return int(key)
    raise ValueError(f"{where}: parameter indices must be ints (or their strings), got {key!r}")
