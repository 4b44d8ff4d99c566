"""Optimizers (PyTorch's update rules and state-dict layout) and learning-rate schedulers."""
from . import lr_scheduler, swa_utils
from .adam import Adam, AdamW
from .lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LRScheduler", "StepLR", "CosineAnnealingLR", "lr_scheduler", "swa_utils"]
