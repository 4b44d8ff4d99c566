"""Stateless forward/backward pairs: ``x_forward(...) -> (out, cache)``, ``x_backward(dout, cache)``."""
from .linear import LinearCache, linear_backward, linear_forward
