"""The hidden suites: one package of pytest modules per assignment. Never shipped in the student release.

``ORDER`` is the course's registry: an assignment is added here and nowhere else (``docs/authoring.md``).
This module imports neither torch nor pytest, so ``layout.py`` and the exports can read the names cheaply.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["a1_attention", "a2_masking", "a3_ffn_positions", "a4_residual_norm", "a5_transformer_lm",
         "a6_training_stability", "a7_fast_weights"]
SUITES = {name: f"autograder.suites.{name}" for name in ORDER}


def suite_dir(assignment: str) -> Path:
    return HERE / assignment


@cache
def load_suite(assignment: str):
    """The ``Assignment`` of a registered suite; an ImportError names a registered suite whose package is missing."""
    if assignment not in SUITES:
        raise KeyError(f"unknown assignment {assignment!r}; registered: {', '.join(ORDER)}")
    module = importlib.import_module(SUITES[assignment])
    spec = getattr(module, "ASSIGNMENT", None)
    if spec is None or spec.name != assignment:
        raise ImportError(f"{SUITES[assignment]} must define ASSIGNMENT = Assignment({assignment!r}, ...)")
    return spec
