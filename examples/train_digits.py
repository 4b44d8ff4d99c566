"""Classify handwritten digits with a small CNN: scikit-learn's bundled 8x8 digits (1,797 images, no download).

    python examples/train_digits.py              # 8 epochs, 10-30 s on 2 cores; prints the test accuracy
    python examples/train_digits.py --epochs 2   # a quicker, less accurate run

A fixed, stratified 80/20 split (360 test images) and fixed seeds: the same accuracy every run.
Lesson 7 (lessons/07_classify_digits.ipynb) runs these functions and draws what the network gets wrong.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import NamedTuple

import numpy as np

import tinynet
from tinynet import nn, optim

NUM_CLASSES = 10


class DigitsSplit(NamedTuple):
    x_train: np.ndarray  # (N, 1, 8, 8) float32 in [0, 1]
    y_train: np.ndarray  # (N,) int64 labels 0..9
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> DigitsSplit:
    """The 1,797 digits as (N, 1, 8, 8) float32 in [0, 1], split per class so both parts are balanced."""
    from sklearn.datasets import load_digits  # an optional dependency: the lessons' and tests' extra

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # pixel values are 0..16
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for digit in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test[members[: round(test_fraction * len(members))]] = True
    return DigitsSplit(images[~test], labels[~test], images[test], labels[test])


def digits_cnn(rng: np.random.Generator) -> nn.Sequential:
    """Two 3x3 conv blocks (8x8 -> 4x4), then two linear layers to 10 logits (softmax is in the loss)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, rng=rng), nn.BatchNorm2d(16), nn.ReLU(),      # (N, 16, 8, 8)
        nn.Conv2d(16, 32, 3, padding=1, rng=rng), nn.BatchNorm2d(32), nn.ReLU(),     # (N, 32, 8, 8)
        nn.MaxPool2d(2),                                                             # (N, 32, 4, 4)
        nn.Flatten(),                                                                # (N, 512)
        nn.Linear(32 * 4 * 4, 64, rng=rng), nn.ReLU(), nn.Dropout(0.25, rng=rng),
        nn.Linear(64, NUM_CLASSES, rng=rng),                                         # (N, 10) logits
    )


def train_epoch(model, criterion, optimizer, x, y, batch_size: int, rng: np.random.Generator) -> float:
    """One pass over the shuffled training set; returns the mean loss of its batches."""
    model.train()
    order = rng.permutation(len(x))
    losses = []
    for start in range(0, len(x), batch_size):
        batch = order[start : start + batch_size]
        logits = model(x[batch])
        losses.append(float(criterion(logits, y[batch])))
        model.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
    return float(np.mean(losses))


def predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, 10) in eval mode (running batch-norm statistics, no dropout)."""
    model.eval()
    softmax = nn.Softmax(dim=1)
    with tinynet.no_grad():
        return np.concatenate([softmax(model(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(predict(model, x).argmax(axis=1) == y))


def train_digits(epochs: int = 8, batch_size: int = 32, lr: float = 3e-3, seed: int = 0, log=print):
    """Train ``digits_cnn`` on the training split; returns ``(model, split, history)``.

    ``history`` holds one dict per epoch: ``epoch``, ``loss`` (training), ``test_accuracy``.
    """
    rng = np.random.default_rng(seed)
    split = load_digits_split(seed=seed)
    model = digits_cnn(rng)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.05)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    history = []
    for epoch in range(1, epochs + 1):
        loss = train_epoch(model, criterion, optimizer, split.x_train, split.y_train, batch_size, rng)
        scheduler.step()
        history.append(dict(epoch=epoch, loss=loss, test_accuracy=accuracy(model, split.x_test, split.y_test)))
        if log is not None:
            log(f"epoch {epoch:2d}  loss {loss:.4f}  test accuracy {history[-1]['test_accuracy']:.2%}")
    return model, split, history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="passes over the 1,437 training images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (cosine-annealed to 0)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        parser.error(f"--epochs and --batch-size must be >= 1 and --lr > 0, got {args.epochs}, {args.batch_size}, {args.lr}")
    start = time.perf_counter()
    model, split, _ = train_digits(args.epochs, args.batch_size, args.lr, args.seed)
    print(f"test accuracy {accuracy(model, split.x_test, split.y_test):.2%} on {len(split.y_test)} images"
          f" ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
