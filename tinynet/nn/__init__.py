"""Layers with PyTorch's names: each wraps a forward/backward pair from ``tinynet.functional``."""
from .linear import Linear
from .module import IncompatibleKeys, Module, Parameter, Sequential
