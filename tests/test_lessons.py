"""The lessons (``lessons/*.ipynb``) run top to bottom without an error, and are committed without outputs.

Each notebook runs in a fresh ``python3`` kernel of this environment (ipykernel), from the ``lessons/``
folder as a learner opens it, with this checkout first on the path. The face lessons use the real data when
``KEYPOINTS_DATA`` is set and drawn faces otherwise, so they run either way. Each lesson is meant to take
well under two minutes on 2 idle cores; ``BUDGET_SECONDS`` only stops a runaway one (a cell that takes longer
is interrupted and fails the test): on a machine shared with training runs a lesson can take several times
its usual time, and that should not fail the suite.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
BUDGET_SECONDS = 600


def test_the_seven_lessons_are_there():
    assert [path.name[:2] for path in LESSONS] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_runs(path):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=BUDGET_SECONDS, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    client.execute(env=env)  # raises CellExecutionError naming the cell on any error
    seconds = time.perf_counter() - start
    assert seconds < BUDGET_SECONDS, f"{path.name} took {seconds:.0f} s"
    figures = sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))
    assert figures >= 2, f"{path.name} drew {figures} figure(s): a lesson shows its results"
