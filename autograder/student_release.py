"""``student-release OUT [--through ASSIGNMENT]``: the folder to hand students, and nothing else.

What students get: the releases ``assignments/<assignment>/`` in course order (``ORDER``) up to and including
``ASSIGNMENT``, the lectures that come before them (lecture ``NN`` before the ``NN``-th assignment, with their
figures), and the modules the releases' "Before you submit" cell imports (``autograder.policy.check_notebook``,
which needs only ``parsing``, ``notebook`` and ``release``; none holds a hidden test or a solution).

Never: ``solutions/``, ``tests/``, ``autograder/suites/``, ``autograder/reference.py`` (float64 solutions of
exercises of every assignment, a7's included) and ``autograder/known_bugs/`` (built on the reference). The
visible checks import ``known_bugs`` only to name a bug and print their plain messages without it. A lecture
whose code imports the course package (06 imports the reference and reads ``solutions/``) is left out, and the
command says so.

Release a later assignment only after the due dates of the assignments its read-only cells solve (README,
"What an instructor should still do").
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from autograder.suites import ORDER

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ["__init__.py", "parsing.py", "notebook.py", "release.py", "policy.py"]
IGNORE = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")


def student_release(out: Path, through: str | None = None) -> list[str]:
    """Write the student release into ``out`` (new or empty); returns what to print."""
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: give a new folder")
    assignments = ORDER[: ORDER.index(through) + 1] if through else list(ORDER)
    for assignment in assignments:
        shutil.copytree(ROOT / "assignments" / assignment, out / "assignments" / assignment, ignore=IGNORE)
    lines = [f"assignments: {', '.join(assignments)}"]
    lectures, skipped = _lectures(len(assignments))
    for lecture in lectures:
        shutil.copy2(lecture, _made(out / "lectures") / lecture.name)
        for figure in sorted((ROOT / "lectures" / "figures").glob(f"{lecture.name[:3]}*")):
            shutil.copy2(figure, _made(out / "lectures" / "figures") / figure.name)
    lines.append(f"lectures: {', '.join(p.name for p in lectures) or 'none'}")
    lines += [f"left out: lectures/{p.name} (its code imports the course package, which would hand out solutions)"
              for p in skipped]
    for name in PUBLIC:
        shutil.copy2(ROOT / "autograder" / name, _made(out / "autograder") / name)
    lines.append(f"autograder/: {', '.join(PUBLIC)} (the 'Before you submit' check)")
    return lines


def _lectures(n_assignments: int) -> tuple[list[Path], list[Path]]:
    """Lectures numbered up to ``n_assignments`` (lecture NN comes before the NN-th assignment): (safe, skipped)."""
    safe: list[Path] = []
    skipped: list[Path] = []
    for path in sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb")):
        if int(path.name[:2]) > n_assignments:
            continue
        (skipped if _imports_course(path) else safe).append(path)
    return safe, skipped


def _imports_course(notebook: Path) -> bool:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return re.search(r"^\s*(from|import)\s+autograder\b", code, re.MULTILINE) is not None


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
