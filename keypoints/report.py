"""What a training run leaves in ``--out``: the loss curve, a grid of test faces, the metrics JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .files import save_figure, write_text

PREDICTED_COLOR = "magenta"
TRUE_COLOR = "limegreen"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works on machines without a display
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curve(history: list[dict], path: Path) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(epochs, [h["train_loss"] for h in history], label="training loss")
    if any("val_loss" in h for h in history):
        ax.plot(epochs, [h.get("val_loss", np.nan) for h in history], label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, flag="--out", dpi=110)
    plt.close(fig)


def plot_face_grid(images: list[np.ndarray], predicted: np.ndarray, true: np.ndarray, path: Path, columns: int = 4) -> None:
    """Faces with predicted (magenta) and true (green) keypoints, in original pixels."""
    plt = _pyplot()
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, pred, real in zip(axes.ravel(), images, predicted, true):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.scatter(real[:, 0], real[:, 1], s=6, c=TRUE_COLOR, label="true")
        ax.scatter(pred[:, 0], pred[:, 1], s=6, c=PREDICTED_COLOR, label="predicted")
    axes.ravel()[0].legend(loc="lower left", fontsize=7, markerscale=2)
    fig.tight_layout()
    save_figure(fig, path, flag="--out", dpi=100)
    plt.close(fig)


def write_report(out: Path, history: list[dict], metrics: dict, best_path: Path, data_dir: Path, limit: int | None = None,
                 faces: int = 16, data_format: str = "csv") -> None:
    """The loss curve, ``faces`` test faces with their points (``data_format``: ``keypoints.data.open_split``)
    and ``metrics.json`` (``metrics`` with the ``history``) in ``out``."""
    from .evaluate import load_split
    from .predictor import load_predictor

    plot_loss_curve(history, out / "loss_curve.png")
    predictor = load_predictor(best_path, flip=metrics.get("flip_test"))
    images, true, _ = load_split(data_dir, "test", min(faces, limit) if limit else faces, data_format)
    plot_face_grid(images, predictor.predict(images), true, out / "test_faces.png")
    metrics = dict(metrics, history=history)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n", flag="--out")
