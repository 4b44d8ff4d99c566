"""Training the keypoint network: the epoch loop, exact resume, the final report.

The recipes are in ``keypoints.recipes``, the checkpoint format in ``keypoints.checkpoint``. Two recipes ship:

- ``reference``: the classic PyTorch project's recipe, reproduced exactly: 96x96 input, train transform
  Rescale(107) + RandomCrop(96) + Normalize, MSE, Adam(lr 1e-3), batch 64, 50 epochs, no validation split,
  keeping the weights with the lowest training loss.
- ``default``: the best recipe we found within 30 minutes on 2 cores (see README.md for the figures).

The data is the 68-point keypoint CSV data set (``data_format="csv"``) or a folder of images with iBUG
``.pts`` files beside them (``"pts"``, any number of points K: ``keypoints.data.pts``). Points without a
mirror permutation (no flip file, K != 68) train without flip augmentation and without flip test averaging
(:func:`recipe_for_points`); features that read named landmarks (the confidence calibration) need K = 68.

Everything random derives from the recipe's seed: the validation split from ``(seed,)``, the batches and
augmentations of epoch ``e`` from ``(seed, e)`` (see ``keypoints.loader``), the dropout masks of epoch
``e`` from ``(seed, e, DROPOUT_STREAM)``. A run resumed from the checkpoint written after epoch ``e``
therefore continues bit for bit as the uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

import tinynet
import tinynet.compile
from tinynet.optim import CosineAnnealingLR
from tinynet.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from .checkpoint import TrainState, flip_permutation_of, read_checkpoint, save_checkpoint, save_weights
from .data import ensure_data, open_split, prepare_faces
from .data.pts import flip_permutation_for
from .loader import DataLoader
from .recipes import Recipe, build_loss, build_optimizer, recipe_from_dict, validation_split
from .framing import measure_point_framing, reads_test_frames
from .models import naimishnet
from .geometry import NUM_KEYPOINTS, denormalize_keypoints
from .metrics import INTEROCULAR, nme_normalization

DROPOUT_STREAM = 7  # a third seed word so dropout masks never share a stream with the data loader


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
            size, k = x.shape[-1], out.shape[1] // 2
            pred = denormalize_keypoints(out.reshape(-1, k, 2), size)
            true = denormalize_keypoints(y.reshape(-1, k, 2), size)
            nme_sum += float(nme_per_face(pred, true).sum())
            count += len(x)
    return total / max(count, 1), nme_sum / max(count, 1)


def check_resumed_points(resume, meta: dict, num_points: int, flip_permutation: np.ndarray | None) -> None:
    """A run resumes on the points it was trained on: the same count and mirror permutation as ``meta``'s."""
    saved = flip_permutation_of(meta)
    same = (saved is None) == (flip_permutation is None) and (saved is None or np.array_equal(saved, flip_permutation))
    if meta["num_points"] != num_points or not same:
        raise ValueError(f"--resume {resume}: the checkpoint was trained on {meta['num_points']} points"
                         f" {'without' if saved is None else 'with'} a flip permutation; the data and --flip-file"
                         f" give {num_points} points {'without' if flip_permutation is None else 'with'} one"
                         f"{' (a different one)' if saved is not None and flip_permutation is not None else ''}")


def open_training_data(data, data_format: str, flip_file, log: Callable[[str], None]) -> tuple:
    """``(data folder, training split, flip permutation or None, a note saying where it came from)``.

    ``"csv"``: ``data`` or the folder :func:`keypoints.data.ensure_data` finds or downloads; ``"pts"``: the
    folder ``data`` (required). The test split is opened too, so that a test file with another number of
    points fails now, not after training. Images left out for want of a ``.pts`` file are logged.
    """
    if data_format == "pts" and data is None:
        raise ValueError("--format pts needs --data DIR, the folder of images with .pts files beside them")
    data_dir = ensure_data(data) if data_format == "csv" else Path(data)
    train_set = open_split(data_dir, "training", data_format)
    num_points = train_set.keypoints.shape[1]
    open_split(data_dir, "test", data_format, num_points)
    flip_permutation, flip_note = flip_permutation_for(num_points, flip_file)
    if getattr(train_set, "unannotated", None):
        log(f"left out {len(train_set.unannotated)} training images without a .pts file beside them"
            f" (e.g. {train_set.unannotated[0]})")
    return data_dir, train_set, flip_permutation, flip_note


def recipe_for_points(recipe: Recipe, num_points: int, flip_permutation: np.ndarray | None) -> Recipe:
    """``recipe`` for ``num_points`` points: without a mirror permutation, flip augmentation and flip test
    averaging turned off; for other than the 68 iBUG points no close-up stage (they read its regions); an upright
    refinement frame (which reads the 68 iBUG points' eyes too) refused."""
    if recipe.upright and num_points != NUM_KEYPOINTS:
        raise ValueError(f"the recipe's upright framing reads the eyes of the {NUM_KEYPOINTS} iBUG points;"
                         f" the data has {num_points} points")
    if recipe.closeup and num_points != NUM_KEYPOINTS:
        recipe = dataclasses.replace(recipe, closeup=())
    if flip_permutation is not None:
        return recipe
    augment = dict(recipe.augment, flip=False) if "flip" in recipe.augment else recipe.augment
    return dataclasses.replace(recipe, augment=augment, flip_test=False)


# ---------------------------------------------------------------------------------------------- driver
def train(
    recipe: Recipe,
    data: str | Path | None = None,
    out: str | Path = "runs/keypoints",
    limit: int | None = None,
    resume: str | Path | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
    overwrite: bool = False,
    resumed: dict | None = None,
    data_format: str = "csv",
    flip_file: str | Path | None = None,
) -> dict:
    """Train, keep the best weights, evaluate on the test set and write the report into ``out``.

    ``data_format``: ``"csv"`` (the keypoint data set, ``data`` or else ``$KEYPOINTS_DATA``, downloaded if
    absent) or ``"pts"`` (the folder ``data`` of images with ``.pts`` files, ``keypoints.data.pts``).
    ``flip_file``: the points' mirror permutation (``keypoints.data.pts.read_flip_file``); without it the
    iBUG one for 68 points, for other counts none (:func:`recipe_for_points`).

    A folder holding an earlier run is refused unless ``overwrite`` or ``resume`` is its own ``last.npz``
    (see :func:`keypoints.files.claim_run_folder`). ``resumed``: the checkpoint at ``resume`` if the caller
    has read it already (``read_checkpoint(resume, training=True)[0]``; the command line does, for the
    recipe), so that it is read once. Returns the metrics dict (also in ``out/metrics.json``).
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
        checkpoint = resumed if resumed is not None else read_checkpoint(resume, training=True)[0]
        recipe = recipe_from_dict(checkpoint["meta"]["recipe"]) if recipe is None else recipe

    started = time.perf_counter()
    # a machine's first run: a second process compiles the backward pass's and Adam's kernels while this one
    # prepares the data and compiles the forward pass's (nothing is started when the kernel cache is warm)
    compiling = tinynet.compile.start_background(report=sys.stderr.isatty())
    data_dir, train_set, flip_permutation, flip_note = open_training_data(data, data_format, flip_file, log)
    num_points = train_set.keypoints.shape[1]
    requested = recipe.closeup
    recipe = recipe_for_points(recipe, num_points, flip_permutation)
    if requested and not recipe.closeup:
        log(f"no close-up stages: they read regions of the {NUM_KEYPOINTS} iBUG points, the data has {num_points}")
    points_meta = {"num_points": num_points, "flip_permutation": flip_permutation}
    if checkpoint is not None:
        check_resumed_points(resume, checkpoint["meta"], num_points, flip_permutation)  # before the recipe it changes
        saved = recipe_from_dict(checkpoint["meta"]["recipe"])
        if dataclasses.replace(saved, epochs=recipe.epochs) != recipe:
            raise ValueError(
                f"--resume {resume}: the checkpoint was trained with a different recipe;"
                " resume with the same options (only --epochs may change)"
            )
    indices = np.arange(len(train_set)) if limit is None else np.arange(min(limit, len(train_set)))
    faces = prepare_faces(train_set, recipe.size, indices=indices)
    train_index, val_index = validation_split(len(faces), recipe)
    n_val = len(val_index)
    train_faces = faces.subset(train_index)
    val_faces = faces.subset(val_index) if n_val else None
    framing = dataclasses.replace(
        measure_point_framing(train_faces.images, train_faces.keypoints, recipe.size), upright=recipe.upright
    )
    log(
        f"data: {data_dir} | {len(train_faces)} training faces, {n_val} validation faces"
        f" | prepared in {time.perf_counter() - started:.1f} s"
    )

    by = "outer eye corners (36, 45)" if nme_normalization(num_points) == INTEROCULAR else "true points' box diagonal"
    log(f"points: {num_points} per face; {flip_note}; NME normalised by the {by}")
    # the 3x3 convolution by Winograd's F(2x2, 3x3) (tinynet.nn.WinogradConv2d): same weights and state dict,
    # 11-20 % less time per step for NaimishNet-96, measured in turns (benchmarks/README.md)
    model = naimishnet(recipe.size, dropout=recipe.dropout, seed=recipe.seed, head=recipe.head,
                       num_points=num_points, winograd=True).skip_input_grad()
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
        flip_permutation=flip_permutation,
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
            save_weights(best_path, recipe, state.best_model, state.best_epoch, state.best_loss, framing, **points_meta)
            save_checkpoint(last_path, recipe, model, optimizer, scheduler, state, framing, averaged, **points_meta)

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
            save_weights(best_path, recipe, state.best_model, epoch + 1, selection_loss, framing, **points_meta)
        state.epoch = epoch + 1
        state.history.append(record)
        save_checkpoint(last_path, recipe, model, optimizer, scheduler, state, framing, averaged, **points_meta)
        val_text = f" | val loss {record['val_loss']:.4f}, val NME {record['val_nme_percent']:.2f} %" if "val_loss" in record else ""
        log(
            f"epoch {epoch + 1:3d}/{recipe.epochs} | train loss {train_loss:.4f}{val_text}"
            f" | {len(train_loader) * recipe.batch_size / seconds:.0f} img/s, {seconds:.1f} s{' *' if improved else ''}"
        )

    if compiling is not None:
        compiling.wait()  # done long ago (it compiles for seconds): reap the process
    if state.best_model is None:
        raise SystemExit("no epoch finished, nothing to evaluate")
    if averaged is not None and not interrupted:
        # the averaged weights' own batch-norm statistics: one pass of augmented crops no epoch has used
        best = naimishnet(recipe.size, dropout=recipe.dropout, seed=recipe.seed, head=recipe.head,
                          num_points=num_points, winograd=True)
        best.load_state_dict(state.best_model)
        train_loader.set_epoch(recipe.epochs)
        update_bn(train_loader, best)
        save_weights(best_path, recipe, snapshot(best), state.best_epoch, state.best_loss, framing, **points_meta)
        log(f"recomputed the batch-norm statistics of the averaged weights of epoch {state.best_epoch}")
    if recipe.closeup and not interrupted:
        from .closeup.training import add_closeup_stages

        add_closeup_stages(best_path, train_set, indices[train_index], indices[val_index], recipe, log)
    train_seconds = time.perf_counter() - train_started
    # the confidence compares several reads of a face: the last pass's test frames, or flip averaging
    several_reads = recipe.flip_test or reads_test_frames(recipe.test_frames, recipe.refine_passes)
    if several_reads and val_faces is not None and not interrupted and num_points != NUM_KEYPOINTS:
        log(f"no confidence calibration: the confidence reads the eye corners of the {NUM_KEYPOINTS} iBUG points")
    elif several_reads and val_faces is not None and not interrupted:
        from .wild.confidence import calibrate_checkpoint  # the per-face confidence, from the held-out faces

        found = calibrate_checkpoint(best_path, train_set, indices[val_index])
        log(f"confidence ({found.signal}) calibrated on the {n_val} validation faces: (a, b) = {found.calibration}"
            if found.calibration
            else f"no confidence calibration: {found.reason}")
    metrics = evaluate_checkpoint(best_path, data_dir, flip=recipe.flip_test, limit=limit, data_format=data_format)
    metrics.update(
        recipe=recipe.name,
        best_epoch=state.best_epoch,
        epochs_completed=state.epoch,
        selection=selection,
        train_seconds_this_run=round(train_seconds, 1),
        interrupted=interrupted,
        data_format=data_format,
        num_points=num_points,
        flip=flip_note,
    )
    write_report(out, state.history, metrics, best_path, data_dir, limit=limit, data_format=data_format)
    return metrics
