"""Training the eye stage (:mod:`keypoints.eyes`) after the face network, into the same checkpoint.

Each epoch every training face gives its two eye crops framed from its *true* points with a random framing
error: the centre moved by ``N(0, SHIFT)`` eye distances per axis (cut at 3 sigma), the crop zoomed by
``exp(N(0, ZOOM))`` and turned by ``N(0, DEGREES)`` (both cut at 3 sigma), then brightness and contrast
jittered by up to ``PHOTOMETRIC``. On the test faces the face stage's eye centres are off by about 0.05 eye
distances (typically), so the shift covers that error with room; the held-out faces check it: they are framed
from the face stage's own predictions, as prediction frames them, and the epoch with the best eye points
there is kept.

The loss is L1 on the normalised crop coordinates, AdamW (weight decay on conv and linear weights only, as
the face network's recipe), cosine from ``LR`` to ``MIN_LR`` per batch, batches of ``BATCH_SIZE`` crops (fewer
when there are fewer; the last partial batch dropped, so no batch norm sees a single crop). Everything random derives from the recipe's seed:
the weights from ``(seed, EYE_STREAM)``, epoch ``e``'s order and jitter from ``(seed, e, EYE_STREAM)``.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from tinynet.nn import L1Loss
from tinynet.optim import AdamW, CosineAnnealingLR

from ..crops import jitter_factor, photometric_jitter
from .stage import EyeStage, build_eye_model, eye_crops, eye_matrices, eye_nme, eye_targets, read_eyes

EYE_STREAM = 11  # a seed word of its own: no stream is shared with the face network's loader or dropout
SHIFT, ZOOM, DEGREES, PHOTOMETRIC = 0.06, 0.07, 6.0, 0.2
LR, MIN_LR, WEIGHT_DECAY, BATCH_SIZE = 1e-3, 1e-5, 1e-4, 64


def jittered_batch(images: list, points: np.ndarray, stage: EyeStage, rng: np.random.Generator):
    """One epoch's crops ``(2N, 1, S, S)`` and targets ``(2N, 12)``: every face's eyes framed from its true
    points with a random framing error and photometric jitter (the module docstring's distributions)."""
    n = len(points)
    shift = np.clip(rng.normal(0.0, SHIFT, size=(n, 2, 2)), -3 * SHIFT, 3 * SHIFT)
    zoom = np.exp(np.clip(rng.normal(0.0, ZOOM, size=(n, 2)), -3 * ZOOM, 3 * ZOOM))
    degrees = np.clip(rng.normal(0.0, DEGREES, size=(n, 2)), -3 * DEGREES, 3 * DEGREES)
    matrices = eye_matrices(points, stage, shift, zoom, degrees)
    usable = np.flatnonzero(np.isfinite(matrices).all(axis=(1, 2, 3)))
    crops = eye_crops([images[i] for i in usable], matrices[usable], stage.size)
    crops = np.stack([photometric_jitter(crop, jitter_factor(rng, PHOTOMETRIC), jitter_factor(rng, PHOTOMETRIC))
                      for crop in crops])
    return crops[:, None], eye_targets(points[usable], matrices[usable], stage.size)


def train_eye_stage(
    stage: EyeStage,
    images: list,
    points: np.ndarray,
    epochs: int,
    seed: int,
    validation: tuple[list, np.ndarray, np.ndarray] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict, list]:
    """Train the eye network; returns ``(state dict, history)``.

    images, points : the training faces, gray float32 images at their own resolution and ``(N, 68, 2)`` true points
    validation : ``(images, start points, true points)`` of held-out faces, the start points from the face
        stage (what prediction frames the eyes from); the epoch with the lowest eye NME after ``stage.passes``
        reads is kept. None: the last epoch is kept.
    """
    model = build_eye_model(stage, rng=np.random.default_rng([seed, EYE_STREAM]))
    decay = [p for p in model.parameters() if p.data.ndim > 1]
    no_decay = [p for p in model.parameters() if p.data.ndim <= 1]
    optimizer = AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}], lr=LR)
    if points is None or len(points) == 0:
        raise ValueError("eye stage: no training faces")
    batch_size = min(BATCH_SIZE, 2 * len(points))  # two crops a face: batch norm always sees at least two
    batches = (2 * len(points)) // batch_size
    scheduler = CosineAnnealingLR(optimizer, T_max=epochs * batches, eta_min=MIN_LR)
    criterion = L1Loss()
    if validation is not None:
        before = eye_nme(validation[1], validation[2])
        log(f"eye stage: {len(points)} training faces, {len(validation[0])} held out (face stage's eyes there:"
            f" eye NME {100 * before:.2f} %)")
    best, best_nme, history = None, np.inf, []
    for epoch in range(epochs):
        started = time.perf_counter()
        rng = np.random.default_rng([seed, epoch, EYE_STREAM])
        crops, targets = jittered_batch(images, points, stage, rng)
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
            record["val_eye_nme_percent"] = 100 * eye_nme(read_eyes(model, stage, val_images, start), true)
        history.append(record)
        score = record.get("val_eye_nme_percent", -epoch)  # without validation the last epoch wins
        improved = score < best_nme
        if improved:
            best, best_nme = {k: v.copy() for k, v in model.state_dict().items()}, score
        val_text = f" | val eye NME {record['val_eye_nme_percent']:.2f} %" if validation is not None else ""
        log(f"eye stage epoch {epoch + 1:3d}/{epochs} | train loss {record['train_loss']:.4f}{val_text}"
            f" | {record['seconds']:.1f} s{' *' if improved and validation is not None else ''}")
    return best, history


def add_eye_stage(best_path, dataset, train_indices: np.ndarray, val_indices: np.ndarray, recipe,
                  log: Callable[[str], None] = print) -> list:
    """Train the eye stage the recipe asks for (``recipe.eye_epochs``, ``recipe.eye_passes``) on the faces
    ``train_indices`` of ``dataset`` (a 68-point split: ``keypoints.data.open_split``), validate it on
    ``val_indices`` framed from the face network at ``best_path``, and write it into that checkpoint
    (``meta.eye_stage`` and the entries ``eyes``; atomically). Returns the eye stage's history."""
    from ..checkpoint import update_meta
    from ..predictor import load_predictor

    stage = EyeStage(passes=recipe.eye_passes)
    started = time.perf_counter()
    images = [dataset[int(i)]["image"] for i in train_indices]  # gray float32 at the images' own resolution
    points = np.stack([dataset[int(i)]["keypoints"] for i in train_indices]) if len(train_indices) else None
    validation = None
    if len(val_indices):
        samples = [dataset[int(i)] for i in val_indices]
        val_images = [sample["image"] for sample in samples]
        start = load_predictor(best_path, eye_passes=0).predict(val_images)  # the face stage, as prediction runs it
        validation = (val_images, start, np.stack([sample["keypoints"] for sample in samples]))
    log(f"eye stage: {stage} | faces read in {time.perf_counter() - started:.1f} s")
    weights, history = train_eye_stage(stage, images, points, recipe.eye_epochs, recipe.seed, validation, log)
    update_meta(best_path, entries={"eyes": weights}, eye_stage=stage.to_dict())
    return history
