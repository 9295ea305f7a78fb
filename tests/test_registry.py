"""The checklist of docs/authoring.md, enforced: an assignment is registered once (``autograder/suites/ORDER``)
and is complete only when every piece exists. A missing piece fails here, by name, instead of being skipped."""

from __future__ import annotations

import nbformat
import pytest
import tomllib

from autograder import policy
from autograder.suites import HERE, ORDER, load_suite
from tests import catalog as catalogs
from tests.catalog import do_nothing
from tests.variants import REPO

pytestmark = pytest.mark.engine


def grade_ids(path) -> dict[str, dict]:
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade_id")}


def test_every_suite_package_is_registered():
    packages = sorted(p.name for p in HERE.iterdir() if (p / "__init__.py").exists() and p.name != "__pycache__")
    assert packages == sorted(ORDER), "a suite package that is not in ORDER is never graded; add it there"


@pytest.mark.parametrize("assignment", ORDER)
def test_assignment_is_complete(assignment):
    spec = load_suite(assignment)
    assert spec.exercises and spec.tests, f"{assignment}: no exercises or no hidden tests"
    solution = REPO / "solutions" / assignment / spec.notebook
    release = REPO / "assignments" / assignment / spec.notebook
    assert solution.exists(), f"step 1: write {solution.relative_to(REPO)}"
    assert release.exists(), f"step 3: nbgrader generate_assignment {assignment} (writes {release.relative_to(REPO)})"
    cells = grade_ids(solution)
    for exercise in spec.exercises:
        assert cells.get(exercise, {}).get("solution"), f"step 1: {solution.name} needs a solution cell {exercise!r}"
    assert f"check_policy_{assignment}" in cells, f"step 2: {solution.name} needs the check_policy cell"
    assert list(policy.POLICIES.get(assignment, {})) == spec.exercises, f"step 2: policy.POLICIES[{assignment!r}]"
    assert set(grade_ids(release)) == set(cells), f"step 3: {release.name} is out of date; regenerate the release"


@pytest.mark.parametrize("assignment", ORDER)
def test_assignment_has_its_catalogs(assignment):
    catalog = catalogs.CATALOGS.get(assignment)
    assert catalog is not None, f"step 5: tests/catalog/{assignment}.py, listed in tests/catalog/__init__.py"
    for kind in ("MUTANTS", "ALTERNATIVES", "CHEATS"):
        assert getattr(catalog, kind, None), f"step 5: {catalog.__name__}.{kind} is empty"
    assert assignment in do_nothing.ZEROS, f"step 5: tests/catalog/do_nothing.py has no do-nothing {assignment}"


@pytest.mark.parametrize("assignment", ORDER)
def test_assignment_is_documented_and_selectable(assignment):
    markers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith(f"{assignment}:") for m in markers), f"step 6: a pytest marker {assignment} in pyproject"
    notebook = load_suite(assignment).notebook
    readme = (REPO / "README.md").read_text()
    assert f"`{assignment}` | `{notebook}`" in readme, f"step 7: a row for {assignment} in the README's course table"
    assert f"`{assignment}`" in (REPO / "docs" / "spec.md").read_text(), f"step 7: {assignment} in docs/spec.md"
