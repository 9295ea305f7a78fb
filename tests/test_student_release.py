"""`student-release`: what students get holds the releases, lectures and the notebook check, never a solution."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autograder.cli import main
from autograder.student_release import PUBLIC
from autograder.suites import ORDER

pytestmark = pytest.mark.engine
NEVER = ("solutions/", "tests/", "autograder/suites/", "autograder/known_bugs/", "autograder/reference.py")


def test_the_whole_release_holds_no_solution_suite_or_test(tmp_path, capsys):
    out = tmp_path / "students"
    assert main(["student-release", str(out)]) == 0
    assert "left out: lectures/06_residual_stream.ipynb" in capsys.readouterr().out
    files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    assert not [f for f in files if f.startswith(NEVER)]
    assert sorted(f for f in files if f.endswith(".py")) == sorted(f"autograder/{name}" for name in PUBLIC)
    assert {f.split("/")[1] for f in files if f.startswith("assignments/")} == set(ORDER)
    for path in out.rglob("*.ipynb"):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, path
        assert "from autograder import reference" not in text, path


def test_an_early_release_stops_at_its_assignment_and_its_check_runs_alone(tmp_path):
    out = tmp_path / "students"
    assert main(["student-release", str(out), "--through", "a2_masking"]) == 0
    assert sorted(p.name for p in (out / "assignments").iterdir()) == ["a1_attention", "a2_masking"]
    assert sorted(p.name for p in (out / "lectures").glob("*.ipynb")) == ["01_qkv_attention.ipynb", "02_masking.ipynb"]
    # The "Before you submit" cell, in a fresh interpreter that sees only the student release (-I: no PYTHONPATH).
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from autograder.policy import check_notebook; "
            "check_notebook('masking.ipynb'); print(sorted({m.__file__ for n, m in sys.modules.items() "
            "if n.startswith('autograder')}))")
    run = subprocess.run([sys.executable, "-I", "-c", code, str(out)], cwd=out / "assignments" / "a2_masking",
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "causal_mask: OK" in run.stdout and str(out / "autograder" / "policy.py") in run.stdout


def test_a_folder_in_use_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["student-release", str(tmp_path)]) == 2
    assert "is not empty" in capsys.readouterr().err
