"""The bundled example submissions grade as their names say (they are the README's main job)."""

from __future__ import annotations

import pytest

from autograder.runner import grade
from tests.variants import REPO, by_name

pytestmark = pytest.mark.a1_attention
EXAMPLES = REPO / "examples" / "submissions"


def graded(server, name):
    return grade(EXAMPLES / name / "a1_attention", server=server)


@pytest.mark.parametrize("name", ["perfect", "other_style"])
def test_correct_examples_get_full_marks(server, name):
    report = graded(server, name)
    assert report.score == report.max_score, [(t.name, t.output) for t in report.tests if not t.passed]


def test_untouched_release_gets_zero(server):
    report = graded(server, "untouched_release")
    assert report.score == 0 and {t.output for t in report.tests} == {"not implemented yet"}


def test_partly_wrong_gets_partial_credit_naming_its_bugs(server):
    report = graded(server, "partly_wrong")
    tests = by_name(report)
    assert 0 < report.score < report.max_score
    assert "1/d_k instead of 1/sqrt(d_k)" in tests["attention_matches_reference"].output
    assert "Subtract the maximum" in tests["softmax_is_stable_for_large_inputs"].output
    assert tests["split_heads_layout"].passed and not tests["merge_heads_inverts_split"].passed


def test_broken_notebook_gets_a_diagnosis_and_zero(server):
    report = graded(server, "broken_json")
    assert report.score == 0 and any("not valid notebook JSON" in d for d in report.diagnostics)


def test_hostile_example_gets_no_credit_for_what_it_fakes(server):
    report = graded(server, "hostile")
    by_exercise = {}
    for t in report.tests:
        by_exercise.setdefault(t.exercise, []).append(t)
    assert all(t.score == 0 for t in by_exercise["scaled_dot_product_attention"])
    assert all(t.score == 0 for t in by_exercise["merge_heads"])
    assert not by_name(report)["softmax_matches_reference"].passed
    # Its module-level patches of torch run for every exercise and reach torch.testing, outside every allowlist of
    # the usage policy (issue 8): split_heads, correct on its own, loses its points too, and the report says why.
    assert all(t.score == 0 and "forbidden use: torch.testing" in t.output for t in by_exercise["split_heads"])
    assert any("assigns to torch.allclose" in note for note in report.review)
