"""``Sequential`` (modules applied in order) and ``Identity`` (the placeholder ``tinynet.nn.fuse`` leaves)."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from .module import Module


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    Children are named ``"0"``, ``"1"``, ... so state-dict keys are ``"0.weight"``, ``"1.running_mean"``
    as in ``torch.nn.Sequential``. ``forward`` runs exactly the children ``print(seq)`` lists, one after
    the other: to run some of them as one fused kernel, replace them explicitly (``tinynet.nn.fuse``).
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: argument {index} is a {type(module).__name__}, not a Module")
            setattr(self, str(index), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        layers = list(self._modules.values())
        return layers[index]

    def __setitem__(self, index: int, module: Module) -> None:
        """Replace the child at position ``index`` (its name, and so its state-dict keys, stay)."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: cannot set item {index} to a {type(module).__name__}, not a Module")
        setattr(self, list(self._modules)[index], module)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> "Sequential":
        if not isinstance(module, Module):  # else it would become a plain attribute, silently skipped by forward
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self

    def forward(self, x: np.ndarray) -> np.ndarray:
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        for module in reversed(self._modules.values()):
            dout = module.backward(dout)
        return dout


class Identity(Module):
    """``out = x``, ``dx = dout`` (as ``torch.nn.Identity``): what ``tinynet.nn.fuse`` leaves where a
    layer's work moved into a fused block, so the other children keep their names and state-dict keys."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout
