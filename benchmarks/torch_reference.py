"""The same NaimishNet in PyTorch, for benchmarks that compare against it (never a dependency).

``torch_twin(model)`` mirrors a tinynet ``NaimishNet`` layer by layer (same ``features``/``regressor``
names, so the state-dict keys match) and copies its weights, running statistics included.
"""
from __future__ import annotations

import numpy as np


def torch_twin(model):
    """A ``torch.nn.Module`` equal to the tinynet ``model`` (same weights, same mode); needs torch."""
    import torch
    from torch import nn

    from tinynet import nn as tn

    def convert(layer):
        if isinstance(layer, tn.Conv2d):
            return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
        if isinstance(layer, tn.BatchNorm2d):
            return nn.BatchNorm2d(layer.num_features)
        if isinstance(layer, tn.BatchNorm1d):
            return nn.BatchNorm1d(layer.num_features)
        if isinstance(layer, tn.MaxPool2d):
            return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        if isinstance(layer, tn.Linear):
            return nn.Linear(layer.in_features, layer.out_features)
        if isinstance(layer, tn.ReLU):
            return nn.ReLU()
        if isinstance(layer, tn.Dropout):
            return nn.Dropout(layer.p)
        raise TypeError(f"torch_twin: no PyTorch twin for {type(layer).__name__}")

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*[convert(layer) for layer in model.features])
            self.flatten = nn.Flatten()
            self.regressor = nn.Sequential(*[convert(layer) for layer in model.regressor])

        def forward(self, x):
            return self.regressor(self.flatten(self.features(x)))

    twin = Twin()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    return twin.train(model.training)
