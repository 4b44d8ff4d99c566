"""``Int8Linear``, a ``Linear`` with int8 weights for inference, and ``quantize_int8(model)``, the explicit pass
that puts it in (see ``tinynet.functional.int8_linear`` for the math)::

    model = quantize_int8(copy.deepcopy(trained).eval())
    print(model.regressor[0])
    # Int8Linear(in_features=6400, out_features=1000, bias=True; int8 weights, a float32 scale per output row)

Nothing is quantised unless the program asks: ``print(model)`` then shows every ``Int8Linear``, because it is
what runs. Measured on NaimishNet-96 with the shipped weights, every Linear quantised: test NME 5.68 % with
``--speed fast`` and 5.61 % with the default reads, as with float32 weights; the first fully connected layer
(6400 x 1000) for one face 0.30-0.43 against 0.44 ms, for two 0.49 against 1.87-2.06 ms, for eight 1.3-1.5
against 1.5-1.8 ms; for 16 rows and more BLAS on the float weights is faster (64: 12-14 against 5.5-6.2 ms).

``quantize_int8(model, fold_batchnorm=True)`` also folds each eval-mode ``BatchNorm1d`` that follows a ``Linear``
into it before the weights are quantised: in eval mode batch norm is ``y -> (y - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)`` per feature, so ``Linear`` then ``BatchNorm1d`` is one affine map,

    weight' = s[:, None] * weight        bias' = (bias - mean) * s + beta

and the batch norm becomes an ``Identity`` (its layer, run on one face, cost 0.12-0.26 ms of Python and a kernel
call; a row's scale absorbs ``s`` exactly, so the int8 steps are those of the unfolded weight). ``repr`` names the
folded layer: ``Int8Linear(...; BatchNorm1d(1000, eps=1e-05, ...) folded in)``.
"""
from __future__ import annotations

import numpy as np

from .._checks import check_layer_input
from ..functional.int8_linear import int8_linear_forward, quantize_rows
from .container import Identity, Sequential
from .linear import Linear
from .module import Module
from .normalization import BatchNorm1d


class Int8Linear(Module):
    """``y = scale * (x @ weight.T) + bias`` with an int8 ``weight``: a trained ``Linear`` for inference.

    Shapes
    ------
    input ``(N, in_features)`` float -> output ``(N, out_features)`` of the scale's dtype; buffers ``weight``
    ``(out_features, in_features)`` int8, ``scale`` ``(out_features,)`` and ``bias`` ``(out_features,)`` (or
    no bias), in the dtype of the ``Linear`` it was made from (``to(dtype)`` converts them, not the int8 weight).

    Build it with ``Int8Linear.from_linear(linear)`` or ``quantize_int8(model)``. It has no parameters and no
    backward: train the float ``Linear``, then quantise it.
    """

    def __init__(self, weight: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, folded: str | None = None):
        super().__init__()
        if weight.dtype != np.int8 or weight.ndim != 2 or scale.shape != (weight.shape[0],):
            raise ValueError(f"Int8Linear: expected an int8 weight (out, in) and a scale (out,), got {weight.dtype}"
                             f" {weight.shape} and {scale.shape}")
        self.in_features, self.out_features = int(weight.shape[1]), int(weight.shape[0])
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.has_bias = bias is not None
        if self.has_bias:
            self.register_buffer("bias", bias)
        self.folded = folded  # the description of a BatchNorm1d folded into weight and bias, for repr

    @classmethod
    def from_linear(cls, linear: Linear, batchnorm: BatchNorm1d | None = None) -> "Int8Linear":
        """The int8 copy of ``linear`` (``tinynet.functional.int8_linear.quantize_rows``), in its training mode;
        with ``batchnorm``, an eval-mode ``BatchNorm1d`` that reads its output, of ``linear`` then ``batchnorm``
        (folded as the module docstring says)."""
        if not isinstance(linear, Linear):
            raise TypeError(f"Int8Linear.from_linear: expected a Linear, got {type(linear).__name__}")
        if batchnorm is None:
            weight, bias, folded = linear.weight.data, None if linear.bias is None else linear.bias.data.copy(), None
        else:
            (weight, bias), folded = _folded(linear, batchnorm), batchnorm._describe()  # new arrays
        steps, scale = quantize_rows(weight)
        return cls(steps, scale, bias, folded).train(linear.training)

    def extra_repr(self) -> str:
        folded = f"; {self.folded} folded in" if self.folded else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias};"
                f" int8 weights, a {self.scale.dtype} scale per output row{folded}")

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_layer_input(self._where(), x, 2, "(N, in_features)", self.in_features, "features", self.scale,
                          "scale")
        return int8_linear_forward(x, self.weight, self.scale, self.bias if self.has_bias else None)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"{self._describe()}: an int8 layer has no backward (it is for inference: train the float"
                           " Linear, then quantise it with quantize_int8)")


def _folded(linear: Linear, batchnorm: BatchNorm1d) -> tuple[np.ndarray, np.ndarray]:
    """``(weight, bias)`` of ``linear`` then the eval-mode ``batchnorm`` as one layer, in ``linear``'s dtype (the
    arithmetic in float64)."""
    if type(batchnorm) is not BatchNorm1d or batchnorm.num_features != linear.out_features:
        raise TypeError(f"Int8Linear.from_linear: expected a BatchNorm1d({linear.out_features}) to fold, got {batchnorm!r}")
    if batchnorm.training:
        raise ValueError(f"Int8Linear.from_linear: {batchnorm._describe()} is in training mode, where it normalises by"
                         " each batch's statistics; only its running statistics (eval mode) can be folded in")
    s = 1.0 / np.sqrt(batchnorm.running_var.astype(np.float64) + batchnorm.eps)
    if batchnorm.weight is not None:
        s = s * batchnorm.weight.data
    bias = np.zeros(linear.out_features) if linear.bias is None else linear.bias.data.astype(np.float64)
    bias = (bias - batchnorm.running_mean) * s + (0.0 if batchnorm.bias is None else batchnorm.bias.data)
    dtype = linear.weight.data.dtype
    return (linear.weight.data * s[:, None]).astype(dtype), bias.astype(dtype)


def quantize_int8(model: Module, fold_batchnorm: bool = False) -> Module:
    """Replace every ``Linear`` of ``model`` (at any depth) by ``Int8Linear.from_linear(it)``; with
    ``fold_batchnorm``, a ``Linear`` directly followed in a ``Sequential`` by an eval-mode ``BatchNorm1d`` by
    ``Int8Linear.from_linear(it, that BatchNorm1d)``, and the ``BatchNorm1d`` by an ``Identity``.

    In place; returns ``model``, or the new ``Int8Linear`` when ``model`` is itself a ``Linear``. The children keep
    their names (the state-dict keys stay; ``weight`` becomes int8 and a ``scale`` is added; a folded batch norm's
    keys go). Copy the model first (``copy.deepcopy``) to keep the float one.
    """
    if isinstance(model, Linear):
        return Int8Linear.from_linear(model)
    sequentials = [module for module in model.modules() if isinstance(module, Sequential)] if fold_batchnorm else []
    for sequential in sequentials:
        layers = list(sequential)
        for i, (linear, batchnorm) in enumerate(zip(layers, layers[1:])):
            if isinstance(linear, Linear) and type(batchnorm) is BatchNorm1d and not batchnorm.training:
                sequential[i], sequential[i + 1] = Int8Linear.from_linear(linear, batchnorm), Identity()
    for module in list(model.modules()):
        for name, child in list(module._modules.items()):
            if isinstance(child, Linear):
                module._modules[name] = Int8Linear.from_linear(child)
    return model
