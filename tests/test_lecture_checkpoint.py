"""The checkpoint of lectures/06_residual_stream.ipynb is the one scripts/train_lecture_checkpoint.py makes.

Cheap checks (no training): the file loads with weights_only=True, stays small, records the script's
configuration, holds every model with the reference's parameter names and shapes, and its recorded
held-out losses are what the script's float64 forward gives on the stored weights.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from autograder import reference as R
from tests.variants import REPO

pytestmark = pytest.mark.notebooks

SCRIPT = REPO / "scripts" / "train_lecture_checkpoint.py"
MAX_BYTES = 3_000_000  # every checkpoint the lectures ship, together


def load_script():
    spec = importlib.util.spec_from_file_location("train_lecture_checkpoint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture(scope="module")
def checkpoint(script):
    return torch.load(script.OUT, weights_only=True)


def test_checkpoints_are_small():
    total = sum(p.stat().st_size for p in (REPO / "lectures" / "checkpoints").iterdir())
    assert total <= MAX_BYTES, f"lectures/checkpoints/ holds {total:,} bytes, more than {MAX_BYTES:,}"


def test_checkpoint_records_the_scripts_configuration(script, checkpoint):
    assert checkpoint["config"] == script.CONFIG
    assert checkpoint["variants"] == script.VARIANTS
    assert checkpoint["training"] == script.TRAINING
    assert checkpoint["seeds"] == list(script.SEEDS)
    assert checkpoint["eval"] == script.EVAL
    _, chars, _, _ = script.load_corpus()
    assert checkpoint["chars"] == chars, "the vocabulary is not the corpus's characters"


def test_every_model_has_the_reference_parameters(script, checkpoint):
    assert set(checkpoint["models"]) == set(script.VARIANTS)
    for variant, states in checkpoint["models"].items():
        spec = script.VARIANTS[variant]
        d_model, max_len = script.CONFIG["d_model"], script.CONFIG["max_len"]
        shapes = R.lm_shapes(len(checkpoint["chars"]), d_model, spec["n_layers"], max_len)
        assert len(states) == spec["stored"] and len(checkpoint["val_loss"][variant]) == len(script.SEEDS), variant
        for state in states:
            assert {name: tuple(w.shape) for name, w in state.items()} == shapes
            assert all(w.dtype == torch.float16 and w.isfinite().all() for w in state.values())


def test_recorded_held_out_losses_are_reproduced(script, checkpoint):
    """Seed 0 of every variant: its recorded loss is the script's float64 forward on its stored weights."""
    _, _, _, held_out = script.load_corpus()
    tokens = script.eval_windows(held_out)
    for variant, spec in script.VARIANTS.items():
        logits = script.lm_forward(checkpoint["models"][variant][0], tokens, residual=spec["residual"])
        assert R.lm_loss(logits, tokens).item() == pytest.approx(checkpoint["val_loss"][variant][0], abs=1e-9), variant
