"""NaimishNet-style keypoint regressors (Agarwal et al., "Facial Key Points Detection using Deep
Convolutional Neural Network - NaimishNet", 2017), with batch norm as in the classic PyTorch project.

Each conv block is ``Conv2d (valid, stride 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2, 2)``, the last three
run as one fused ``BatchNormReLUMaxPool2d`` (``tinynet.nn.fuse``); four blocks with 32, 64, 128 and 256
channels, then three fully connected layers::

    input (N, 1, S, S)
    block(1 -> 32, k1) block(32 -> 64, k2) block(64 -> 128, k3) block(128 -> 256, k4)
    flatten -> Linear(F, 1000) -> BN1d -> ReLU -> Dropout(0.4)
            -> Linear(1000, 1000) -> BN1d -> ReLU -> Dropout(0.4)
            -> Linear(1000, 2K)                       K (x, y) pairs, normalised coordinates (K = 68 by default)

That is the ``"classic"`` head. Its first Dropout feeds a BatchNorm1d, and that costs accuracy: in training
the batch norm's running variance is collected from inputs that carry dropout's extra variance (the kept
units are scaled by ``1 / (1 - p)``), while in eval mode dropout is the identity, so the second batch norm
divides by a variance that is too large and the head's output shrinks towards its mean (Li et al.,
"Understanding the Disharmony between Dropout and Batch Normalization by Variance Shift", CVPR 2019).
Measured on the shipped classic model: eval-mode faces come out 3.2 % too small (median spread ratio 0.968);
re-collecting only the BatchNorm1d statistics on the same augmented crops with dropout off gives 0.989 and
test NME 8.25 -> 7.93 % (single pass), with dropout on again 0.968. The ``"dropout-last"`` head therefore
keeps a single Dropout after the last batch norm, where no running statistic sees it::

    flatten -> Linear(F, 1000) -> BN1d -> ReLU -> Linear(1000, 1000) -> BN1d -> ReLU -> Dropout(p)
            -> Linear(1000, 2K)

=====  ===============  ==================  ===========
S      kernels k1..k4   feature map after    F
=====  ===============  ==================  ===========
96     4, 3, 2, 1       256 x 5 x 5          6,400
224    5, 4, 3, 2       256 x 12 x 12        36,864
=====  ===============  ==================  ===========

State-dict keys (``features.0.weight``, ``regressor.1.running_mean``, ...) are those of the same
model written with ``torch.nn.Sequential`` attributes ``features`` and ``regressor``.
"""
from __future__ import annotations

import numpy as np

from tinynet.nn import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
    fuse,
    use_winograd,
)

KERNELS = {96: (4, 3, 2, 1), 224: (5, 4, 3, 2)}
CHANNELS = (32, 64, 128, 256)
NUM_POINTS = 68  # the iBUG layout of the data set; a model trained on other annotations has its own K
HEADS = ("classic", "dropout-last")


def feature_size(input_size: int, kernels: tuple[int, ...]) -> int:
    """Side of the last feature map: each block is a valid conv (``s - k + 1``) then a 2x2 pool (``// 2``)."""
    side = input_size
    for k in kernels:
        side = (side - k + 1) // 2
    return side


class NaimishNet(Module):
    """The 4-conv / 3-FC keypoint regressor. Input ``(N, 1, S, S)`` in [0, 1]; output ``(N, 2K)``.

    Parameters
    ----------
    input_size : 96 or 224 (the side S of the square grayscale crop)
    dropout : drop probability of the two Dropout layers
    rng : generator for the initial weights and for the dropout masks (``set_dropout_rng`` replaces the
        latter, e.g. once per epoch for exactly reproducible, resumable training)
    hidden : width of the two hidden fully connected layers
    head : ``"classic"`` (a Dropout after each hidden layer) or ``"dropout-last"`` (one Dropout, after the
        last batch norm: see the module docstring)
    fused : run each ``BatchNorm2d -> ReLU -> MaxPool2d(2, 2)`` as one ``BatchNormReLUMaxPool2d`` (the
        default). False keeps the three layers: same state dict, same results, more memory traffic; a
        model whose batch-norm and ReLU outputs can be looked at one by one (``keypoints.visualize``).
    winograd : run the 3x3 convolution (the second one of NaimishNet-96, the third of -224) as a
        ``WinogradConv2d`` (``tinynet.nn.use_winograd``): same state dict, results equal up to float32 rounding,
        4 times fewer multiplications with ``winograd_tile=4`` (2.25 with 2). What ``keypoints.train`` trains with
        (its step is that much faster: see ``benchmarks/README.md``); off by default, because its transforms are
        Numba kernels and the photo commands run small batches on plain NumPy as often as on Numba.
    winograd_tile : its output tile, 4 (F(4x4, 3x3), the default: the faster on these 44 x 44 and larger maps) or 2
    num_points : K, the number of keypoints (the output is their ``(x, y)`` pairs, ``2K`` values)
    """

    def __init__(
        self,
        input_size: int = 96,
        dropout: float = 0.4,
        rng: np.random.Generator | None = None,
        hidden: int = 1000,
        dtype=np.float32,
        head: str = "classic",
        fused: bool = True,
        num_points: int = NUM_POINTS,
        winograd: bool = False,
        winograd_tile: int = 4,
    ):
        super().__init__()
        if input_size not in KERNELS:
            raise ValueError(f"NaimishNet: input_size must be one of {sorted(KERNELS)}, got {input_size}")
        if head not in HEADS:
            raise ValueError(f"NaimishNet: head must be one of {HEADS}, got {head!r}")
        if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)) or num_points < 1:
            raise ValueError(f"NaimishNet: num_points must be a positive integer, got {num_points!r}")
        self.num_points = int(num_points)
        rng = np.random.default_rng() if rng is None else rng
        self.input_size = int(input_size)
        self.kernels = KERNELS[input_size]
        layers: list[Module] = []
        in_channels = 1
        for out_channels, k in zip(CHANNELS, self.kernels):
            layers += [
                Conv2d(in_channels, out_channels, k, rng=rng, dtype=dtype),
                BatchNorm2d(out_channels, dtype=dtype),
                ReLU(),
                MaxPool2d(2, 2),
            ]
            in_channels = out_channels
        # fused, each BatchNorm2d -> ReLU -> MaxPool2d(2, 2) becomes a BatchNormReLUMaxPool2d and two
        # Identity (same results and state-dict keys, a fraction of the memory traffic: tinynet.nn.fused)
        self.features = fuse(Sequential(*layers)) if fused else Sequential(*layers)
        if winograd:
            use_winograd(self.features, winograd_tile)
        self.flatten = Flatten()
        side = feature_size(input_size, self.kernels)
        self.num_flat = CHANNELS[-1] * side * side
        self.head = head
        first_dropout = [Dropout(dropout, rng=rng)] if head == "classic" else []
        self.regressor = Sequential(
            Linear(self.num_flat, hidden, rng=rng, dtype=dtype),
            BatchNorm1d(hidden, dtype=dtype),
            ReLU(),
            *first_dropout,
            Linear(hidden, hidden, rng=rng, dtype=dtype),
            BatchNorm1d(hidden, dtype=dtype),
            ReLU(),
            Dropout(dropout, rng=rng),
            Linear(hidden, 2 * self.num_points, rng=rng, dtype=dtype),
        )

    def extra_repr(self) -> str:
        points = "" if self.num_points == NUM_POINTS else f", num_points={self.num_points}"
        return f"input_size={self.input_size}, head={self.head!r}{points}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, 1, S, S) -> (N, 2K)``."""
        return self.regressor(self.flatten(self.features(x)))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """``(N, 2K) -> (N, 1, S, S)``, accumulating every parameter's gradient."""
        return self.features.backward(self.flatten.backward(self.regressor.backward(dout)))

    def skip_input_grad(self, skip: bool = True) -> "NaimishNet":
        """Do not compute the gradient with respect to the images (training never needs it):
        ``backward`` then returns None and saves the first conv's col2im."""
        self.features[0].input_grad = not skip
        return self

    def set_dropout_rng(self, rng: np.random.Generator) -> None:
        """Draw every dropout mask from ``rng`` from now on."""
        for module in self.modules():
            if isinstance(module, Dropout):
                module.rng = rng


def naimishnet(
    input_size: int = 96, dropout: float = 0.4, seed: int | None = 0, dtype=np.float32, head: str = "classic",
    num_points: int = NUM_POINTS, winograd: bool = False, winograd_tile: int = 4,
) -> NaimishNet:
    """A freshly initialised ``NaimishNet`` (PyTorch's default init), seeded for reproducibility."""
    return NaimishNet(input_size, dropout=dropout, rng=np.random.default_rng(seed), dtype=dtype, head=head,
                      num_points=num_points, winograd=winograd, winograd_tile=winograd_tile)


class CloseupNet(Module):
    """A close-up stage's regressor (``keypoints.closeup``): one crop of a face region in, that region's points out.

    Input ``(N, 1, S, S)`` in [0, 1], S a multiple of 8; output ``(N, 2P)``: P points (6 for an eye, 20 for the
    mouth), normalised as ``(u - (S - 1) / 2) / (S / 2)`` in crop pixels ``u``. Three blocks ``Conv2d 3x3
    (padding 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2, 2)`` with ``width``, ``2 width`` and ``4 width`` channels
    (fused as NaimishNet's), then ``Linear(4 width (S/8)^2, hidden) -> ReLU -> Linear(hidden, 2P)``. State-dict
    keys as NaimishNet's: ``features.*``, ``regressor.*``.
    """

    def __init__(self, input_size: int = 48, width: int = 16, num_points: int = 6, hidden: int = 128,
                 rng: np.random.Generator | None = None, dtype=np.float32):
        super().__init__()
        if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < 16 \
                or input_size % 8:
            raise ValueError(f"CloseupNet: input_size must be a multiple of 8 of at least 16, got {input_size!r}")
        rng = np.random.default_rng() if rng is None else rng
        self.input_size, self.width, self.num_points = int(input_size), int(width), int(num_points)
        layers: list[Module] = []
        in_channels = 1
        for out_channels in (width, 2 * width, 4 * width):
            layers += [
                Conv2d(in_channels, out_channels, 3, padding=1, rng=rng, dtype=dtype),
                BatchNorm2d(out_channels, dtype=dtype),
                ReLU(),
                MaxPool2d(2, 2),
            ]
            in_channels = out_channels
        self.features = fuse(Sequential(*layers))
        self.flatten = Flatten()
        side = self.input_size // 8
        self.regressor = Sequential(
            Linear(4 * width * side * side, hidden, rng=rng, dtype=dtype),
            ReLU(),
            Linear(hidden, 2 * self.num_points, rng=rng, dtype=dtype),
        )
        self.features[0].input_grad = False  # nothing reads the gradient with respect to the crops

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, width={self.width}, num_points={self.num_points}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, 1, S, S) -> (N, 2P)``."""
        return self.regressor(self.flatten(self.features(x)))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """``(N, 2P) -> None`` (the input gradient is skipped), accumulating every parameter's gradient."""
        return self.features.backward(self.flatten.backward(self.regressor.backward(dout)))
