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
``adam.py``                the Adam/AdamW update (``tinynet.optim.adam``)
=========================  ====================================================================
"""
