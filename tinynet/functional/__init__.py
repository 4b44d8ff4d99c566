"""Stateless forward/backward pairs: ``x_forward(...) -> (out, cache)``, ``x_backward(dout, cache)``.

Each cache is a NamedTuple holding only what the backward pass needs. Modules in ``tinynet.nn`` call
these and keep the cache between forward and backward.
"""
from .activation import (
    ActivationCache,
    elu_backward,
    elu_forward,
    SoftmaxCache,
    leaky_relu_backward,
    leaky_relu_forward,
    log_softmax_backward,
    log_softmax_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from .batchnorm import BatchNormCache, batchnorm_backward, batchnorm_forward
from .conv import Conv2dCache, conv2d_backward, conv2d_forward
from .dropout import DropoutCache, dropout_backward, dropout_forward
from .fused import BatchNormReLUMaxPoolCache, batchnorm_relu_maxpool2d_backward, batchnorm_relu_maxpool2d_forward
from .int8_linear import int8_linear_forward, quantize_rows
from .linear import LinearCache, linear_backward, linear_forward
from .loss import (
    CrossEntropyCache,
    LossCache,
    cross_entropy_backward,
    cross_entropy_forward,
    l1_loss_backward,
    l1_loss_forward,
    mse_loss_backward,
    mse_loss_forward,
    smooth_l1_loss_backward,
    smooth_l1_loss_forward,
    wing_loss_backward,
    wing_loss_forward,
)
from .pooling import MaxPool2dCache, maxpool2d_backward, maxpool2d_forward
