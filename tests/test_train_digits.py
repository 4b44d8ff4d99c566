"""examples/train_digits.py: the small CNN on scikit-learn's bundled digits reaches 98 % test accuracy."""
from __future__ import annotations

import re
import runpy
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


@pytest.fixture(scope="module")
def digits():
    """The example's functions (it is a script, not a package module)."""
    return runpy.run_path(str(EXAMPLE))


def test_split_is_balanced_and_disjoint(digits):
    split = digits["load_digits_split"]()
    assert split.x_train.shape == (1438, 1, 8, 8) and split.x_test.shape == (359, 1, 8, 8)
    assert split.x_train.dtype == np.float32 and 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0
    assert np.bincount(split.y_test, minlength=10).min() >= 35  # about 20 % of each digit's ~180
    train_rows = {row.tobytes() for row in split.x_train}
    # a few digits occur twice in the data set; nearly all test images are unseen
    assert sum(row.tobytes() in train_rows for row in split.x_test) <= 3


@pytest.mark.slow
def test_main_prints_a_test_accuracy_of_at_least_98_percent(digits, capsys):
    assert digits["main"]([]) == 0
    printed = capsys.readouterr().out
    match = re.search(r"test accuracy (\d+\.\d+)% on 359 images", printed)
    assert match, printed
    assert float(match.group(1)) >= 98.0, printed
