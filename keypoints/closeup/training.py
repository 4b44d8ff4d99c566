"""Training the close-up stages (:mod:`keypoints.closeup`) after the face network, into the same checkpoint.

Each epoch every training face gives its region's crops (two for the eyes, two for the mouth) framed from its
*true* points with a random framing error: the centre moved by ``N(0, SHIFT)`` eye distances per axis (cut at
3 sigma), the crop zoomed by ``exp(N(0, ZOOM))`` and turned by ``N(0, DEGREES)`` (both cut at 3 sigma), then
brightness and contrast jittered by up to ``PHOTOMETRIC``. On the test faces the face network's eye and mouth
centres are off by about 0.05 eye distances, so the shift covers that error with room; the held-out faces
check it: they are framed from the face network's own predictions, as prediction frames them, and the epoch
with the best points there is kept.

The loss is L1 on the normalised crop coordinates, AdamW (weight decay on conv and linear weights only, as the
face network's recipe), cosine from ``LR`` to ``MIN_LR`` per batch, batches of ``BATCH_SIZE`` crops (fewer when
there are fewer; the last partial batch dropped, so no batch norm sees a single crop). Everything random
derives from the recipe's seed: region ``r``'s weights from ``(seed, STREAM + r)``, its epoch ``e``'s order and
jitter from ``(seed, e, STREAM + r)``, ``r`` the region's place in :data:`~keypoints.closeup.stage.REGIONS`.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from tinynet.nn import L1Loss
from tinynet.optim import CosineAnnealingLR

from ..crops import jitter_factor, photometric_jitter
from .stage import (
    DEFAULT_STAGES,
    REGIONS,
    CloseupStage,
    Region,
    build_closeup_model,
    crop_matrices,
    read_region,
    region_crops,
    region_nme,
    region_targets,
)

STREAM = 11  # seed words of their own: no stream is shared with the face network's loader or dropout
SHIFT, ZOOM, DEGREES, PHOTOMETRIC = 0.06, 0.07, 6.0, 0.2
LR, MIN_LR, WEIGHT_DECAY, BATCH_SIZE = 1e-3, 1e-5, 1e-4, 64


def jittered_batch(images: list, points: np.ndarray, region: Region, stage: CloseupStage, rng: np.random.Generator):
    """One epoch's crops ``(N C, 1, S, S)`` and targets ``(N C, 2P)``: every face's region framed from its true
    points with a random framing error and photometric jitter (the module docstring's distributions)."""
    n, count = len(points), len(region.crops)
    shift = np.clip(rng.normal(0.0, SHIFT, size=(n, count, 2)), -3 * SHIFT, 3 * SHIFT)
    zoom = np.exp(np.clip(rng.normal(0.0, ZOOM, size=(n, count)), -3 * ZOOM, 3 * ZOOM))
    degrees = np.clip(rng.normal(0.0, DEGREES, size=(n, count)), -3 * DEGREES, 3 * DEGREES)
    matrices = crop_matrices(points, region, stage, shift, zoom, degrees)
    usable = np.flatnonzero(np.isfinite(matrices).all(axis=(1, 2, 3)))
    crops = region_crops([images[i] for i in usable], matrices[usable], stage.size)
    crops = np.stack([photometric_jitter(crop, jitter_factor(rng, PHOTOMETRIC), jitter_factor(rng, PHOTOMETRIC))
                      for crop in crops])
    return crops[:, None], region_targets(points[usable], matrices[usable], region, stage.size)


def train_closeup(
    region: Region,
    stage: CloseupStage,
    images: list,
    points: np.ndarray,
    epochs: int,
    seed: int,
    validation: tuple[list, np.ndarray, np.ndarray] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict, list]:
    """Train ``region``'s close-up network; returns ``(state dict, history)``.

    images, points : the training faces, gray float32 images at their own resolution and ``(N, 68, 2)`` true points
    validation : ``(images, start points, true points)`` of held-out faces, the start points from the face
        network (what prediction frames the crops from); the epoch with the lowest region NME after
        ``stage.passes`` reads is kept. None: the last epoch is kept.
    """
    if points is None or len(points) == 0:
        raise ValueError(f"{region.name} stage: no training faces")
    stream = STREAM + list(REGIONS).index(region.name)
    from ..recipes import Recipe, build_optimizer  # the one weight-decay rule: conv and linear weights only

    model = build_closeup_model(region, stage, rng=np.random.default_rng([seed, stream]))
    optimizer = build_optimizer(model, Recipe(optimizer="adamw", lr=LR, weight_decay=WEIGHT_DECAY))
    crops_per_epoch = len(region.crops) * len(points)
    batch_size = min(BATCH_SIZE, crops_per_epoch)  # at least two crops a face: batch norm sees two or more
    batches = crops_per_epoch // batch_size
    scheduler = CosineAnnealingLR(optimizer, T_max=epochs * batches, eta_min=MIN_LR)
    criterion = L1Loss()
    if validation is not None:
        log(f"{region.name} stage: {len(points)} training faces, {len(validation[0])} held out (the face network's"
            f" {region.name} there: NME {100 * region_nme(validation[1], validation[2], region):.2f} %)")
    best, best_score, history = None, np.inf, []
    for epoch in range(epochs):
        started = time.perf_counter()
        rng = np.random.default_rng([seed, epoch, stream])
        crops, targets = jittered_batch(images, points, region, stage, rng)
        order = rng.permutation(len(crops))
        model.train()
        total = 0.0
        for b in range(batches):
            index = order[b * batch_size : (b + 1) * batch_size]
            loss = criterion(model(crops[index]), targets[index])
            model.zero_grad()
            model.backward(criterion.backward())
            optimizer.step()
            scheduler.step()
            total += float(loss)
        record = {"epoch": epoch + 1, "train_loss": total / batches, "seconds": time.perf_counter() - started}
        if validation is not None:
            val_images, start, true = validation
            record["val_nme_percent"] = 100 * region_nme(read_region(model, region, stage, val_images, start), true, region)
        history.append(record)
        score = record.get("val_nme_percent", -epoch)  # without validation the last epoch wins
        improved = score < best_score
        if improved:
            best, best_score = {k: v.copy() for k, v in model.state_dict().items()}, score
        val_text = f" | val {region.name} NME {record['val_nme_percent']:.2f} %" if validation is not None else ""
        log(f"{region.name} stage epoch {epoch + 1:3d}/{epochs} | train loss {record['train_loss']:.4f}{val_text}"
            f" | {record['seconds']:.1f} s{' *' if improved and validation is not None else ''}")
    return best, history


def add_closeup_stages(best_path, dataset, train_indices: np.ndarray, val_indices: np.ndarray, recipe,
                       log: Callable[[str], None] = print) -> dict:
    """Train the close-up stages the recipe names (``recipe.closeup``, ``recipe.closeup_epochs`` each, read
    ``recipe.closeup_passes`` times) on the faces ``train_indices`` of ``dataset`` (a 68-point split:
    ``keypoints.data.open_split``), validate each on ``val_indices`` framed from the face network at
    ``best_path``, and write them into that checkpoint (``meta.closeup`` and the entries ``closeup``, atomically).
    Returns each region's history."""
    from ..checkpoint import update_meta
    from ..predictor import load_predictor

    started = time.perf_counter()
    faces = [dataset[int(i)] for i in train_indices]  # each image read once, gray float32 at its own resolution
    images = [face["image"] for face in faces]
    points = np.stack([face["keypoints"] for face in faces]) if faces else None
    validation = None
    if len(val_indices):
        samples = [dataset[int(i)] for i in val_indices]
        val_images = [sample["image"] for sample in samples]
        start = load_predictor(best_path, closeup_passes=0).predict(val_images)  # the face network, as prediction runs it
        validation = (val_images, start, np.stack([sample["keypoints"] for sample in samples]))
    log(f"close-up stages {', '.join(recipe.closeup)}: faces read in {time.perf_counter() - started:.1f} s")
    stages, weights, histories = {}, {}, {}
    for name in recipe.closeup:
        stages[name] = CloseupStage(**dict(DEFAULT_STAGES[name].to_dict(), passes=recipe.closeup_passes))
        weights[name], histories[name] = train_closeup(REGIONS[name], stages[name], images, points,
                                                       recipe.closeup_epochs, recipe.seed, validation, log)
    update_meta(best_path, entries={"closeup": weights}, closeup={name: stage.to_dict() for name, stage in stages.items()})
    return histories
