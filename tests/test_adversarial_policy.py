"""The usage policy against routes around it (tests/catalog/adversarial_policy.py), and the policy's own
promises: readable per-exercise allowlists that keep COURSE.md's forbidden APIs out and every reference
solution and catalog alternative in."""

from __future__ import annotations

import importlib

import pytest

from autograder import policy, release
from autograder.notebook import read_submission
from autograder.suites import SUITES, load_suite
from tests.catalog.adversarial_policy import CASES
from tests.variants import write_variant

pytestmark = pytest.mark.engine

# COURSE.md's "Forbidden" lists, as attribute names.
COURSE_FORBIDDEN = {
    ("a1_attention", "softmax"): ("softmax", "log_softmax"),
    ("a1_attention", None): ("scaled_dot_product_attention", "MultiheadAttention", "multi_head_attention_forward"),
    ("a2_masking", None): ("scaled_dot_product_attention", "MultiheadAttention", "multi_head_attention_forward"),
    ("a4_residual_norm", "LayerNorm"): ("LayerNorm", "layer_norm", "group_norm"),
    ("a4_residual_norm", "RMSNorm"): ("RMSNorm", "rms_norm"),
    ("a7_fast_weights", None): ("softmax", "scaled_dot_product_attention", "MultiheadAttention",
                                "multi_head_attention_forward", "TransformerEncoderLayer"),
}


def test_catalog_is_well_formed():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)) and len(CASES) >= 15
    assert {case.assignment for case in CASES} >= {"a1_attention", "a2_masking", "a4_residual_norm"}
    for case in CASES:
        assert callable(case.check) and set(case.cells) <= set(load_suite(case.assignment).exercises), case.name


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_route_gets_the_stated_outcome(grade_cells, case):
    report = grade_cells(case.assignment, case.cells, **case.options)
    assert report.tests, f"the grader returned no test results; diagnostics: {report.diagnostics}"
    case.check(report)


def test_every_exercise_has_a_policy_and_a_description():
    for assignment in SUITES:
        assert list(policy.POLICIES[assignment]) == load_suite(assignment).exercises, assignment
        assert release.load_release(assignment).notebook == load_suite(assignment).notebook
        for exercise in load_suite(assignment).exercises:
            text = policy.describe(assignment, exercise)
            assert text.startswith(f"{exercise} may use: ") and "Nothing else from torch" in text


@pytest.mark.parametrize("key", COURSE_FORBIDDEN, ids=lambda k: f"{k[0]}-{k[1] or 'all'}")
def test_course_forbidden_apis_are_outside_the_allowlists(key):
    assignment, only = key
    for exercise in [only] if only else load_suite(assignment).exercises:
        allowed = policy.policy_for(assignment, exercise).allowed
        assert not allowed & set(COURSE_FORBIDDEN[key]), (exercise, allowed & set(COURSE_FORBIDDEN[key]))


def test_a1_forbids_the_builtin_softmax_in_every_exercise():
    """a1's notebook says: do not use torch.softmax in your code (helpers included)."""
    for exercise in load_suite("a1_attention").exercises:
        assert not policy.policy_for("a1_attention", exercise).allowed & set(policy.SOFTMAX), exercise


@pytest.mark.parametrize("assignment", list(SUITES))
def test_reference_and_alternatives_are_inside_the_allowlists(assignment, tmp_path):
    catalog = importlib.import_module(f"tests.catalog.{assignment}")
    for variant in [None, *catalog.ALTERNATIVES]:
        cells = variant.cells if variant else {}
        program = read_submission(write_variant(assignment, cells, tmp_path)).program()
        result = policy.scan(assignment, program)
        found = {e: [f.what for f in result.forbidden[e] + result.review[e]] for e in result.forbidden}
        assert not any(found.values()), f"{variant.name if variant else 'reference'}: {found}"


IMPORTS = {"index": 1, "grade_id": None,
           "source": "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"}


def test_the_scan_names_the_cell_line_and_code():
    source = "def softmax(x, dim=-1):\n    return F.softmax(x, dim)\n"
    program = [IMPORTS, {"index": 7, "grade_id": "softmax", "source": source}]
    message = policy.scan("a1_attention", program).forbidden_message("softmax")
    assert "cell 7, line 2: `return F.softmax(x, dim)`" in message
    assert "F.softmax (torch.nn.functional.softmax), a built-in softmax" in message
    assert policy.describe("a1_attention", "softmax") in message


def test_the_students_own_attribute_names_are_not_torch_api():
    source = ("class Head(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.normalize = nn.Linear(2, 2)\n\n"
              "    def forward(self, x):\n        return self.normalize(x)\n\n\n"
              "class MultiHeadAttention(Head):\n    pass\n")
    result = policy.scan("a1_attention", [IMPORTS, {"index": 2, "grade_id": "MultiHeadAttention", "source": source}])
    assert not result.forbidden["MultiHeadAttention"] and not result.review["MultiHeadAttention"]
    # but the same name on torch itself is torch's
    torch_use = "def merge_heads(x):\n    return F.normalize(x)\n"
    result = policy.scan("a1_attention", [IMPORTS, {"index": 2, "grade_id": "merge_heads", "source": torch_use}])
    assert result.forbidden["merge_heads"]


def test_given_cells_are_trusted_and_stop_the_closure():
    given = {"index": 2, "grade_id": "given_x", "given": True,
             "source": "def helper(x):\n    return torch.softmax(x, -1)\n"}
    student = {"index": 3, "grade_id": "softmax", "source": "def softmax(x, dim=-1):\n    return helper(x)\n"}
    result = policy.scan("a1_attention", [given, student])
    assert not result.forbidden["softmax"]
    result = policy.scan("a1_attention", [dict(given, given=False), student])
    assert result.forbidden["softmax"]


def test_check_notebook_prints_the_graders_verdicts(tmp_path, capsys):
    path = write_variant("a1_attention", {"softmax": "def softmax(x, dim=-1):\n    return x.softmax(dim)\n"}, tmp_path)
    policy.check_notebook(path)
    out = capsys.readouterr().out
    assert "softmax: forbidden use: .softmax (torch API), a built-in softmax" in out
    assert "split_heads: OK" in out


# --- where "needs review" shows up: the report, results.json, grades.csv, the class summary, the CLI ------------

def flagged_report(student: str, review: dict[str, list[str]]):
    from autograder.runner import GradeReport, TestResult

    report = GradeReport("a1_attention", f"submitted/{student}/a1_attention", "attention.ipynb",
                         tests=[TestResult("softmax_keeps_shape", "keeps shape", "softmax", "shapes", 0.0, 1.0,
                                           "needs review: import sys")])
    report.review_by_exercise = review
    report.review = [f"{e}: {n}" for e, notes in review.items() for n in notes]
    return report


def test_review_reaches_results_json_grades_csv_and_the_summary():
    from autograder.grades_csv import report_row
    from autograder.report import gradescope, render
    from autograder.summary import render_summary, summarise

    flagged = flagged_report("ada", {"softmax": ["needs review: import sys (cell 5, line 1: `import sys`)"]})
    clean = flagged_report("bob", {})
    assert gradescope(flagged)["extra_data"]["review"] == flagged.review_by_exercise
    assert "review: softmax: needs review: import sys" in render(flagged)
    assert report_row(flagged)["needs_review"] == "softmax" and report_row(clean)["needs_review"] == ""
    (summary,) = summarise([flagged, clean], [])
    assert summary.needs_review == 1 and "1/2 submissions need review" in render_summary([summary])


def test_strict_is_the_default_and_lenient_is_a_flag():
    from autograder.cli import parser

    assert parser().parse_args(["grade", "x.ipynb"]).strict is True
    assert parser().parse_args(["grade", "x.ipynb", "--lenient"]).strict is False
    with pytest.raises(SystemExit):
        parser().parse_args(["grade", "x.ipynb", "--lenient", "--strict"])
