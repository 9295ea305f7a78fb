"""Grade the a5_transformer_lm catalog (tests/catalog/a5_transformer_lm.py) with the hidden suite.

Mutants must be caught, with feedback naming the bug; other correct styles must get full
marks; cheats must get the outcome each one's ``check`` states.

To keep this module fast, a mutant is graded on the tests of the exercise it changes (it names
no others), and an alternative on every test that runs its code (``RUNS``); the other exercises
are the reference solution. Cheats are graded on the whole suite: their checks state the outcome
of every test.
"""

from __future__ import annotations

import pytest

from autograder.runner import GradeReport
from autograder.suites import load_suite
from tests.catalog.a5_transformer_lm import ALTERNATIVES, CHEATS, EXERCISES, MUTANTS
from tests.catalog_tests import expect_caught
from tests.variants import Cheat, Variant, failures

pytestmark = pytest.mark.a5_transformer_lm

ASSIGNMENT = "a5_transformer_lm"
SUITE = load_suite(ASSIGNMENT)
HIDDEN_TESTS = {t.name: t.exercise for t in SUITE.tests}
# Whose tests run an exercise's code: generate's tests also run TransformerLM, train_step's run lm_loss.
RUNS = {"TransformerLM": {"TransformerLM", "generate"}, "lm_loss": {"lm_loss", "train_step"},
        "train_step": {"train_step"}, "generate": {"generate"}}


def grade(grade_cells, variant: Variant, monkeypatch=None, exercises=None) -> GradeReport:
    kwargs = {"time_limit": variant.time_limit} if variant.time_limit else {}
    if exercises is not None:  # only these exercises' tests
        kwargs["exercises"] = exercises
    report = grade_cells(ASSIGNMENT, variant.cells, **kwargs)
    assert report.tests, f"the grader returned no test results; diagnostics: {report.diagnostics}"
    return report



# --- the catalog itself -------------------------------------------------------------------

def test_catalog_is_well_formed():
    variants = MUTANTS + ALTERNATIVES + CHEATS
    names = [v.name for v in variants]
    assert len(names) == len(set(names)), "variant names must be unique"
    assert len(MUTANTS) >= 30 and len(ALTERNATIVES) >= 5 and len(CHEATS) >= 6
    for v in variants:
        assert v.cells and set(v.cells) <= set(EXERCISES), \
            f"{v.name} replaces unknown cells {set(v.cells) - set(EXERCISES)}"
    for m in MUTANTS:
        assert m.fails and m.says, f"mutant {m.name} must say which tests fail and what they say"
        unknown = set(m.fails) - set(HIDDEN_TESTS)
        assert not unknown, f"mutant {m.name} names tests the suite does not have: {sorted(unknown)}"
        outside = {name for name in m.fails if HIDDEN_TESTS[name] not in m.cells}
        assert not outside, f"mutant {m.name} names tests of exercises it does not change: {sorted(outside)}"
    for c in CHEATS:
        assert isinstance(c, Cheat) and callable(c.check), f"cheat {c.name} needs a check(report)"


def test_reference_solution_gets_full_marks(grade_cells):
    report = grade(grade_cells, Variant("reference", {}))
    assert report.score == report.max_score, f"the reference solution lost points:\n{failures(report)}"


# --- mutants, alternatives, cheats ----------------------------------------------------------

@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda v: v.name)
def test_mutant_is_caught_and_named(grade_cells, monkeypatch, mutant):
    expect_caught(grade(grade_cells, mutant, monkeypatch, exercises=set(mutant.cells)), mutant)


@pytest.mark.parametrize("alternative", ALTERNATIVES, ids=lambda v: v.name)
def test_alternative_gets_full_marks(grade_cells, monkeypatch, alternative):
    report = grade(grade_cells, alternative, monkeypatch, exercises=set().union(*(RUNS[e] for e in alternative.cells)))
    lost = [t for t in report.tests if not t.passed]
    assert not lost, \
        f"{alternative.name} is correct but lost points ({report.score:g}/{report.max_score:g}):\n{failures(report)}"


@pytest.mark.parametrize("cheat", CHEATS, ids=lambda v: v.name)
def test_cheat_gets_the_expected_outcome(grade_cells, cheat):
    report = grade(grade_cells, cheat)  # the grader finished and reported: the cheat did not take it down
    assert report.score < report.max_score, f"{cheat.name} got full marks"
    cheat.check(report)


# --- one bug costs the points of its own exercise only ----------------------------------------

MUTANT = {m.name: m for m in MUTANTS}
CONTAINED = [
    # train_step is judged with the student's own (wrong) lm_loss; generate never needs lm_loss
    ("loss_target_not_shifted", ("TransformerLM", "train_step", "generate")),
    # generate's context check runs on any working TransformerLM, causal or not
    ("lm_blocks_called_without_the_mask", ("lm_loss", "train_step", "generate")),
    # a TransformerLM that crashes at T = max_len: generate skips its TransformerLM part
    ("lm_positions_indexed_from_1", ("lm_loss", "train_step", "generate")),
]


@pytest.mark.parametrize("name, intact", CONTAINED, ids=[name for name, _ in CONTAINED])
def test_a_bug_costs_only_its_own_exercise(grade_cells, name, intact):
    report = grade(grade_cells, MUTANT[name])
    lost = [t for t in report.tests if t.exercise in intact and not t.passed]
    assert not lost, f"{name} should cost points in {sorted(set(MUTANT[name].cells))} only:\n{failures(report)}"
