"""A submission whose every exercise ignores its input (zeros, constants, all-True masks of the right shape)
earns at most the shapes group's points, and at most 20% of the assignment: property and hygiene checks
(equivariance, "leaves its input unmodified", "deterministic") hold for such code too, so they count only
when the exercise's result depended on its input (tests/catalog/do_nothing.py)."""

from __future__ import annotations

import pytest
import torch

from autograder.liveness import CallLog
from autograder.suites import load_suite
from tests.catalog.do_nothing import VARIANTS, cells
from tests.variants import failures

pytestmark = pytest.mark.engine

GATED = ("properties", "hygiene")


@pytest.mark.parametrize("assignment, kind, plan", VARIANTS, ids=[f"{a}-{k}" for a, k, _ in VARIANTS])
def test_do_nothing_earns_at_most_the_shape_points(grade_cells, assignment, kind, plan):
    report = grade_cells(assignment, cells(assignment, plan))
    shape_points = sum(t.points for t in load_suite(assignment).tests if t.group == "shapes")
    assert report.score <= shape_points, (
        f"{assignment} ({kind}) scored {report.score:g} > its shapes points {shape_points:g}:\n{failures(report)}")
    assert report.score <= 0.2 * report.max_score, f"{assignment} ({kind}) scored {report.score:g}/{report.max_score:g}"
    credited = [t.name for t in report.tests if t.group in GATED and t.score > 0]
    assert not credited, f"{assignment} ({kind}): property/hygiene points for code that ignores its input: {credited}"
    withheld = [t for t in report.tests if t.group in GATED and t.output.startswith("no points: ")]
    assert withheld, "no property or hygiene check passed, so none was withheld: the case tests nothing"
    for t in withheld:
        assert "whatever its input" in t.output and "ignores its input" in t.output, t.output


# --- the rule itself, on recorded calls (no worker) -------------------------------------------

def _log(function, inputs) -> CallLog:
    log = CallLog()
    for x in inputs:
        log.record("f", "f", (x,), {}, function(x))
    return log


def _inputs():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3, 4, generator=g, dtype=dtype) for dtype in (torch.float32, torch.float64, torch.float64)]


def test_code_that_uses_its_input_is_live():
    assert _log(lambda x: x.softmax(-1), _inputs()).why_not_live("f") is None
    assert _log(lambda x: x.sum(), _inputs()).why_not_live("f") is None  # a scalar that changes with the input
    assert _log(lambda x: x.sum().item(), _inputs()).why_not_live("f") is None  # a Python float (train_step)


def test_zeros_and_constants_are_not_live():
    assert _log(torch.zeros_like, _inputs()).why_not_live("f") == "returned all zeros whatever its input"
    assert _log(lambda x: torch.ones_like(x, dtype=torch.bool), _inputs()).why_not_live("f") == \
        "returned all True whatever its input"
    assert _log(lambda x: 0.01, _inputs()).why_not_live("f") == "returned the constant 0.01 whatever its input"
    uniform = [torch.full((n, n), 1.0 / n) for n in (2, 3)]  # one value per call, another for each shape
    assert _log(lambda x: x, uniform).why_not_live("f") == \
        "returned tensors filled with a single value whatever its input"


def test_a_fixed_pattern_is_not_live_across_dtypes():
    pattern = lambda x: torch.arange(x.numel(), dtype=x.dtype).reshape(x.shape).sin()  # noqa: E731
    assert _log(pattern, _inputs()).why_not_live("f") == "returned the same values whatever its input"


def test_no_evidence_either_way_counts_as_live():
    pattern = lambda x: torch.arange(x.numel(), dtype=x.dtype).reshape(x.shape).sin()  # noqa: E731
    one_call_per_shape = [torch.randn(n, 3) for n in (2, 3, 4)]
    assert _log(pattern, one_call_per_shape).why_not_live("f") is None
    assert CallLog().why_not_live("f") == "never returned a value the grader could read"
