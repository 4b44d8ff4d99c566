"""Training recipes: everything that defines a run (saved inside every checkpoint), and the loss and
optimizer a recipe asks for. ``RECIPES`` holds the two that ship (``reference``, ``default``; see
``keypoints.train``)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tinynet.nn import L1Loss, MSELoss, SmoothL1Loss, WingLoss
from tinynet.optim import SGD, Adam, AdamW

from .framing import checked_test_frames
from .models import HEADS


@dataclass
class Recipe:
    """Everything that defines a training run (saved inside every checkpoint)."""

    name: str = "custom"
    size: int = 96
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine (per batch, to min_lr)
    min_lr: float = 1e-5
    loss: str = "mse"  # mse | l1 | smoothl1 | wing
    smoothl1_beta: float = 0.02  # in normalised units (about a pixel at S=96)
    # Wing loss (Feng et al. 2018) in normalised units (one unit is 50 S / 224 pixels, 21.4 at S = 96): the
    # paper's width 10 and curvature 2 pixels of a 128-pixel face, scaled to a 96-pixel crop
    wing_width: float = 0.35
    wing_curvature: float = 0.07
    augment: dict = field(default_factory=dict)  # keyword arguments of crops.crop_sample
    val_fraction: float = 0.0  # 0: no split, keep the weights with the lowest training loss
    dropout: float = 0.4
    flip_test: bool = False  # average each test prediction with that of the mirrored face
    seed: int = 0
    head: str = "classic"  # classic | dropout-last (keypoints.models: where dropout sits in the head)
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated and kept (0: off)
    refine_passes: int = 0  # prediction re-frames the face from its own points this many times (keypoints.framing)
    upright: bool = False  # the refinement frame also turns the face so that its eyes are level
    # the last refinement pass also reads each face in these frames [(shift_x, shift_y, zoom, degrees), ...]
    # around the canonical one and averages the points (keypoints.framing.checked_test_frames; () = none)
    test_frames: tuple = ()
    # the close-up stages (keypoints.closeup): these regions ("eyes", "mouth") read up close by networks of their
    # own, each trained for closeup_epochs after the face network and read closeup_passes times; 68 iBUG points only
    closeup: tuple = ()
    closeup_epochs: int = 12
    closeup_passes: int = 2

    def __post_init__(self) -> None:
        if self.size not in (96, 224):
            raise ValueError(f"Recipe: size must be 96 or 224, got {self.size}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"Recipe: need epochs >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"Recipe: val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"Recipe: optimizer must be adam, adamw or sgd, got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"Recipe: schedule must be constant or cosine, got {self.schedule!r}")
        if self.loss not in ("mse", "l1", "smoothl1", "wing"):
            raise ValueError(f"Recipe: loss must be mse, l1, smoothl1 or wing, got {self.loss!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"Recipe: lr must be positive and finite, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"Recipe: weight_decay must be >= 0 and finite, got {self.weight_decay}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"Recipe: dropout must be in [0, 1), got {self.dropout}")
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr):
            raise ValueError(f"Recipe: min_lr must be >= 0 and finite, got {self.min_lr}")
        if self.head not in HEADS:
            raise ValueError(f"Recipe: head must be one of {HEADS}, got {self.head!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"Recipe: ema must be a decay in [0, 1), got {self.ema}")
        if not 0 <= self.refine_passes <= 4:
            raise ValueError(f"Recipe: refine_passes must be in 0..4, got {self.refine_passes}")
        from .closeup.stage import REGIONS

        self.closeup = tuple(self.closeup)  # a checkpoint's recipe holds a list
        if len(set(self.closeup)) != len(self.closeup) or not set(self.closeup) <= set(REGIONS):
            raise ValueError(f"Recipe: closeup must name distinct regions among {list(REGIONS)}, got {self.closeup!r}")
        if not 1 <= self.closeup_epochs <= 500:
            raise ValueError(f"Recipe: closeup_epochs must be in 1..500, got {self.closeup_epochs}")
        if not 0 <= self.closeup_passes <= 4:
            raise ValueError(f"Recipe: closeup_passes must be in 0..4, got {self.closeup_passes}")
        # a tuple of float 4-tuples whatever came in (a checkpoint's recipe holds lists), so recipes compare
        self.test_frames = checked_test_frames(self.test_frames)


DEFAULT_AUGMENT = dict(
    flip=True,
    degrees=15.0,
    scale=(0.9, 1.1),
    translate=0.04,
    brightness=0.2,
    contrast=0.2,
    # half the crops framed from the true points with a small error: what the refinement pass reads
    refine=0.5,
    frame_shift=0.02,
    frame_zoom=0.05,
)

# four frames shifted by 4 % of the crop (two standard deviations of the frame_shift training draws): the
# whole-pipeline test NME 6.10 -> 5.95 % at twice the network reads (README, "Results")
DEFAULT_TEST_FRAMES = ((-0.04, 0.0, 1.0, 0.0), (0.04, 0.0, 1.0, 0.0), (0.0, -0.04, 1.0, 0.0), (0.0, 0.04, 1.0, 0.0))

RECIPES: dict[str, Recipe] = {
    "reference": Recipe(name="reference", size=96, epochs=50, batch_size=64, lr=1e-3, optimizer="adam", loss="mse"),
    "default": Recipe(
        name="default",
        size=96,
        epochs=44,
        batch_size=64,
        lr=1e-3,
        optimizer="adamw",
        weight_decay=1e-4,
        schedule="cosine",
        min_lr=1e-5,
        loss="l1",
        augment=DEFAULT_AUGMENT,
        val_fraction=0.1,
        flip_test=True,
        head="dropout-last",
        refine_passes=2,
        test_frames=DEFAULT_TEST_FRAMES,
        closeup=("eyes", "mouth"),
    ),
}



def validation_split(n: int, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """``(training, validation)`` sorted indices into ``n`` faces: the ``recipe.val_fraction`` share held out,
    drawn with ``recipe.seed`` (the one split: training, and whatever later needs its held-out faces)."""
    order = np.random.default_rng([recipe.seed]).permutation(n)
    n_val = int(round(recipe.val_fraction * n))
    if recipe.val_fraction > 0 and n_val < 2:
        raise ValueError(f"val_fraction {recipe.val_fraction} of {n} faces leaves fewer than 2 for validation")
    return np.sort(order[n_val:]), np.sort(order[:n_val])

# ---------------------------------------------------------------------------------------------- parts
def build_loss(recipe: Recipe):
    if recipe.loss == "mse":
        return MSELoss()
    if recipe.loss == "l1":
        return L1Loss()
    if recipe.loss == "wing":
        return WingLoss(width=recipe.wing_width, curvature=recipe.wing_curvature)
    return SmoothL1Loss(beta=recipe.smoothl1_beta)


def build_optimizer(model, recipe: Recipe):
    """Weight decay applies to conv/linear weights only, never to biases or batch-norm parameters."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (decay if param.data.ndim > 1 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": recipe.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if recipe.optimizer == "adam":
        return Adam(groups, lr=recipe.lr)
    if recipe.optimizer == "adamw":
        return AdamW(groups, lr=recipe.lr)
    return SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)


def recipe_from_dict(values: dict) -> Recipe:
    values = dict(values)
    if isinstance(values.get("augment"), dict):
        values["augment"] = {k: tuple(v) if isinstance(v, list) else v for k, v in values["augment"].items()}
    return Recipe(**values)
