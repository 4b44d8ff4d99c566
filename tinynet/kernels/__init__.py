"""Numba kernels (im2col/col2im, max pooling), each beside a plain NumPy reference."""
