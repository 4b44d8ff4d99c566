"""The Numba kernels or plain NumPy: which one runs tinynet's ops (as ``torch.backends.mkldnn``).

Every op that has a Numba kernel (im2col/col2im and so the convolution, the single-channel
convolution, batch norm, the fused BatchNorm-ReLU-MaxPool block, max pooling, ReLU, Adam's update)
reads ``enabled`` each time it runs::

    import tinynet.backends.numba

    tinynet.backends.numba.enabled = False          # from now on: plain NumPy
    with tinynet.backends.numba.flags(enabled=False):
        out = model(x)                              # plain NumPy inside, the previous setting after

Enabled (the default), the kernels run: the fastest engine for training and large batches, but the
first kernel a process calls costs 0.6 to 0.9 s (``import numba`` and Numba's start-up), and on a
machine whose kernel cache is empty the first run compiles those it calls (a training step's 14 take
about 8-13 s). Disabled, each op runs its ``*_reference`` function (the plain NumPy code beside it in
``tinynet.functional``, which the tests compare the kernels against), forward and backward, and Numba is never
imported: a few faces are answered in a fraction of a second, training works but is several times slower.

The environment variable ``TINYNET_NUMBA`` (``1`` or ``0``) sets the default of a process. This
module imports neither Numba nor the kernels; ``report_compilation`` only records its stream until
tinynet's Numba module (``tinynet._numba``) loads with the first kernel.
"""
from __future__ import annotations

import contextlib
import os
import sys
import types
from typing import Iterator, TextIO

#: the environment variable that sets ``enabled`` when tinynet is imported
ENVIRONMENT_VARIABLE = "TINYNET_NUMBA"

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _default_from_environment() -> bool:
    text = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if text in _TRUE or text == "":
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"tinynet: expected the environment variable {ENVIRONMENT_VARIABLE} to be 1 or 0, got {text!r}")


_state = {"enabled": _default_from_environment()}


@contextlib.contextmanager
def flags(enabled: bool) -> Iterator[None]:
    """A context in which ``enabled`` is the given value; the previous value comes back at its end
    (also after an exception), as ``torch.backends.mkldnn.flags(enabled=...)``."""
    previous = _state["enabled"]
    sys.modules[__name__].enabled = enabled  # checked by the property below
    try:
        yield
    finally:
        _state["enabled"] = previous


# ---------------------------------------------------------------------------------------------- compile messages
#: streams ``report_compilation`` was given; ``tinynet._numba`` registers a listener for the first when it loads
_compile_report_streams: list[TextIO] = []


def report_compilation(stream: TextIO) -> None:
    """From now on, say on ``stream`` which tinynet kernel Numba compiles while it does (a first run on a
    machine, or after an upgrade, compiles for tens of seconds; a warm run prints nothing). The command
    lines call it when standard error is a terminal. Calling it again changes nothing. Numba is not
    imported here: the listener is registered when the first kernel loads Numba (now, if one already has)."""
    if _compile_report_streams:
        return
    _compile_report_streams.append(stream)
    numba_module = sys.modules.get("tinynet._numba")
    if numba_module is not None:
        numba_module.register_compile_report(stream)


class _NumbaBackendModule(types.ModuleType):
    """This module, with ``enabled`` a checked property (a plain module attribute would take any value)."""

    @property
    def enabled(self) -> bool:
        """True: the Numba kernels run; False: plain NumPy (the ``*_reference`` functions)."""
        return _state["enabled"]

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if type(value).__name__ not in ("bool", "bool_"):  # numpy.bool_ too, without importing NumPy here
            raise TypeError(f"tinynet.backends.numba.enabled: expected True or False, got {value!r}")
        _state["enabled"] = bool(value)


sys.modules[__name__].__class__ = _NumbaBackendModule
