"""The Gradescope autograder package of one assignment: ``python -m autograder gradescope ASSIGNMENT``.

Gradescope's autograder specification (https://gradescope-autograders.readthedocs.io/en/latest/specs/):
the uploaded zip is unpacked into ``/autograder/source``; ``setup.sh`` runs there once, as root, while the
image is built (an Ubuntu image, network on); ``run_autograder`` runs as root for every submission, which
Gradescope puts in ``/autograder/submission/``, and must leave ``/autograder/results/results.json``.

The zip holds only what grading needs (``_members``): the ``autograder`` package (engine, worker, every hidden
suite, so that another assignment's notebook is still recognised and refused), the release notebooks of
``assignments/`` (release matching and read-only cells), the files that install it (``pyproject.toml``,
``README.md`` which it names, ``constraints.txt``, ``scripts/setup-env.sh``) and, at its root, ``setup.sh`` and
``run_autograder`` from ``autograder/gradescope_files/``. Never ``solutions/``, ``tests/``, ``examples/``,
``lectures/``, ``.git``, a gradebook or results. This module imports neither torch nor nbgrader.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

# What Gradescope accepts for ``visibility`` (top level, and per test) and ``stdout_visibility``: "visible"
# (always shown), "after_due_date" (after the due date, or the late due date when late submissions are allowed),
# "after_published" (once grades are published from "Review Grades"), "hidden" (never shown to students).
VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")

REPO = Path(__file__).resolve().parents[1]
FILES = Path(__file__).resolve().with_name("gradescope_files")
INSTALL_FILES = ("pyproject.toml", "README.md", "constraints.txt", "scripts/setup-env.sh")
EXECUTABLE = ("setup.sh", "run_autograder", "scripts/setup-env.sh")
SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def build(assignment: str, out: Path | None = None, visibility: str = "visible") -> Path:
    """Write the autograder zip of ``assignment`` and return its path.

    ``out`` is a ``.zip`` file, or a folder that gets ``<assignment>-gradescope.zip`` (default: ``results/``).
    """
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}")
    path = _zip_path(assignment, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(_members(assignment, visibility).items()):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # the same files give the same zip
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if name in EXECUTABLE else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            archive.writestr(info, data)
    tmp.replace(path)
    return path


def _zip_path(assignment: str, out: Path | None) -> Path:
    out = out or Path("results")
    return out if out.suffix == ".zip" else out / f"{assignment}-gradescope.zip"


def _members(assignment: str, visibility: str) -> dict[str, bytes]:
    """{name in the zip: content}: the package, the releases, the install files and the two Gradescope scripts."""
    members = {name: (REPO / name).read_bytes() for name in INSTALL_FILES}
    for file in _files(REPO / "autograder"):
        members[file.relative_to(REPO).as_posix()] = file.read_bytes()
    for notebook in sorted((REPO / "assignments").glob("*/*.ipynb")):
        members[notebook.relative_to(REPO).as_posix()] = notebook.read_bytes()
    members["setup.sh"] = (FILES / "setup.sh").read_bytes()
    script = (FILES / "run_autograder").read_text()
    members["run_autograder"] = (script.replace("@ASSIGNMENT@", assignment)
                                 .replace("@VISIBILITY@", visibility).encode())
    return members


def _files(folder: Path) -> list[Path]:
    """Every file below ``folder`` but caches and compiled files."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not SKIPPED_PARTS & set(p.parts)
                  and p.suffix not in (".pyc", ".pyo"))
