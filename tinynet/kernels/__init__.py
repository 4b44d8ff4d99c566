"""Numba kernels: jitted bodies only. Each is called by one function of ``tinynet.functional`` (or
``tinynet.optim``) that checks its arguments once, and is compared in the tests with the plain NumPy
reference that stands beside that function.

=========================  ====================================================================
``im2col.py``              im2col / col2im for the convolution (``tinynet.functional.im2col``)
``conv_single_channel.py`` direct loops of the 1-channel first convolution (``functional.conv``)
``maxpool.py``             max pooling forward / backward (``tinynet.functional.pooling``)
``batchnorm.py``           batch-norm statistics, normalisation, backward (``functional.batchnorm``)
``fused.py``               BatchNorm2d -> ReLU -> MaxPool2d(2, 2) in one pass (``functional.fused``)
``elementwise.py``         ReLU forward / backward (``tinynet.functional.activation``)
``int8_linear.py``         the product of a Linear layer with int8 weights (``functional.int8_linear``)
``adam.py``                the Adam/AdamW update (``tinynet.optim.adam``)
``winograd.py``            the tile transforms of the 3x3 Winograd convolution F(2x2, 3x3) (``functional.winograd``)
``winograd_4x4.py``        the same for F(4x4, 3x3)
=========================  ====================================================================

The modules load on first use: the callers write ``kernels.im2col.im2col_kernel(...)``, and the first
such attribute imports ``tinynet.kernels.im2col`` (and with it Numba, about 0.3 s, plus Numba's own
start-up on the first kernel call). A process that runs with ``tinynet.backends.numba.enabled = False``
never loads them.
"""
import importlib

_MODULES = ("adam", "batchnorm", "conv_single_channel", "elementwise", "fused", "im2col", "int8_linear", "maxpool",
            "winograd", "winograd_4x4")


def __getattr__(name: str):
    """``kernels.<module>``: import the kernel module on first use (PEP 562)."""
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
