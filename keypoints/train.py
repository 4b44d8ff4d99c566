"""Training the keypoint network: recipes, the epoch loop, checkpoints, exact resume, the final report.

Two recipes ship:

- ``reference``: the classic PyTorch project's recipe, reproduced exactly: 96x96 input, train transform
  Rescale(107) + RandomCrop(96) + Normalize, MSE, Adam(lr 1e-3), batch 64, 50 epochs, no validation split,
  keeping the weights with the lowest training loss.
- ``default``: the best recipe we found within 30 minutes on 2 cores (see README.md for the figures).

Everything random derives from the recipe's seed: the validation split from ``(seed,)``, the batches and
augmentations of epoch ``e`` from ``(seed, e)`` (see ``keypoints.loader``), the dropout masks of epoch
``e`` from ``(seed, e, DROPOUT_STREAM)``. A run resumed from the checkpoint written after epoch ``e``
therefore continues bit for bit as the uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import tinynet
from tinynet.nn import L1Loss, MSELoss, SmoothL1Loss, WingLoss
from tinynet.optim import SGD, Adam, AdamW, CosineAnnealingLR
from tinynet.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from .data import FacialKeypointsDataset, ensure_data, prepare_faces
from .loader import DataLoader
from .framing import DATASET_FRAMING, PointFraming, measure_point_framing
from .models import HEADS, naimishnet
from .geometry import denormalize_keypoints

CHECKPOINT_FORMAT = "keypoints-checkpoint"
CHECKPOINT_VERSION = 1
DROPOUT_STREAM = 7  # a third seed word so dropout masks never share a stream with the data loader


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
    augment: dict = field(default_factory=dict)  # keyword arguments of transforms.crop_sample
    val_fraction: float = 0.0  # 0: no split, keep the weights with the lowest training loss
    dropout: float = 0.4
    flip_test: bool = False  # average each test prediction with that of the mirrored face
    seed: int = 0
    head: str = "classic"  # classic | dropout-last (keypoints.models: where dropout sits in the head)
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated and kept (0: off)
    refine_passes: int = 0  # prediction re-frames the face from its own points this many times (keypoints.framing)
    upright: bool = False  # the refinement frame also turns the face so that its eyes are level

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
    ),
}


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


def checkpoint_meta(recipe: Recipe, framing: PointFraming = DATASET_FRAMING) -> dict:
    """What a checkpoint needs to be used on its own: architecture, input size, keypoint normalisation,
    and the canonical point framing with the number of refinement passes (``keypoints.framing``)."""
    return {
        "arch": "naimishnet",
        "input_size": recipe.size,
        "dropout": recipe.dropout,
        "head": recipe.head,
        "refine_passes": recipe.refine_passes,
        "framing": framing.to_dict(),
        "rescale": int(round(recipe.size * 250 / 224)),
        "keypoint_mean": 100.0 * recipe.size / 224.0,
        "keypoint_std": 50.0 * recipe.size / 224.0,
        "flip_test": recipe.flip_test,
        "recipe": dataclasses.asdict(recipe),
        "tinynet_version": tinynet.__version__,
    }


def snapshot(model) -> dict[str, np.ndarray]:
    return {key: value.copy() for key, value in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------- loops
def run_epoch(
    model, loader: DataLoader, criterion, optimizer, scheduler, progress: Callable | None = None, averaged=None
) -> float:
    """One pass of training over ``loader``; returns the mean loss. Raises FloatingPointError on NaN.

    ``averaged`` (an ``AveragedModel``) takes in the weights after every step."""
    model.train()
    total, count = 0.0, 0
    for step, (x, y) in enumerate(loader):
        out = model(x)
        try:
            loss = criterion(out, y)
        except ValueError as error:  # the loss refuses NaN/inf: the run diverged
            raise FloatingPointError(f"the network output became NaN or infinite at batch {step}: {error}") from None
        model.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if averaged is not None:
            averaged.update_parameters(model)
        total += float(loss) * len(x)
        count += len(x)
        if progress is not None:
            progress(len(x), float(loss))
    return total / max(count, 1)


def evaluate_loader(model, loader: DataLoader, criterion) -> tuple[float, float]:
    """Mean loss and mean NME (crop coordinates, a fraction) over ``loader``, in eval mode.

    Raises FloatingPointError on NaN (a run that diverged in the last batch of an epoch shows it here first).
    """
    from .metrics import nme_per_face

    model.eval()
    total, nme_sum, count = 0.0, 0.0, 0
    with tinynet.no_grad():
        for x, y in loader:
            out = model(x)
            try:
                total += float(criterion(out, y)) * len(x)
            except ValueError as error:  # the loss refuses NaN/inf, as in run_epoch
                raise FloatingPointError(
                    f"the network output became NaN or infinite on the validation set: {error}"
                ) from None
            size = x.shape[-1]
            pred = denormalize_keypoints(out.reshape(-1, 68, 2), size)
            true = denormalize_keypoints(y.reshape(-1, 68, 2), size)
            nme_sum += float(nme_per_face(pred, true).sum())
            count += len(x)
    return total / max(count, 1), nme_sum / max(count, 1)


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    history: list = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = -1
    best_model: dict | None = None


def save_checkpoint(
    path: Path,
    recipe: Recipe,
    model,
    optimizer,
    scheduler,
    state: TrainState,
    framing: PointFraming = DATASET_FRAMING,
    averaged=None,
) -> None:
    """The full training state (atomic write: an interrupted save keeps the previous file)."""
    tinynet.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "meta": checkpoint_meta(recipe, framing),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "epoch": state.epoch,
            "history": state.history,
            "best_loss": state.best_loss if math.isfinite(state.best_loss) else None,
            "best_epoch": state.best_epoch,
            "best_model": state.best_model,
            "averaged": None if averaged is None else averaged.state_dict(),
        },
        path,
    )


def save_weights(
    path: Path, recipe: Recipe, weights: dict, epoch: int, loss: float, framing: PointFraming = DATASET_FRAMING
) -> None:
    """A compact checkpoint for inference: metadata + weights."""
    tinynet.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "meta": checkpoint_meta(recipe, framing),
            "model": weights,
            "epoch": epoch,
            "selection_loss": loss,
        },
        path,
    )


def load_training_checkpoint(path: str | Path) -> dict:
    """A ``last.npz``, validated by ``keypoints.checkpoint.read_checkpoint`` (meta, model entries)."""
    from .checkpoint import read_checkpoint

    checkpoint, _ = read_checkpoint(path, training=True)
    return checkpoint


def recipe_from_dict(values: dict) -> Recipe:
    values = dict(values)
    if isinstance(values.get("augment"), dict):
        values["augment"] = {k: tuple(v) if isinstance(v, list) else v for k, v in values["augment"].items()}
    return Recipe(**values)


def train(
    recipe: Recipe,
    data: str | Path | None = None,
    out: str | Path = "runs/keypoints",
    limit: int | None = None,
    resume: str | Path | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
    overwrite: bool = False,
) -> dict:
    """Train, keep the best weights, evaluate on the test set and write the report into ``out``.

    A folder holding an earlier run is refused unless ``overwrite`` or ``resume`` is its own ``last.npz``
    (see :func:`keypoints.files.claim_run_folder`). Returns the metrics dict (also in ``out/metrics.json``).
    """
    from tqdm import tqdm

    from .evaluate import evaluate_checkpoint
    from .files import claim_run_folder
    from .report import write_report

    out = Path(out)
    for stale in claim_run_folder(out, resume, overwrite):
        log(f"removed {stale}, left behind by an interrupted run")
    state = TrainState()
    checkpoint = None
    if resume is not None:
        checkpoint = load_training_checkpoint(resume)
        recipe = recipe_from_dict(checkpoint["meta"]["recipe"]) if recipe is None else recipe
        saved = recipe_from_dict(checkpoint["meta"]["recipe"])
        if dataclasses.replace(saved, epochs=recipe.epochs) != recipe:
            raise ValueError(
                f"--resume {resume}: the checkpoint was trained with a different recipe;"
                " resume with the same options (only --epochs may change)"
            )

    data_dir = ensure_data(data)
    started = time.perf_counter()
    train_set = FacialKeypointsDataset(data_dir, "training")
    indices = np.arange(len(train_set)) if limit is None else np.arange(min(limit, len(train_set)))
    faces = prepare_faces(train_set, recipe.size, indices=indices)
    split_rng = np.random.default_rng([recipe.seed])
    order = split_rng.permutation(len(faces))
    n_val = int(round(recipe.val_fraction * len(faces)))
    if recipe.val_fraction > 0 and n_val < 2:
        raise ValueError(f"val_fraction {recipe.val_fraction} of {len(faces)} faces leaves fewer than 2 for validation")
    train_faces = faces.subset(np.sort(order[n_val:]))
    val_faces = faces.subset(np.sort(order[:n_val])) if n_val else None
    framing = dataclasses.replace(
        measure_point_framing(train_faces.images, train_faces.keypoints, recipe.size), upright=recipe.upright
    )
    log(
        f"data: {data_dir} | {len(train_faces)} training faces, {n_val} validation faces"
        f" | prepared in {time.perf_counter() - started:.1f} s"
    )

    model = naimishnet(recipe.size, dropout=recipe.dropout, seed=recipe.seed, head=recipe.head).skip_input_grad()
    criterion = build_loss(recipe)
    optimizer = build_optimizer(model, recipe)
    train_loader = DataLoader(
        train_faces,
        recipe.batch_size,
        shuffle=True,
        drop_last=True,
        seed=recipe.seed,
        augment=recipe.augment or None,
        framing=framing,
    )
    if len(train_loader) == 0:
        raise ValueError(f"{len(train_faces)} training faces make no full batch of {recipe.batch_size}")
    val_loader = DataLoader(val_faces, recipe.batch_size, center=True) if val_faces is not None else None
    scheduler = None
    if recipe.schedule == "cosine":
        scheduler = CosineAnnealingLR(optimizer, T_max=recipe.epochs * len(train_loader), eta_min=recipe.min_lr)
    # with --ema the moving average (its buffers averaged too, PyTorch's use_buffers) is what is validated and
    # kept; the kept weights get their own batch-norm statistics at the end (update_bn)
    averaged = AveragedModel(model, get_ema_multi_avg_fn(recipe.ema), use_buffers=True) if recipe.ema > 0 else None
    kept = model if averaged is None else averaged.module

    last_path, best_path = out / "last.npz", out / "best.npz"
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if averaged is not None:
            averaged.load_state_dict(checkpoint["averaged"])
        if scheduler is not None:
            # --epochs may have grown: the cosine must reach min_lr at the end of *this* run, not rise again
            # after the old end (T_max is otherwise restored from the checkpoint). Unchanged epochs: a no-op.
            scheduler.load_state_dict(dict(checkpoint["scheduler"], T_max=recipe.epochs * len(train_loader)))
        state = TrainState(
            epoch=int(checkpoint["epoch"]),
            history=list(checkpoint["history"]),
            best_loss=math.inf if checkpoint["best_loss"] is None else float(checkpoint["best_loss"]),
            best_epoch=int(checkpoint["best_epoch"]),
            best_model=checkpoint["best_model"],
        )
        log(f"resumed from {resume} after epoch {state.epoch}")
        if not (last_path.exists() and last_path.samefile(resume)):
            # resumed into another --out: make it self-contained, so the final evaluation finds best.npz
            # (even if no later epoch improves) and the messages below name files that exist
            save_weights(best_path, recipe, state.best_model, state.best_epoch, state.best_loss, framing)
            save_checkpoint(last_path, recipe, model, optimizer, scheduler, state, framing, averaged)

    selection = "validation loss" if val_loader is not None else "training loss"
    log(f"recipe {recipe.name}: {json.dumps(dataclasses.asdict(recipe))}")
    log(f"model: naimishnet({recipe.size}), {model.num_parameters():,} parameters; keeping the lowest {selection}")
    interrupted = False
    train_started = time.perf_counter()
    for epoch in range(state.epoch, recipe.epochs):
        train_loader.set_epoch(epoch)
        model.set_dropout_rng(np.random.default_rng([recipe.seed, epoch, DROPOUT_STREAM]))
        bar = tqdm(
            total=len(train_loader) * recipe.batch_size,
            desc=f"epoch {epoch + 1}/{recipe.epochs}",
            unit="img",
            disable=not show_progress,
            leave=False,
            dynamic_ncols=True,
        )

        def progress(n: int, loss: float) -> None:
            bar.update(n)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

        epoch_started = time.perf_counter()
        try:
            train_loss = run_epoch(model, train_loader, criterion, optimizer, scheduler, progress, averaged)
            seconds = time.perf_counter() - epoch_started
            validation = evaluate_loader(kept, val_loader, criterion) if val_loader is not None else None
        except KeyboardInterrupt:
            bar.close()
            interrupted = True
            log(
                f"\ninterrupted during epoch {epoch + 1}; {last_path} holds the state after epoch {state.epoch}:"
                f" continue with --resume {last_path}"
            )
            break
        except FloatingPointError as error:
            bar.close()
            saved = (
                f"The last good state (after epoch {state.epoch}) is in {last_path}"
                if state.epoch
                else "No epoch finished, so nothing was saved"
            )
            raise SystemExit(f"training stopped in epoch {epoch + 1}: {error}. {saved}; try a lower --lr.") from None
        bar.close()
        record = {"epoch": epoch + 1, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"], "seconds": seconds}
        if validation is not None:
            record["val_loss"], val_nme = validation
            record["val_nme_percent"] = 100 * val_nme
        selection_loss = record.get("val_loss", train_loss)
        improved = selection_loss < state.best_loss
        if improved:
            state.best_loss, state.best_epoch, state.best_model = selection_loss, epoch + 1, snapshot(kept)
            save_weights(best_path, recipe, state.best_model, epoch + 1, selection_loss, framing)
        state.epoch = epoch + 1
        state.history.append(record)
        save_checkpoint(last_path, recipe, model, optimizer, scheduler, state, framing, averaged)
        val_text = f" | val loss {record['val_loss']:.4f}, val NME {record['val_nme_percent']:.2f} %" if "val_loss" in record else ""
        log(
            f"epoch {epoch + 1:3d}/{recipe.epochs} | train loss {train_loss:.4f}{val_text}"
            f" | {len(train_loader) * recipe.batch_size / seconds:.0f} img/s, {seconds:.1f} s{' *' if improved else ''}"
        )

    if state.best_model is None:
        raise SystemExit("no epoch finished, nothing to evaluate")
    if averaged is not None and not interrupted:
        # the averaged weights' own batch-norm statistics: one pass of augmented crops no epoch has used
        best = naimishnet(recipe.size, dropout=recipe.dropout, seed=recipe.seed, head=recipe.head)
        best.load_state_dict(state.best_model)
        train_loader.set_epoch(recipe.epochs)
        update_bn(train_loader, best)
        save_weights(best_path, recipe, snapshot(best), state.best_epoch, state.best_loss, framing)
        log(f"recomputed the batch-norm statistics of the averaged weights of epoch {state.best_epoch}")
    train_seconds = time.perf_counter() - train_started
    if recipe.flip_test and val_faces is not None and not interrupted:
        from .wild.confidence import calibrate_checkpoint  # the per-face confidence, from the held-out faces

        found = calibrate_checkpoint(best_path, train_set, indices[np.sort(order[:n_val])])
        log(f"confidence calibrated on the {n_val} validation faces: (a, b) = {found.calibration}" if found.calibration
            else f"no confidence calibration: {found.reason}")
    metrics = evaluate_checkpoint(best_path, data_dir, flip=recipe.flip_test, limit=limit)
    metrics.update(
        recipe=recipe.name,
        best_epoch=state.best_epoch,
        epochs_completed=state.epoch,
        selection=selection,
        train_seconds_this_run=round(train_seconds, 1),
        interrupted=interrupted,
    )
    write_report(out, state.history, metrics, best_path, data_dir, limit=limit)
    return metrics
