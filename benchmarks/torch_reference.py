"""The same NaimishNet in PyTorch, for benchmarks that compare against it (never a dependency).

``torch_twin(model)`` mirrors a tinynet ``NaimishNet`` layer by layer (same ``features``/``regressor``
names, so the state-dict keys match) and copies its weights, running statistics included. A fused
``BatchNormReLUMaxPool2d`` (``tinynet.nn.fuse``: the block, then two ``Identity`` keeping the names) becomes
PyTorch's ``BatchNorm2d``, ``ReLU``, ``MaxPool2d(2, 2)`` at those three places: the layers it fuses.
"""
from __future__ import annotations

import numpy as np


def torch_twin(model):
    """A ``torch.nn.Module`` equal to the tinynet ``model`` (same weights, same mode); needs torch."""
    import torch
    from torch import nn

    from tinynet import nn as tn

    def convert(layer, fused_tail: list):
        if isinstance(layer, tn.BatchNormReLUMaxPool2d):  # the next two places (Identity) get its ReLU and pool
            fused_tail.extend([nn.ReLU(), nn.MaxPool2d(layer.pool_size, layer.pool_size, layer.pool_padding)])
            return nn.BatchNorm2d(layer.num_features)
        if type(layer) is tn.Identity:
            return fused_tail.pop(0) if fused_tail else nn.Identity()
        if type(layer) is tn.Conv2d:
            return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
        if type(layer) is tn.BatchNorm2d:
            return nn.BatchNorm2d(layer.num_features)
        if type(layer) is tn.BatchNorm1d:
            return nn.BatchNorm1d(layer.num_features)
        if type(layer) is tn.MaxPool2d:
            return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        if type(layer) is tn.Linear:
            return nn.Linear(layer.in_features, layer.out_features)
        if type(layer) is tn.ReLU:
            return nn.ReLU()
        if type(layer) is tn.Dropout:
            return nn.Dropout(layer.p)
        raise TypeError(f"torch_twin: no PyTorch twin for {type(layer).__name__}")

    def twins(sequential) -> list:
        fused_tail: list = []
        return [convert(layer, fused_tail) for layer in sequential]

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*twins(model.features))
            self.flatten = nn.Flatten()
            self.regressor = nn.Sequential(*twins(model.regressor))

        def forward(self, x):
            return self.regressor(self.flatten(self.features(x)))

    twin = Twin()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    return twin.train(model.training)
