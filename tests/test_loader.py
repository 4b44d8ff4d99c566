"""Tests for keypoints.loader.DataLoader on a small synthetic ``Faces`` cache."""
from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

import keypoints.loader as loader_module
from keypoints.data import Faces
from keypoints.loader import DataLoader

S = 16
AUGMENT = dict(flip=True, degrees=10, scale=(0.9, 1.1), translate=0.05, brightness=0.2, contrast=0.2)


def make_faces(n: int = 10, seed: int = 0) -> Faces:
    rng = np.random.default_rng(seed)
    shapes = [(S + int(rng.integers(0, 6)), S + int(rng.integers(0, 9))) for _ in range(n)]
    return Faces(
        images=[rng.random(shape, dtype=np.float32) for shape in shapes],
        keypoints=rng.uniform(0, S, size=(n, 68, 2)).astype(np.float32),
        names=[f"face{i}.jpg" for i in range(n)],
        original_sizes=np.array(shapes, dtype=np.int64) * 2,
        size=S,
        to_original=np.tile(np.array([[2.0, 0, 0.5], [0, 2.0, 0.5]]), (n, 1, 1)),
    )


def loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "keypoints-DataLoader" and t.is_alive()]


def collect(loader: DataLoader) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.copy(), y.copy()) for x, y in loader]


def test_shapes_dtypes_and_len():
    faces = make_faces(10)
    loader = DataLoader(faces, 4, shuffle=True, augment=AUGMENT)
    batches = collect(loader)
    assert len(loader) == 3 and [len(x) for x, _ in batches] == [4, 4, 2]
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape[1:] == (1, S, S)
        assert y.dtype == np.float32 and y.shape == (len(x), 136)
        assert 0.0 <= x.min() and x.max() <= 1.0
    dropping = DataLoader(faces, 4, drop_last=True)
    assert len(dropping) == 2 and [len(x) for x, _ in dropping] == [4, 4]
    assert len(DataLoader(faces, 5, drop_last=True)) == 2 and len(DataLoader(faces, 20)) == 1
    assert len(DataLoader(faces, 20, drop_last=True)) == 0 and collect(DataLoader(faces, 20, drop_last=True)) == []


def test_center_batches_are_the_centre_crops_in_order():
    faces = make_faces(5)
    x, y = next(iter(DataLoader(faces, 5, center=True)))
    for i, image in enumerate(faces.images):
        h, w = image.shape
        top, left = int(round((h - S) / 2.0)), int(round((w - S) / 2.0))
        np.testing.assert_array_equal(x[i, 0], image[top : top + S, left : left + S])
        points = faces.keypoints[i] - [left, top]
        expected = (points - 100 * S / 224) / (50 * S / 224)  # normalize_keypoints, written out
        np.testing.assert_allclose(y[i], expected.reshape(-1), atol=1e-5)


def test_shuffle_visits_every_face_once():
    faces = make_faces(9)
    order = []
    for x, _ in DataLoader(faces, 4, shuffle=True, center=True, seed=3):
        for crop in x[:, 0]:
            order.extend(i for i, image in enumerate(faces.images) if _is_centre_crop(crop, image))
    assert sorted(order) == list(range(9)) and order != list(range(9))


def _is_centre_crop(crop: np.ndarray, image: np.ndarray) -> bool:
    h, w = image.shape
    top, left = int(round((h - S) / 2.0)), int(round((w - S) / 2.0))
    return np.array_equal(crop, image[top : top + S, left : left + S])


def test_epochs_are_reproducible_and_differ():
    faces = make_faces(10)
    resumed = DataLoader(faces, 4, shuffle=True, augment=AUGMENT, seed=7)
    resumed.set_epoch(3)
    epoch3 = collect(resumed)
    # a run that went through epochs 0, 1, 2 first sees exactly the same epoch 3, bit for bit
    full = DataLoader(faces, 4, shuffle=True, augment=AUGMENT, seed=7)
    for epoch in range(4):
        full.set_epoch(epoch)
        batches = collect(full)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(batches, epoch3))
    # prefetching changes nothing; iterating twice without set_epoch repeats the epoch
    synchronous = DataLoader(faces, 4, shuffle=True, augment=AUGMENT, seed=7, prefetch=False)
    synchronous.set_epoch(3)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(collect(synchronous), epoch3))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(collect(resumed), epoch3))
    # another epoch or another seed: different batches
    resumed.set_epoch(4)
    assert not np.array_equal(collect(resumed)[0][0], epoch3[0][0])
    other_seed = DataLoader(faces, 4, shuffle=True, augment=AUGMENT, seed=8)
    other_seed.set_epoch(3)
    assert not np.array_equal(collect(other_seed)[0][0], epoch3[0][0])


def test_random_crops_without_augmentation_are_exact_slices():
    faces = make_faces(6)
    loader = DataLoader(faces, 6, seed=1)  # no shuffle: faces in order, random crop offsets
    x, y = next(iter(loader))
    for i, image in enumerate(faces.images):
        points = y[i].reshape(68, 2) * (50 * S / 224) + 100 * S / 224
        left, top = np.round(faces.keypoints[i, 0] - points[0]).astype(int)
        np.testing.assert_allclose(points, faces.keypoints[i] - [left, top], atol=1e-4)
        np.testing.assert_array_equal(x[i, 0], image[top : top + S, left : left + S])


def test_worker_exception_reaches_the_consumer(monkeypatch):
    calls = {"n": 0}
    real = loader_module.crop_sample

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("corrupt face 7")
        return real(*args, **kwargs)

    monkeypatch.setattr(loader_module, "crop_sample", failing)
    loader = DataLoader(make_faces(12), 3)
    seen = 0
    with pytest.raises(RuntimeError, match="corrupt face 7"):
        for _ in loader:
            seen += 1
    assert seen == 2  # batches 0 and 1 (faces 0-5) arrived, batch 2 failed on its first face
    assert loader_threads() == []


def _finishes(fn, seconds: float = 10.0) -> bool:
    done = threading.Event()

    def run():
        fn()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(seconds)


def test_early_break_and_close_do_not_hang():
    faces = make_faces(40)

    def break_early():
        for _ in DataLoader(faces, 2, shuffle=True, augment=AUGMENT):  # 20 batches; the queue fills
            time.sleep(0.05)
            break

    assert _finishes(break_early)
    gc.collect()
    assert loader_threads() == []

    def close_explicitly():
        iterator = iter(DataLoader(faces, 2))
        next(iterator)
        time.sleep(0.05)  # the producer is now blocked on the full queue
        iterator.close()

    assert _finishes(close_explicitly)
    assert loader_threads() == []

    def interrupt():
        iterator = iter(DataLoader(faces, 2))
        next(iterator)
        try:
            iterator.throw(KeyboardInterrupt)  # as if Ctrl-C arrived while the consumer waited
        except KeyboardInterrupt:
            pass

    assert _finishes(interrupt)
    assert loader_threads() == []


def test_validation():
    faces = make_faces(3)
    with pytest.raises(ValueError, match="unknown augment keys"):
        DataLoader(faces, 2, augment={"rotate": 10})
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(faces, 0)
    with pytest.raises(ValueError, match="epoch"):
        DataLoader(faces, 2).set_epoch(-1)
    small = make_faces(2)
    small.images[1] = np.zeros((S - 1, S + 4), np.float32)
    with pytest.raises(ValueError, match="smaller than the crop"):
        DataLoader(small, 2)
