"""Export a tinynet model, in eval mode, to an ONNX graph: ``to_onnx(model, input_shape)``.

The graph computes what ``model(x)`` computes in eval mode, from the model's own weights, with the ``onnx``
package only (``pip install onnx``, or the ``onnx`` extra of this project; no PyTorch)::

    import onnx
    from tinynet.onnx import to_onnx

    graph = to_onnx(model.eval(), input_shape=(1, 96, 96))   # input (N, 1, 96, 96), N free
    onnx.save(graph, "model.onnx")

Every layer type has one small converter below, written in the graph's terms: a ``Conv2d`` is one ``Conv``
node, a ``Linear`` one ``Gemm``, a ``BatchNorm1d/2d`` one ``BatchNormalization`` with the running statistics,
the fused ``BatchNormReLUMaxPool2d`` the three nodes it fuses, a ``Dropout`` nothing at all (the identity at
inference), a ``Sequential`` its children in order. The weights become initializers named by their state-dict
keys (``features.0.weight``), the nodes by their module names, so the graph reads like ``print(model)``.
A layer without a converter is refused with an :class:`UnsupportedModuleError` naming its type; a model of
your own (whose ``forward`` is not a ``Sequential``'s loop) registers one with :func:`register_converter`,
as ``keypoints.export`` does for NaimishNet.

The opset is :data:`OPSET` (13): every operator used here has had its current meaning since then, and
OpenCV's DNN module (``cv2.dnn.readNetFromONNX``, 4.x) and onnxruntime both read it. The batch dimension is
symbolic (``"N"``) unless ``batch_size`` fixes it. Weights are written as float32 (what ONNX runtimes and
OpenCV compute in), also for a float64 model.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._grad_mode import no_grad
from ._checks import pair
from .nn import (
    ELU, BatchNorm1d, BatchNorm2d, BatchNormReLUMaxPool2d, Conv2d, Dropout, Flatten, Identity, LeakyReLU, Linear,
    LogSoftmax, MaxPool2d, Module, ReLU, Sequential, Sigmoid, Softmax, Tanh, WinogradConv2d,
)

#: the ONNX operator set the graphs use
OPSET = 13
INSTALL_HINT = 'pip install onnx (in this project: pip install -e ".[onnx]")'


class UnsupportedModuleError(TypeError):
    """A module that no converter turns into ONNX nodes; ``str`` names its type and where it sits."""


def require_onnx():
    """The ``onnx`` module, or an ``ImportError`` that says how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the onnx package, which is not installed: {INSTALL_HINT}") from exc
    return onnx


class GraphBuilder:
    """The nodes and initializers of a graph being built; converters add to it.

    Tensor names: an initializer is named by its state-dict key (``features.0.weight``); a node and its
    output by the module name and the operator (``features.0/Conv``), so every name is unique and says
    which layer it comes from.
    """

    def __init__(self, onnx_module):
        self.onnx = onnx_module
        self.nodes: list = []
        self.initializers: list = []

    def weight(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` (cast to float32) as the initializer ``name``; returns the name."""
        values = np.ascontiguousarray(array, dtype=np.float32)
        self.initializers.append(self.onnx.numpy_helper.from_array(values, name))
        return name

    def node(self, op_type: str, inputs: Sequence[str], name: str, **attributes: Any) -> str:
        """Add a node ``op_type`` named ``"<name>/<op_type>"`` reading ``inputs``; returns its output's name."""
        output = f"{name}/{op_type}"
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output

    def convert(self, module: Module, x: str, name: str) -> str:
        """The nodes computing ``module`` (called ``name`` in the model) on the tensor ``x``; returns the
        name of its output (``x`` itself for a layer that is the identity at inference)."""
        converter = CONVERTERS.get(type(module))  # the exact type: a subclass may compute something else
        if converter is None:
            supported = ", ".join(sorted(t.__name__ for t in CONVERTERS))
            raise UnsupportedModuleError(
                f"tinynet.onnx: no ONNX converter for {type(module).__name__} (module {name or '(the model)'!r});"
                f" supported: {supported}; a model of your own registers one with tinynet.onnx.register_converter"
            )
        return converter(self, module, x, name)


#: a converter: ``(graph, module, input tensor name, module name) -> output tensor name``
Converter = Callable[[GraphBuilder, Module, str, str], str]
CONVERTERS: dict[type, Converter] = {}


def register_converter(module_type: type) -> Callable[[Converter], Converter]:
    """Decorator: use the function for modules of exactly ``module_type`` (not its subclasses)."""

    def register(function: Converter) -> Converter:
        CONVERTERS[module_type] = function
        return function

    return register


def _child(name: str, child: str) -> str:
    return f"{name}.{child}" if name else child


# ---------------------------------------------------------------------------------------------- converters
@register_converter(Sequential)
def convert_sequential(graph: GraphBuilder, module: Sequential, x: str, name: str) -> str:
    """The children in order, named ``<name>.0``, ``<name>.1``, ... as in the state dict."""
    for child_name, child in module.named_children():
        x = graph.convert(child, x, _child(name, child_name))
    return x


@register_converter(Identity)
@register_converter(Dropout)
def convert_identity(graph: GraphBuilder, module: Module, x: str, name: str) -> str:
    """``Identity``, and ``Dropout`` in eval mode: no node, the output is the input."""
    return x


@register_converter(Conv2d)
@register_converter(WinogradConv2d)  # the same convolution; the runtime picks its own algorithm
def convert_conv2d(graph: GraphBuilder, module: Conv2d, x: str, name: str) -> str:
    """``Conv``: ``W (F, C, kh, kw)``, ``B (F,)``, strides, and the padding on every side ``[ph, pw, ph, pw]``."""
    inputs = [x, graph.weight(_child(name, "weight"), module.weight.data)]
    if module.bias is not None:
        inputs.append(graph.weight(_child(name, "bias"), module.bias.data))
    ph, pw = module.padding
    return graph.node("Conv", inputs, name, kernel_shape=list(module.kernel_size), strides=list(module.stride),
                      pads=[ph, pw, ph, pw])


@register_converter(Linear)
def convert_linear(graph: GraphBuilder, module: Linear, x: str, name: str) -> str:
    """``Gemm``: ``x @ W.T + b`` with ``W (out, in)`` stored as tinynet keeps it (``transB=1``)."""
    inputs = [x, graph.weight(_child(name, "weight"), module.weight.data)]
    if module.bias is not None:
        inputs.append(graph.weight(_child(name, "bias"), module.bias.data))
    return graph.node("Gemm", inputs, name, transB=1)


def _batchnorm(graph: GraphBuilder, module: BatchNorm2d | BatchNorm1d, x: str, name: str) -> str:
    """``BatchNormalization`` with the running statistics (eval mode): ``(x - mean) / sqrt(var + eps) * w + b``;
    without ``affine``, ``w = 1`` and ``b = 0``. Its input is ``(N, C, ...)``, as both layers'."""
    count = module.num_features
    scale = np.ones(count) if module.weight is None else module.weight.data
    shift = np.zeros(count) if module.bias is None else module.bias.data
    inputs = [x, graph.weight(_child(name, "weight"), scale), graph.weight(_child(name, "bias"), shift),
              graph.weight(_child(name, "running_mean"), module.running_mean),
              graph.weight(_child(name, "running_var"), module.running_var)]
    return graph.node("BatchNormalization", inputs, name, epsilon=float(module.eps))


register_converter(BatchNorm1d)(_batchnorm)
register_converter(BatchNorm2d)(_batchnorm)


def _maxpool(graph: GraphBuilder, x: str, name: str, kernel, stride, padding) -> str:
    """``MaxPool`` (floor mode; the padding never wins, as tinynet's ``-inf`` padding)."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
    return graph.node("MaxPool", [x], name, kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw])


@register_converter(MaxPool2d)
def convert_maxpool2d(graph: GraphBuilder, module: MaxPool2d, x: str, name: str) -> str:
    return _maxpool(graph, x, name, module.kernel_size, module.stride, module.padding)


@register_converter(BatchNormReLUMaxPool2d)
def convert_batchnorm_relu_maxpool2d(graph: GraphBuilder, module: BatchNormReLUMaxPool2d, x: str, name: str) -> str:
    """The three layers the block fuses: ``BatchNormalization -> Relu -> MaxPool(2, 2)``."""
    x = _batchnorm(graph, module, x, name)
    x = graph.node("Relu", [x], name)
    return _maxpool(graph, x, name, module.pool_size, module.pool_size, module.pool_padding)


@register_converter(Flatten)
def convert_flatten(graph: GraphBuilder, module: Flatten, x: str, name: str) -> str:
    """``Flatten(axis=1)``: ``(N, C, H, W) -> (N, C*H*W)`` in NCHW order, tinynet's default ``Flatten()``.
    ONNX's Flatten always makes a 2-D tensor, so other ``start_dim``/``end_dim`` are refused."""
    if (module.start_dim, module.end_dim) != (1, -1):
        raise UnsupportedModuleError(
            f"tinynet.onnx: module {name!r}: only Flatten(start_dim=1, end_dim=-1) is exported, got"
            f" {module._describe()}"
        )
    return graph.node("Flatten", [x], name, axis=1)


@register_converter(ReLU)
def convert_relu(graph: GraphBuilder, module: ReLU, x: str, name: str) -> str:
    return graph.node("Relu", [x], name)


@register_converter(LeakyReLU)
def convert_leaky_relu(graph: GraphBuilder, module: LeakyReLU, x: str, name: str) -> str:
    return graph.node("LeakyRelu", [x], name, alpha=module.negative_slope)


@register_converter(ELU)
def convert_elu(graph: GraphBuilder, module: ELU, x: str, name: str) -> str:
    return graph.node("Elu", [x], name, alpha=module.alpha)


@register_converter(Tanh)
def convert_tanh(graph: GraphBuilder, module: Tanh, x: str, name: str) -> str:
    return graph.node("Tanh", [x], name)


@register_converter(Sigmoid)
def convert_sigmoid(graph: GraphBuilder, module: Sigmoid, x: str, name: str) -> str:
    return graph.node("Sigmoid", [x], name)


@register_converter(Softmax)
def convert_softmax(graph: GraphBuilder, module: Softmax, x: str, name: str) -> str:
    """``Softmax`` along ``dim`` (since opset 13 ONNX normalises along one axis, as tinynet)."""
    return graph.node("Softmax", [x], name, axis=module.dim)


@register_converter(LogSoftmax)
def convert_log_softmax(graph: GraphBuilder, module: LogSoftmax, x: str, name: str) -> str:
    return graph.node("LogSoftmax", [x], name, axis=module.dim)


# ---------------------------------------------------------------------------------------------- the model
def to_onnx(
    model: Module,
    input_shape: Sequence[int],
    *,
    batch_size: int | None = None,
    metadata: Mapping[str, str] | None = None,
    input_name: str = "input",
    output_name: str = "output",
    graph_name: str | None = None,
):
    """The ONNX graph (an ``onnx.ModelProto``, checked by ``onnx.checker``) of ``model`` in eval mode.

    Parameters
    ----------
    model : Module in eval mode (``model.eval()``): a training-mode model normalises with batch statistics
        and drops units, which a graph for inference does not do, so it is refused (``ValueError``)
    input_shape : the shape of one sample, e.g. ``(1, 96, 96)`` for ``(N, 1, 96, 96)`` images
    batch_size : a fixed batch size, or None (default) for a symbolic ``"N"``
    metadata : strings stored as the model's ``metadata_props`` (what a user of the file needs to know)
    input_name, output_name, graph_name : names in the graph (``graph_name`` defaults to the model's type)

    Returns
    -------
    onnx.ModelProto with input ``input_name`` ``(N, *input_shape)`` float32 and output ``output_name``
    ``(N, *out)`` float32, ``out`` being what the model gives for one sample (found by one forward pass on
    zeros, which also checks that the model accepts ``input_shape``).

    Raises
    ------
    ImportError : the ``onnx`` package is not installed (the message says how to install it)
    UnsupportedModuleError : a layer without a converter (the message names its type)
    ValueError : a model in training mode, or a bad ``input_shape`` / ``batch_size`` / ``metadata``
    """
    onnx = require_onnx()
    if not isinstance(model, Module):
        raise TypeError(f"to_onnx: expected a tinynet Module, got {type(model).__name__}")
    training = [name or type(m).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(f"to_onnx: export a model in eval mode (call model.eval() first); in training mode:"
                         f" {', '.join(training[:3])}{' ...' if len(training) > 3 else ''}")
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"to_onnx: input_shape must be the positive sizes of one sample, e.g. (1, 96, 96), got {input_shape!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"to_onnx: batch_size must be a positive integer or None, got {batch_size!r}")
    metadata = dict(metadata or {})
    bad = [key for key, value in metadata.items() if not (isinstance(key, str) and isinstance(value, str))]
    if bad:
        raise ValueError(f"to_onnx: metadata keys and values must be strings, got {bad[0]!r}: {metadata[bad[0]]!r}")

    graph = GraphBuilder(onnx)
    output = graph.convert(model, input_name, "")  # converters run before the forward: an unsupported layer says so first
    with no_grad():
        sample = model(np.zeros((1, *shape), dtype=np.float32))
    if output == input_name:  # a model that is the identity: one node, so the output has its own name
        graph.nodes.append(onnx.helper.make_node("Identity", [input_name], [output_name], name=output_name))
    else:  # the node that computes the model's output writes the graph's output
        for node in graph.nodes:
            for tensors in (node.input, node.output):
                for index, tensor in enumerate(tensors):
                    if tensor == output:
                        tensors[index] = output_name
    batch = "N" if batch_size is None else int(batch_size)
    float32 = onnx.TensorProto.FLOAT
    onnx_graph = onnx.helper.make_graph(
        graph.nodes, graph_name or type(model).__name__,
        [onnx.helper.make_tensor_value_info(input_name, float32, [batch, *map(int, shape)])],
        [onnx.helper.make_tensor_value_info(output_name, float32, [batch, *map(int, sample.shape[1:])])],
        initializer=graph.initializers,
    )
    opsets = [onnx.helper.make_opsetid("", OPSET)]
    proto = onnx.helper.make_model(onnx_graph, opset_imports=opsets, producer_name="tinynet",
                                   ir_version=onnx.helper.find_min_ir_version_for(opsets))
    from . import __version__

    proto.producer_version = __version__
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)  # also infers every shape: a graph that does not fit fails here
    return proto
