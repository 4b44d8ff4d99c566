"""Switches between the engines that run tinynet's ops, in the manner of ``torch.backends``.

=========  ==================================================================================
``numba``  ``tinynet.backends.numba.enabled``: the Numba kernels (default) or plain NumPy
=========  ==================================================================================
"""
from . import numba

__all__ = ["numba"]
