"""Notebooks really execute, in a real Jupyter kernel."""

from __future__ import annotations

import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder.suites import SUITES, load_suite
from tests.variants import REPO

pytestmark = pytest.mark.notebooks
# Kernels inherit these: plots render off-screen, and notebooks that train take their small size
# (COURSE_SMALL=1: a tiny model and a few steps), so CI checks that they run, not how well they learn.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("COURSE_SMALL", "1")
KERNEL_TIMEOUT = 600  # seconds per cell; generous for a loaded 2-core CI machine


def execute(nb, cwd):
    NotebookClient(nb, timeout=KERNEL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()


@pytest.mark.parametrize("assignment", list(SUITES))
def test_solution_notebook_runs_top_to_bottom(assignment, tmp_path):
    shutil.copytree(REPO / "solutions" / assignment, tmp_path, dirs_exist_ok=True)  # data files beside it
    nb = nbformat.read(tmp_path / load_suite(assignment).notebook, as_version=4)
    execute(nb, tmp_path)
    tests_run = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert tests_run and all(any("passed" in o.get("text", "") for o in c.outputs) for c in tests_run)


@pytest.mark.parametrize("assignment", list(SUITES))
def test_release_runs_up_to_the_first_exercise(assignment, tmp_path):
    """Everything before the first visible test runs; that test stops on NotImplementedError."""
    shutil.copytree(REPO / "assignments" / assignment, tmp_path, dirs_exist_ok=True)
    nb = nbformat.read(tmp_path / load_suite(assignment).notebook, as_version=4)
    first_test = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade"))
    nb.cells = nb.cells[: first_test + 1]
    with pytest.raises(CellExecutionError) as info:
        execute(nb, tmp_path)
    assert "NotImplementedError" in str(info.value)
    assert all(not any(o.get("output_type") == "error" for o in c.get("outputs", [])) for c in nb.cells[:first_test])


def test_lecture_notebooks_run(tmp_path):
    shutil.copytree(REPO / "lectures", tmp_path / "lectures")
    for path in sorted((tmp_path / "lectures").glob("*.ipynb")):
        execute(nbformat.read(path, as_version=4), path.parent)
    assert list((tmp_path / "lectures" / "figures").glob("*.png"))
