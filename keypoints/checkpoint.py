"""The keypoints checkpoint: one model spec, written and read here only.

A checkpoint (``best.npz`` for inference, ``last.npz`` with the training state; written by
:func:`save_weights` and :func:`save_checkpoint` during training) is a ``tinynet.save`` archive::

    {"format": "keypoints-checkpoint", "version": 1, "meta": {...}, "model": {state dict}, ...}

:func:`read_checkpoint` reads it in three steps, so that a hostile or broken file is refused with a
message naming the field before it costs memory or time (``tinynet.load(path, check_structure=...)``: steps 1-3
on one opening of the file, then the arrays):

1. the structure (:func:`tinynet.serialization.load_structure`'s view): the nesting, and each array's shape and dtype
   from its ``.npy`` header only (no array is read or decompressed; entries the header does not name are refused);
2. :func:`keypoints.checkpoint_meta.validate_meta`: every metadata field against its allowed values (a
   ``rescale`` of 20000 would make predicting one small crop allocate gigabytes);
3. the model's state-dict entries against the network the metadata describes (names, shapes, dtypes; and the
   close-up stages' entries ``closeup`` against their networks), and only then the arrays.

The model spec (``meta``, :func:`checkpoint_meta`) says everything a reader needs: architecture, input
size, preprocessing (``rescale``), point framing, refinement passes, flip averaging, the number of points
``K`` and how they swap sides in a mirror (``flip_permutation``), the close-up stages, the recipe.
:func:`build_model` builds the network from it; training, evaluation, the predictor and the command
lines all go through :func:`read_checkpoint`.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

import tinynet
from tinynet.serialization import ArrayInfo

from .checkpoint_meta import DEFAULTS, CheckpointError, flip_permutation_of, is_int, is_real, validate_meta
from .crops import rescale_size
from .framing import DATASET_FRAMING, PointFraming
from .geometry import NUM_KEYPOINTS
from .recipes import recipe_from_dict

__all__ = ["DEFAULTS", "CheckpointError", "TrainState", "build_model", "checkpoint_meta", "flip_permutation_of",
           "read_checkpoint", "save_checkpoint", "save_weights", "update_meta", "validate_meta"]

FORMAT = "keypoints-checkpoint"
VERSION = 1
def check_model_entries(where: str, saved: Any, expected: dict[str, np.ndarray]) -> None:
    """``saved`` (from ``load_structure``: names -> :class:`ArrayInfo`) must hold exactly the entries of
    ``expected`` (a model's state dict) with their shapes and kinds of dtype: checked before any array is read."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where}: 'model' must be a dict of arrays (a state dict), got {type(saved).__name__}")
    unexpected = sorted(set(saved) - set(expected))
    missing = sorted(set(expected) - set(saved))
    if unexpected or missing:
        raise CheckpointError(
            f"{where}: 'model' does not match the network its meta describes:"
            + (f" unexpected entries {unexpected[:5]}" if unexpected else "")
            + (f" missing entries {missing[:5]}" if missing else "")
        )
    for name, value in expected.items():
        info = saved[name]
        if not isinstance(info, ArrayInfo) or info.scalar:
            raise CheckpointError(f"{where}: model entry {name!r} must be an array, got {type(info).__name__}")
        # the kind, not the width: load_state_dict casts (the shipped weights are stored as float16)
        if info.shape != value.shape or info.dtype.kind != value.dtype.kind:
            kind = "float" if value.dtype.kind == "f" else "integer"
            raise CheckpointError(
                f"{where}: model entry {name!r} is {info.dtype}{list(info.shape)}, the network expects"
                f" {kind} values of shape {list(value.shape)}"
            )


def check_training_recipe(where: str, meta: dict, structure: dict, state_dict: dict) -> None:
    """A ``last.npz``'s ``meta.recipe`` (what resuming rebuilds the network from) must be a recipe for the
    network the checkpoint holds (the same input size and head as ``meta``), and its training state the
    one that recipe writes (:func:`check_training_state`)."""
    if not isinstance(meta.get("recipe"), dict):
        raise CheckpointError(f"{where}: meta.recipe is missing or not a dict of fields (training writes it)")
    try:
        recipe = recipe_from_dict(meta["recipe"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: meta.recipe: {exc}") from None
    if (recipe.size, recipe.head) != (meta["input_size"], meta["head"]):
        raise CheckpointError(
            f"{where}: meta.recipe asks for naimishnet({recipe.size}) with the {recipe.head!r} head, but the saved"
            f" network is naimishnet({meta['input_size']}) with the {meta['head']!r} head"
        )
    check_training_state(where, structure, recipe, state_dict)


def check_training_state(where: str, structure: dict, recipe, state_dict: dict) -> None:
    """The training-state entries of a ``last.npz`` (from ``load_structure``, before any array is read)
    must be what :func:`save_checkpoint` writes for ``recipe``: a scheduler state exactly when
    the recipe has a schedule, an averaged model exactly when it averages (``ema``), counters that fit
    together, and the best weights of the same network. (The optimizer's state is checked by its own
    ``load_state_dict``.)"""
    def refuse(field: str, expected: str, got: Any) -> None:
        shown = type(got).__name__ if isinstance(got, (dict, list, ArrayInfo)) else repr(got)
        raise CheckpointError(f"{where}: {field} must be {expected}, got {shown}")

    for field, wanted, expected in (("scheduler", recipe.schedule == "cosine", f"the state of its {recipe.schedule!r} schedule"),
                                    ("averaged", recipe.ema > 0, "the averaged model of its ema")):
        value = structure.get(field)
        if wanted != isinstance(value, dict) or (not wanted and value is not None):
            refuse(field, f"{expected} (a dict of fields)" if wanted else f"null for a recipe without {field}", value)
    if not isinstance(structure.get("optimizer"), dict):
        refuse("optimizer", "the optimizer's state (a dict of fields)", structure.get("optimizer"))
    epoch, best_epoch, history = structure.get("epoch"), structure.get("best_epoch"), structure.get("history")
    if not (is_int(epoch) and epoch >= 0):
        refuse("epoch", "the number of finished epochs (an integer >= 0)", epoch)
    if not (is_int(best_epoch) and 0 <= best_epoch <= epoch):
        refuse("best_epoch", f"an integer in [0, epoch = {epoch}]", best_epoch)
    if not (isinstance(history, list) and len(history) == epoch and all(isinstance(h, dict) for h in history)):
        refuse("history", f"a list of {epoch} epoch records (dicts)", history)
    best_loss = structure.get("best_loss")
    if not (best_loss is None or is_real(best_loss)):
        refuse("best_loss", "null or a finite number", best_loss)
    if structure.get("best_model") is None:
        if epoch > 0:
            refuse("best_model", f"the kept weights after {epoch} finished epoch(s)", None)
    else:
        # the recipe's network is the meta's (checked above), whose ``state_dict`` the caller built
        check_model_entries(f"{where}: best_model", structure["best_model"], state_dict)


def all_finite(values: np.ndarray) -> bool:
    """Whether a float array holds no NaN or infinity. A float16 array (the shipped weights) is checked by its bits:
    NumPy's ``isfinite`` converts float16 one value at a time (the shipped 8.6 million weights: 24 ms, 6 ms by the
    bits). A float16 is infinite or NaN exactly when its five exponent bits are all ones (0x7C00)."""
    if values.dtype == np.float16:
        return values.size == 0 or int((values.view(np.uint16) & 0x7FFF).max()) < 0x7C00
    return bool(np.isfinite(values).all())


def build_model(meta: dict):
    """The untrained network ``meta`` (validated) describes."""
    from .models import NaimishNet

    return NaimishNet(meta["input_size"], dropout=meta["dropout"], rng=np.random.default_rng(0), head=meta["head"],
                      num_points=meta["num_points"])


def read_checkpoint(path: str | os.PathLike, training: bool = False) -> tuple[dict, Any]:
    """``(checkpoint, model)``: the checkpoint (``meta`` validated, defaults filled) and its network with
    the weights loaded. ``training=True`` also requires the training state (``last.npz``). With close-up stages
    (``meta.closeup``), ``checkpoint["closeup_models"]`` maps each region's name to its ``CloseupNet``, loaded.

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Not a keypoints checkpoint, or a field, an entry or an array that does not fit; names the field.
    """
    where = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{where}: no such checkpoint file")
    built: dict = {}
    try:
        # steps 1-3 of the module docstring run on the file's structure before any array is read (one opening)
        checkpoint = tinynet.load(path, check_structure=lambda structure: built.update(
            _checked_networks(where, structure, training)))
    except CheckpointError:
        raise
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    meta, model, closeup = built["meta"], built["model"], built["closeup"]
    groups = [("model", checkpoint["model"])] + [(f"closeup {name}", checkpoint["closeup"][name]) for name in closeup]
    for group, entries in groups:
        for name, value in entries.items():
            if value.dtype.kind == "f" and not all_finite(value):
                raise CheckpointError(f"{where}: {group} entry {name!r} holds NaN or infinite values (a run that diverged?)")
    model.load_state_dict(checkpoint["model"])
    for name, net in closeup.items():
        net.load_state_dict(checkpoint["closeup"][name])
    checkpoint["closeup_models"] = {name: net.eval() for name, net in closeup.items()}
    checkpoint["meta"] = meta
    return checkpoint, model


def _checked_networks(where: str, structure: dict, training: bool) -> dict:
    """``{"meta", "model", "closeup"}``: the validated meta and the networks it describes (weights not loaded),
    once ``structure`` (``tinynet.serialization.load_structure``'s view of the file) is a keypoints checkpoint whose
    entries fit them; else :class:`CheckpointError`."""
    if structure.get("format") != FORMAT or "model" not in structure or "meta" not in structure:
        raise CheckpointError(f"{where}: not a keypoints checkpoint (no format {FORMAT!r} with 'meta' and 'model')")
    if structure.get("version") != VERSION:
        raise CheckpointError(f"{where}: checkpoint version {structure.get('version')!r}; this version reads {VERSION}")
    if training and "optimizer" not in structure:
        raise CheckpointError(
            f"{where}: not a keypoints training checkpoint (use the last.npz that training writes)"
        )
    meta = validate_meta(structure["meta"], where)
    with tinynet.init.skip_random_init():  # every weight is loaded after (strict): drawing them would be wasted
        model = build_model(meta)
    if training:
        check_training_recipe(where, meta, structure, model.state_dict())
    check_model_entries(where, structure["model"], model.state_dict())
    closeup = {}
    if meta["closeup"] is not None:
        from .closeup.stage import REGIONS, CloseupStage, build_closeup_model

        saved = structure.get("closeup")
        if not isinstance(saved, dict) or set(saved) != set(meta["closeup"]):
            raise CheckpointError(f"{where}: meta.closeup names {sorted(meta['closeup'])} but the file's 'closeup'"
                                  f" weights are {sorted(saved) if isinstance(saved, dict) else saved!r}")
        with tinynet.init.skip_random_init():
            closeup = {name: build_closeup_model(REGIONS[name], CloseupStage.from_dict(stage))
                       for name, stage in meta["closeup"].items()}
        for name, net in closeup.items():
            check_model_entries(f"{where}: closeup {name}", saved[name], net.state_dict())
    return {"meta": meta, "model": model, "closeup": closeup}


def update_meta(path: str | os.PathLike, entries: dict | None = None, **fields: Any) -> dict:
    """Set metadata ``fields`` (and top-level ``entries``, such as the close-up stages' ``closeup`` weights) of the
    checkpoint at ``path`` in place: every other array is written back as it was stored (the shipped float16
    weights stay float16, bit for bit), the new metadata is validated first, and the file is replaced
    atomically: written beside it and read back whole (the entries against the networks the metadata
    describes) before it replaces the file. Returns the new, validated meta."""
    read_checkpoint(path)  # validates the file as it is
    stored = tinynet.load(path)  # as stored: read_checkpoint's meta has its defaults filled in
    meta = dict(stored["meta"], **fields)
    checked = validate_meta(meta, str(path))  # before anything is written
    stored["meta"] = meta
    stored.update(entries or {})
    updated = Path(path).with_name(Path(path).name + ".update.npz")
    try:
        tinynet.save(stored, updated)
        read_checkpoint(updated)
        os.replace(updated, path)
    finally:
        updated.unlink(missing_ok=True)
    return checked


# ---------------------------------------------------------------------------------------------- writing
def checkpoint_meta(recipe, framing: PointFraming = DATASET_FRAMING, num_points: int = NUM_KEYPOINTS,
                    flip_permutation=None) -> dict:
    """The model spec a checkpoint carries, from a training ``Recipe``: what it needs to be used on its own.

    Architecture (``arch``, ``dropout``, ``head``), input size ``S`` and the preprocessing (``rescale``:
    the shorter side before the centre crop, ``keypoints.crops.rescale_size``), the canonical point
    framing with the number of refinement passes and the test frames (``keypoints.framing``), test-time
    flip averaging, the number of points and their mirror permutation (``None``: the iBUG one for 68
    points, else none), and the recipe itself. The keypoint normalisation is a function of ``S`` alone
    (``keypoints.geometry.normalize_keypoints``), so it is not stored; older checkpoints that store it as
    ``keypoint_mean`` / ``keypoint_std`` still load (the fields are ignored).
    """
    return {
        "arch": "naimishnet",
        "input_size": recipe.size,
        "dropout": recipe.dropout,
        "head": recipe.head,
        "refine_passes": recipe.refine_passes,
        "test_frames": [list(frame) for frame in recipe.test_frames],
        "framing": framing.to_dict(),
        "rescale": rescale_size(recipe.size),
        "flip_test": recipe.flip_test,
        "num_points": int(num_points),
        "flip_permutation": None if flip_permutation is None else [int(i) for i in flip_permutation],
        "recipe": dataclasses.asdict(recipe),
        "tinynet_version": tinynet.__version__,
    }


@dataclasses.dataclass
class TrainState:
    """Where a training run stands: what a ``last.npz`` holds besides the model, optimizer and scheduler."""

    epoch: int = 0  # epochs completed
    history: list = dataclasses.field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = -1
    best_model: dict | None = None


def save_checkpoint(
    path: Path,
    recipe,
    model,
    optimizer,
    scheduler,
    state: TrainState,
    framing: PointFraming = DATASET_FRAMING,
    averaged=None,
    *,
    num_points: int = NUM_KEYPOINTS,
    flip_permutation=None,
) -> None:
    """The full training state (atomic write: an interrupted save keeps the previous file); ``num_points``
    and ``flip_permutation`` as :func:`checkpoint_meta`."""
    tinynet.save(
        {
            "format": FORMAT,
            "version": VERSION,
            "meta": checkpoint_meta(recipe, framing, num_points, flip_permutation),
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
    path: Path, recipe, weights: dict, epoch: int, loss: float, framing: PointFraming = DATASET_FRAMING, *,
    num_points: int = NUM_KEYPOINTS, flip_permutation=None,
) -> None:
    """A compact checkpoint for inference: metadata (``num_points`` and ``flip_permutation`` as
    :func:`checkpoint_meta`) + weights."""
    tinynet.save(
        {
            "format": FORMAT,
            "version": VERSION,
            "meta": checkpoint_meta(recipe, framing, num_points, flip_permutation),
            "model": weights,
            "epoch": epoch,
            "selection_loss": loss,
        },
        path,
    )
