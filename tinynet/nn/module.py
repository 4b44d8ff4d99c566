"""``Module``: the base class every layer and model is built from.

A ``Module`` owns ``Parameter``s (trainable arrays with a ``.grad``, ``tinynet.nn.parameter``), buffers
(state that is saved but not trained, such as BatchNorm's running statistics) and child modules, with
PyTorch's names:
``parameters()``, ``named_parameters()``, ``buffers()``, ``state_dict()``, ``load_state_dict()``,
``train()``, ``eval()``, ``zero_grad()``.

There is no autograd. Each layer's ``forward(x)`` keeps in ``self._cache`` exactly what its
``backward`` needs, and ``backward(dout)``

- *adds* the gradients of its parameters into ``param.grad`` (a second backward adds once more,
  exactly as calling ``loss.backward()`` twice does in PyTorch), and
- returns ``dx``, the gradient of the loss with respect to the layer's input.

A training step therefore reads::

    out = model(x)                      # forward, caches kept
    loss = criterion(out, y)
    model.zero_grad()
    model.backward(criterion.backward())
    optimizer.step()
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator, NamedTuple

import numpy as np

from .._checks import FLOAT_DTYPES, check_dout
from .._grad_mode import is_grad_enabled
from .parameter import Parameter


_NOT_GIVEN = object()  # Module._saved_cache called without a dout to check


class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


class Description:
    """A module's ``_describe()`` text, made when it is formatted (``f"{where}: ..."``), not before.

    Every forward hands its module's description to its input checks, which name it only when they raise. Made on
    every call, the text (``extra_repr`` formatting shapes, floats and dtypes) took 0.44 ms of a 9.6 ms NaimishNet-96
    read of one face (``--speed fast``, on a machine with slow products); made when a message needs it, it costs
    nothing on the way through.
    """

    __slots__ = ("module",)

    def __init__(self, module: "Module"):
        self.module = module

    def __str__(self) -> str:
        return self.module._describe()


class Module:
    """Base class of every layer and model.

    Subclasses set parameters and child modules as attributes (they are registered automatically),
    register buffers with ``register_buffer``, and implement ``forward`` and ``backward``.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "_output_spec", None)  # (shape, dtype) of the output the cache belongs to

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning attributes")
        # As PyTorch: an array assigned to a registered buffer replaces the buffer (it stays in
        # state_dict), and a plain array assigned to a parameter is an error rather than a silent
        # un-registration that would hide it from parameters() and the optimizer.
        if not isinstance(value, (Parameter, Module)):
            if name in self._buffers:
                if not isinstance(value, np.ndarray):
                    raise TypeError(
                        f"{type(self).__name__}: cannot assign a {type(value).__name__} to buffer {name!r}"
                        f" (a numpy array expected; use `del module.{name}` to remove it)"
                    )
                self._buffers[name] = value
                return
            if name in self._parameters and value is not None:
                raise TypeError(
                    f"{type(self).__name__}: cannot assign a {type(value).__name__} to parameter {name!r}"
                    f" (a Parameter or None expected; to change its values write {name}.data[...] = ...)"
                )
        # leave the other registries; a name re-assigned in its own registry keeps its place (as
        # PyTorch), so replacing a Sequential's child does not move it to the end
        own = self._parameters if isinstance(value, Parameter) else self._modules if isinstance(value, Module) else None
        for store in (self._parameters, self._buffers, self._modules):
            if store is not own:
                store.pop(name, None)
        if own is None:
            object.__setattr__(self, name, value)
            return
        own[name] = value
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: look in the registries
        for store in ("_parameters", "_buffers", "_modules"):
            registry = self.__dict__.get(store)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array: np.ndarray | None) -> None:
        """Keep ``array`` as state saved in ``state_dict`` but not trained (e.g. ``running_mean``)."""
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{type(self).__name__}.register_buffer: {name!r} must be a numpy array")
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` under ``name``; ``None`` records an absent parameter (e.g. ``bias=False``)."""
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    # ------------------------------------------------------------------ forward / backward
    def forward(self, *inputs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def backward(self, dout: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward()")

    def __call__(self, *inputs: Any) -> Any:
        return self.forward(*inputs)

    #: what fixes the output's dtype, for the message of a ``dout`` of another dtype
    _output_dtype_of = "output"

    def _save_for_backward(self, cache: Any, out: np.ndarray | None = None) -> None:
        """Keep ``cache`` (and ``out``'s shape and dtype, which backward checks ``dout`` against) for
        backward, unless inside ``tinynet.no_grad()``."""
        if is_grad_enabled():
            object.__setattr__(self, "_cache", cache)
            object.__setattr__(self, "_output_spec", None if out is None else (out.shape, out.dtype))
        else:
            object.__setattr__(self, "_cache", None)

    def _saved_cache(self, dout: Any = _NOT_GIVEN) -> Any:
        """The cache of the last forward, after checking ``dout`` (when given) against that forward's
        output (``check_dout``); a clear error if there was no forward."""
        if self._cache is None:
            raise RuntimeError(
                f"{self._describe()}: backward() called before forward() (or the forward ran inside"
                " tinynet.no_grad(), which keeps nothing for backward)"
            )
        spec = self.__dict__.get("_output_spec")
        if dout is not _NOT_GIVEN and spec is not None:
            check_dout(self._where(), dout, *spec, dtype_of=self._output_dtype_of)
        return self._cache

    # ------------------------------------------------------------------ traversal
    def children(self) -> Iterator["Module"]:
        yield from self._modules.values()

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        yield from self._modules.items()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for module_name, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self) -> Iterator[Parameter]:
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for module_name, module in self.named_modules(prefix):
            for name, buf in module._buffers.items():
                yield (f"{module_name}.{name}" if module_name else name), buf

    def buffers(self) -> Iterator[np.ndarray]:
        for _, buf in self.named_buffers():
            yield buf

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode: bool = True) -> "Module":
        """Training mode (BatchNorm uses batch statistics, Dropout drops). Returns ``self``."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Evaluation mode (BatchNorm uses running statistics, Dropout is the identity)."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients: ``grad = None`` (PyTorch's default) or filled with zeros."""
        for param in self.parameters():
            if set_to_none or param.grad is None:
                param.grad = None
            else:
                param.grad.fill(0)

    def to(self, dtype: Any) -> "Module":
        """Convert every parameter and floating-point buffer to ``dtype`` (``np.float64`` for gradient checks)."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}.to: expected float32 or float64, got {dtype}")
        for module in self.modules():
            for param in module._parameters.values():
                param.data = param.data.astype(dtype)
                param.grad = None if param.grad is None else param.grad.astype(dtype)
            for name, buf in module._buffers.items():
                if buf.dtype in FLOAT_DTYPES:
                    module._buffers[name] = buf.astype(dtype)
            object.__setattr__(module, "_cache", None)
        return self

    def double(self) -> "Module":
        return self.to(np.float64)

    def float(self) -> "Module":
        return self.to(np.float32)

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters and buffers by dotted name (``"0.weight"``, ``"1.running_mean"``), as PyTorch.

        The arrays are the module's own (not copies): copy them to keep a snapshot.
        """
        state: OrderedDict[str, np.ndarray] = OrderedDict()
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, param in module._parameters.items():
                state[prefix + name] = param.data
            for name, buf in module._buffers.items():
                state[prefix + name] = buf
        return state

    def load_state_dict(self, state_dict: "dict[str, Any]", strict: bool = True) -> IncompatibleKeys:
        """Copy values from ``state_dict`` into this module's parameters and buffers.

        Values are converted to each parameter's dtype (so a float32 PyTorch state dict loads into a
        float64 model). Shape mismatches always raise; with ``strict=True`` missing or unexpected keys
        raise too, and the error lists all of them. Nothing is changed when an error is raised.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        converted: dict[str, np.ndarray] = {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            if value.shape != target.shape:
                mismatched.append(f"  {key}: expected shape {target.shape}, got {value.shape}")
                continue
            if value.dtype.kind not in "fiub":
                mismatched.append(f"  {key}: expected a numeric array, got dtype {value.dtype}")
                continue
            converted[key] = value
        problems = []
        if mismatched:
            problems.append("size mismatch:\n" + "\n".join(mismatched))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n" + "\n".join(problems))
        for key, value in converted.items():
            np.copyto(own[key], value, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The constructor arguments shown in ``repr``, e.g. ``"1, 32, kernel_size=(4, 4)"``."""
        return ""

    def _describe(self) -> str:
        """Short name used in error messages: ``Conv2d(1, 32, kernel_size=(4, 4), stride=(1, 1))``."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def _where(self) -> "Description":
        """What a forward's checks name in their messages: this module's ``_describe()``, made only when a message
        is (see :class:`Description`)."""
        return Description(self)

    def __repr__(self) -> str:
        if not self._modules:
            return self._describe()
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)

    def summary(self, input_shape: tuple[int, ...], dtype: Any = np.float32) -> str:
        """A table of every leaf layer with its output shape and parameter count.

        Runs one forward pass on zeros of ``input_shape`` in eval mode (nothing is cached or updated)
        and restores afterwards each module's own training mode (a model may hold a frozen BatchNorm
        in eval mode while the rest trains) and the caches of the last real forward.
        """
        from .._grad_mode import no_grad

        rows: list[tuple[str, str, str, int]] = []
        saved = [(module, module.training, module._cache) for module in self.modules()]
        self.eval()
        try:
            with no_grad():
                _trace_shapes(self, np.zeros(input_shape, dtype=dtype), "", rows)
        finally:
            for module, training, cache in saved:
                object.__setattr__(module, "training", training)
                object.__setattr__(module, "_cache", cache)
        name_w = max([len("layer")] + [len(r[0]) for r in rows])
        type_w = max([len("type")] + [len(r[1]) for r in rows])
        shape_w = max([len("output shape")] + [len(r[2]) for r in rows])
        header = f"{'layer':<{name_w}}  {'type':<{type_w}}  {'output shape':<{shape_w}}  {'params':>10}"
        out = [header, "-" * len(header)]
        for name, kind, shape, count in rows:
            out.append(f"{name:<{name_w}}  {kind:<{type_w}}  {shape:<{shape_w}}  {count:>10,}")
        out.append("-" * len(header))
        out.append(f"total parameters: {self.num_parameters():,}")
        return "\n".join(out)


def _trace_shapes(module: Module, x: Any, name: str, rows: list) -> Any:
    """Forward ``x`` through ``module``, recording one row per leaf layer as it runs.

    Each leaf's ``forward`` is wrapped for the duration of the call (what PyTorch does with forward
    hooks), so any model works, whatever its forward does with its children.
    """
    leaves = [(n or type(m).__name__, m) for n, m in module.named_modules(name) if not m._modules]

    def wrap(leaf_name: str, leaf: Module):
        original = leaf.forward

        def forward(*inputs: Any) -> Any:
            out = original(*inputs)
            own = sum(p.size for p in leaf._parameters.values())
            rows.append((leaf_name, type(leaf).__name__, str(tuple(np.shape(out))), own))
            return out

        return forward

    for leaf_name, leaf in leaves:
        object.__setattr__(leaf, "forward", wrap(leaf_name, leaf))
    try:
        return module(x)
    finally:
        for _, leaf in leaves:
            del leaf.__dict__["forward"]
