"""Layers with PyTorch's names: each wraps a forward/backward pair from ``tinynet.functional``."""
from .activation import ELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .container import Identity, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten
from .fused import BatchNormReLUMaxPool2d, fuse
from .int8_linear import Int8Linear, quantize_int8
from .linear import Linear
from .loss import CrossEntropyLoss, L1Loss, MSELoss, SmoothL1Loss, WingLoss
from .module import IncompatibleKeys, Module
from .normalization import BatchNorm1d, BatchNorm2d
from .parameter import Parameter
from .pooling import MaxPool2d
from .winograd import WinogradConv2d, use_winograd

__all__ = [
    "Module", "Parameter", "Sequential", "Identity", "IncompatibleKeys", "fuse", "BatchNormReLUMaxPool2d",
    "quantize_int8", "Int8Linear",
    "Conv2d", "WinogradConv2d", "use_winograd",
    "MaxPool2d", "BatchNorm1d", "BatchNorm2d", "Dropout", "Linear", "Flatten",
    "ReLU", "ELU", "LeakyReLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
    "MSELoss", "L1Loss", "SmoothL1Loss", "WingLoss", "CrossEntropyLoss",
]
