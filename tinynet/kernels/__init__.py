"""Numba kernels: jitted bodies only, each behind the validating wrapper that calls it and beside the
plain reference the tests compare it against.

=========================  ====================================================================
``im2col.py``              im2col / col2im for the convolution (``tinynet.functional.conv``)
``conv_single_channel.py`` direct loops of the 1-channel first convolution (``functional.conv``)
``maxpool.py``             max pooling forward / backward (``tinynet.functional.pooling``)
``batchnorm.py``           batch-norm statistics, normalisation, backward (``functional.batchnorm``)
``fused.py``               BatchNorm2d -> ReLU -> MaxPool2d(2, 2) in one pass (``functional.fused``)
``elementwise.py``         ReLU forward / backward (``tinynet.functional.activation``)
``adam.py``                the Adam/AdamW update (``tinynet.optim.adam``)
=========================  ====================================================================
"""
