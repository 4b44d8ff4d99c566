"""Numba kernels, each called by one function of ``tinynet.functional`` (or ``tinynet.optim``) that
checks its arguments, and compared in the tests with a plain NumPy reference.

=========================  ====================================================================
``im2col.py``              im2col / col2im for the convolution (``tinynet.functional.conv``)
``conv_single_channel.py`` direct loops of the 1-channel first convolution (``functional.conv``)
``maxpool.py``             max pooling forward / backward (``tinynet.functional.pooling``)
``batchnorm.py``           batch-norm statistics, normalisation, backward (``functional.batchnorm``)
``fused.py``               BatchNorm2d -> ReLU -> MaxPool2d(2, 2) in one pass (``functional.fused``)
``elementwise.py``         ReLU forward / backward (``tinynet.functional.activation``)
``adam.py``                the Adam/AdamW update (``tinynet.optim.adam``)
=========================  ====================================================================

``maxpool.py``, ``fused.py``, ``conv_single_channel.py`` and ``adam.py`` hold jitted bodies only;
``im2col.py``, ``batchnorm.py`` and ``elementwise.py`` still keep small validating wrappers (and
im2col its reference) beside their kernels.
"""
