"""The same NaimishNet in PyTorch, for benchmarks that compare against it (never a dependency).

``torch_twin(model)`` mirrors a tinynet ``NaimishNet`` layer by layer (same ``features``/``regressor``
names, so the state-dict keys match) and copies its weights, running statistics included. A fused
``BatchNormReLUMaxPool2d`` (``tinynet.nn.fuse``: the block, then two ``Identity`` keeping the names) becomes
PyTorch's ``BatchNorm2d``, ``ReLU``, ``MaxPool2d(2, 2)`` at those three places: the layers it fuses.

The twin is built in two halves, so that PyTorch can be measured in a process that imports nothing of
tinynet (``benchmarks/bench_train.py``): :func:`save_twin` (tinynet's side) writes the layer list and the
weights to an ``.npz``; :func:`load_twin` (PyTorch's side, NumPy and torch only) builds the module from it.
"""
from __future__ import annotations

import json

import numpy as np


def describe_layers(sequential) -> list[list]:
    """A tinynet ``Sequential`` as PyTorch layer specs ``[name, *arguments]`` (JSON-able), fused blocks unfolded."""
    from tinynet import nn as tn

    specs, fused_tail = [], []
    for layer in sequential:
        if isinstance(layer, tn.BatchNormReLUMaxPool2d):  # the next two places (Identity) get its ReLU and pool
            fused_tail = [["ReLU"], ["MaxPool2d", layer.pool_size, layer.pool_size, layer.pool_padding]]
            specs.append(["BatchNorm2d", layer.num_features])
        elif type(layer) is tn.Identity:
            specs.append(fused_tail.pop(0) if fused_tail else ["Identity"])
        elif type(layer) in (tn.Conv2d, tn.WinogradConv2d):  # PyTorch picks its own convolution algorithm
            specs.append(["Conv2d", layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding])
        elif type(layer) in (tn.BatchNorm2d, tn.BatchNorm1d):
            specs.append([type(layer).__name__, layer.num_features])
        elif type(layer) is tn.MaxPool2d:
            specs.append(["MaxPool2d", layer.kernel_size, layer.stride, layer.padding])
        elif type(layer) is tn.Linear:
            specs.append(["Linear", layer.in_features, layer.out_features])
        elif type(layer) is tn.ReLU:
            specs.append(["ReLU"])
        elif type(layer) is tn.Dropout:
            specs.append(["Dropout", layer.p])
        else:
            raise TypeError(f"torch_reference: no PyTorch twin for {type(layer).__name__}")
    return specs


def save_twin(model, path) -> None:
    """Write what :func:`load_twin` needs to rebuild ``model`` in PyTorch: its layers, weights and mode."""
    layers = {"features": describe_layers(model.features), "regressor": describe_layers(model.regressor),
              "training": bool(model.training)}
    arrays = {f"state/{key}": np.array(value) for key, value in model.state_dict().items()}
    np.savez(path, layers=np.array(json.dumps(layers)), **arrays)


def build_twin(layers: dict, state: dict):
    """The ``torch.nn.Module`` of :func:`save_twin`'s ``layers`` with the weights ``state`` (NumPy arrays)."""
    import torch
    from torch import nn

    def sequential(specs: list) -> nn.Sequential:
        return nn.Sequential(*[getattr(nn, name)(*[tuple(a) if isinstance(a, list) else a for a in arguments])
                               for name, *arguments in specs])

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = sequential(layers["features"])
            self.flatten = nn.Flatten()
            self.regressor = sequential(layers["regressor"])

        def forward(self, x):
            return self.regressor(self.flatten(self.features(x)))

    twin = Twin()
    twin.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in state.items()})
    return twin.train(layers["training"])


def load_twin(path):
    """The PyTorch module :func:`save_twin` wrote to ``path`` (imports NumPy and torch only)."""
    with np.load(path) as archive:
        layers = json.loads(str(archive["layers"]))
        state = {key[len("state/"):]: archive[key] for key in archive.files if key.startswith("state/")}
    return build_twin(layers, state)


def torch_twin(model):
    """A ``torch.nn.Module`` equal to the tinynet ``model`` (same weights, same mode), in this process."""
    layers = {"features": describe_layers(model.features), "regressor": describe_layers(model.regressor),
              "training": bool(model.training)}
    return build_twin(layers, model.state_dict())
