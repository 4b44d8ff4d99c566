"""Compile tinynet's Numba kernels before their first use, on several cores.

    python -m tinynet.compile              # once after installing: every kernel a float32 training step calls,
                                           # and those of predict --speed fast
    python -m tinynet.compile --jobs 1     # in this process only

Those include every kernel ``python -m keypoints predict --engine numba`` calls (after the command, a first
predict of the README portrait compiled none; on an empty cache it compiles 5).

Numba compiles a kernel the first time a process calls it with new argument types, and keeps the machine code in
its cache (``cache=True``: ``__pycache__`` beside the kernels, or ``NUMBA_CACHE_DIR``), so only the first run on
a machine pays. That run compiles the 18 kernels of a training step one after the other, on one core, 14-15 s on
the 2-core machines here. This module compiles them from a list of their argument types (``TRAINING_STEP``, in
the order a training step first calls them), in ``--jobs`` processes at once.

``start_background()`` is what training (``keypoints.train``) calls before it prepares its data: while the
training process compiles the forward pass's kernels as it meets them, a second process compiles the list from
its end (Adam's and the backward pass's kernels first), so that the training process finds them in the cache when
it gets there. It stops at the first kernel it finds in the cache: the training process has come that far, and
the two have split the work between them whatever each kernel costs (a fixed half each left the second process
1.6 s more to compile than the first once the Winograd convolution's kernels came in). At most the kernel they
meet on is compiled by both, and written to the cache twice with the same contents (Numba writes each file under
a temporary name and renames it). The first step from an empty cache, in turns with and without a second process
(``benchmarks/README.md``): 7.0, 7.7 and 10.1 s against 10.3, 14.8 and 12.8 s. With a warm cache nothing is
started.

Other argument types (float64 gradient checks, a layer the list does not name) compile at their first call, as
before.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from ._threads import available_cores
from .backends import numba as numba_backend

#: (kernel module, kernel, argument types) for every kernel call of a float32 training step, first use first: a
#: NaimishNet-style net as ``keypoints.train`` trains it (a 1-channel first convolution, fused BatchNorm-ReLU-MaxPool
#: blocks, a Winograd F(4x4, 3x3) convolution, im2col convolutions, BatchNorm1d and ReLU in the head) and Adam. The
#: last two arguments are each kernel's range (``first, stop``).
#: ``tests/test_compile.py`` checks that a real training step calls exactly these.
TRAINING_STEP: list[tuple[str, str, str]] = [
    ("conv_single_channel", "conv1ch_forward_4x4_kernel",
     "float32[:, :, ::1], float32[:, :, ::1], float32[::1], float32[:, :, :, ::1], int64, int64"),
    ("batchnorm", "channel_stats_kernel", "float32[:, :, ::1], float64[::1], float64[::1], int64, int64"),
    ("fused", "bn_relu_maxpool_forward_kernel",
     "float32[:, :, :, ::1], float64[::1], float64[::1], float32[:, :, :, ::1], int8[:, :, :, ::1], int64, int64"),
    ("winograd_4x4", "winograd4x4_input_kernel", "float32[:, :, ::1], float32[:, :, :, ::1], int64, int64"),
    ("winograd_4x4", "winograd4x4_output_kernel",
     "float32[:, :, :, ::1], float32[::1], float32[:, :, ::1], int64, int64"),
    ("im2col", "im2col_kernel",
     "float32[:, :, :, ::1], int64, int64, int64, int64, int64, int64, float32[:, :, ::1], int64, int64"),
    ("batchnorm", "normalize_kernel",
     "float32[:, :, ::1], float64[::1], float64[::1], float64[::1], float64[::1], float32[:, :, ::1], int64, int64"),
    ("elementwise", "relu_forward_kernel", "float32[::1], float32[::1], int64, int64"),
    ("elementwise", "relu_backward_kernel", "float32[::1], float32[::1], float32[::1], int64, int64"),
    ("batchnorm", "batchnorm_backward_sums_kernel",
     "float32[:, :, ::1], float32[:, :, ::1], float64[::1], float64[::1], float64[::1], float64[::1], int64, int64"),
    ("batchnorm", "batchnorm_backward_dx_kernel",
     "float32[:, :, ::1], float32[:, :, ::1], float64[::1], float64[::1], float64[::1], float64[::1], float64[::1],"
     " float64, bool_, float32[:, :, ::1], int64, int64"),
    ("fused", "bn_relu_maxpool_backward_sums_kernel",
     "float32[:, :, :, ::1], float32[:, :, :, ::1], int8[:, :, :, ::1], float32[:, :, :, ::1], float64[::1],"
     " float64[:, ::1], int64, int64"),
    ("fused", "bn_relu_maxpool_backward_dx_kernel",
     "float32[:, :, :, ::1], float32[:, :, :, ::1], int8[:, :, :, ::1], float32[:, :, :, ::1], float64[::1],"
     " float64[::1], float64[::1], float64[:], float64[::1], float64, bool_, float32[:, :, :, ::1], int64, int64"),
    ("im2col", "col2im_kernel",
     "float32[:, :, ::1], int64, int64, int64, int64, int64, int64, float32[:, :, :, ::1], int64, int64"),
    ("winograd_4x4", "winograd4x4_output_grad_kernel", "float32[:, :, ::1], float32[:, :, :, ::1], int64, int64"),
    ("winograd_4x4", "winograd4x4_input_grad_kernel", "float32[:, :, :, ::1], float32[:, :, ::1], int64, int64"),
    ("conv_single_channel", "conv1ch_weight_grad_kernel",
     "float32[:, :, :, ::1], float32[:, :, ::1], float32[:, :, ::1], float32[::1], int64, int64"),
    ("adam", "adam_update_kernel",
     "float32[::1], float32[::1], float32[::1], float32[::1], float32[::1], bool_, float64, float64, float64,"
     " float64, float64, float64, float64, int64, int64"),
]

#: the kernels inference calls beyond a training step's: the int8 Linear layers of ``predict --speed fast``
#: (``tinynet.nn.quantize_int8``). ``tests/test_compile.py`` checks that a fast predictor calls exactly these.
INFERENCE: list[tuple[str, str, str]] = [
    ("int8_linear", "int8_linear_forward_kernel",
     "float32[:, ::1], int8[:, ::1], float32[::1], float32[::1], float32[:, ::1], int64, int64"),
]

#: what ``python -m tinynet.compile`` compiles
ALL = TRAINING_STEP + INFERENCE


def _dispatcher(module: str, name: str):
    """The compiled kernel (Numba's dispatcher) behind ``tinynet.kernels.<module>.<name>``."""
    from . import kernels

    return getattr(getattr(kernels, module), name).kernel


def compile_kernels(entries: list[tuple[str, str, str]], stop_at_cached: bool = False) -> None:
    """Compile (or load from the cache) each ``(module, kernel, argument types)`` of ``entries``, in order; with
    ``stop_at_cached``, stop at the first kernel already in the cache instead."""
    from numba.core.sigutils import normalize_signature

    for module, name, types in entries:
        if stop_at_cached and is_cached(module, name):
            return
        argument_types, _ = normalize_signature(f"({types})")
        # a tuple of types, as a call looks it up: the cache is keyed by the signature as given (a string misses)
        _dispatcher(module, name).compile(tuple(argument_types))


def is_cached(module: str, name: str) -> bool:
    """Whether the kernel has an entry in Numba's cache on disk (its index file exists). Reads Numba's cache
    object (``_cache``, not public API): where that fails, False."""
    try:
        return os.path.getsize(_dispatcher(module, name)._cache._cache_file._index_path) > 0
    except (AttributeError, OSError):
        return False


def _start(args: list[str], quiet: bool) -> subprocess.Popen:
    """This module's command (``main(args)``) in another process, importing this very tinynet.

    Numba keeps a kernel's cache in a folder named after the path its source file was imported by, so the other
    process must import tinynet from this process's folder, spelled the same way. Not with ``-m``: it puts the
    working directory first on the module path, and run from a checkout of another version the other process
    compiled that one, into a cache of its own; each process then compiled every kernel, and a cold first step
    took 9.1-11.0 s instead of 5.6-6.3 s. Not by a resolved path either: through a symbolic link it names another
    cache folder."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    program = (f"import sys; sys.path.insert(0, {here!r}); from tinynet.compile import main;"
               " sys.exit(main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", program, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.DEVNULL if quiet else None)


def start_background(report: bool = False) -> subprocess.Popen | None:
    """Start compiling ``TRAINING_STEP`` from its end, up to the first kernel found in the cache, in another process
    and return it (None when the kernels are off, or the list's last kernel is in the cache already: a warm cache).
    ``report``: that process names each kernel it compiles on this process's standard error."""
    if not numba_backend.enabled or is_cached(*TRAINING_STEP[-1][:2]):
        return None
    return _start(["--jobs", "1", "--background"] + (["--report"] if report else []), quiet=not report)


def main(argv: list[str] | None = None) -> int:
    cores = available_cores()
    parser = argparse.ArgumentParser(prog="python -m tinynet.compile", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=cores,
                        help=f"processes compiling at once (default: the cores, {cores})")
    parser.add_argument("--report", action="store_true",
                        help="name each kernel while it compiles (the default at a terminal)")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # "k/N": every N-th kernel from the k-th (a --jobs child)
    parser.add_argument("--background", action="store_true", help=argparse.SUPPRESS)  # start_background's process
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: expected a positive number of processes, got {args.jobs}")
    if args.report or sys.stderr.isatty():
        numba_backend.report_compilation(sys.stderr)
    if args.background:
        compile_kernels(TRAINING_STEP[::-1], stop_at_cached=True)
        return 0
    if args.part:
        part, parts = (int(v) for v in args.part.split("/"))
        compile_kernels(ALL[part::parts])
        return 0
    start = time.perf_counter()
    flags = ["--report"] if args.report else []
    children = [_start(["--part", f"{k}/{args.jobs}"] + flags, quiet=False) for k in range(1, args.jobs)]
    compile_kernels(ALL[0::args.jobs])
    failed = sum(child.wait() != 0 for child in children)
    print(f"tinynet: {len(ALL)} kernels compiled or found in the cache in {time.perf_counter() - start:.1f} s"
          f" ({args.jobs} process{'es' if args.jobs > 1 else ''})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
