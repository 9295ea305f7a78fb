"""Submissions that do nothing: every exercise returns zeros, constants or all-True masks of the right shape.

Each is the reference solution with the body of every exercise function (and every exercise module's
``forward``) replaced, so constructors, parameters and given cells stay as they are: what is left is
exactly the code that ignores its input. ``tests/test_do_nothing.py`` grades them: property and hygiene
checks hold for such code too, so they must earn nothing; only the shapes group may.
"""

from __future__ import annotations

import re

import nbformat

from autograder.suites import load_suite
from tests.variants import solution_path

# Per assignment: {exercise cell: {function or method in it: its do-nothing body}}.
ZEROS = {
    "a1_attention": {
        "softmax": {"softmax": "return torch.zeros_like(x)"},
        "scaled_dot_product_attention": {"scaled_dot_product_attention": (
            "out = q.new_zeros(*q.shape[:-1], v.shape[-1])\n"
            "return out, q.new_zeros(*q.shape[:-1], k.shape[-2])")},
        "split_heads": {"split_heads": "B, T, D = x.shape\nreturn x.new_zeros(B, n_heads, T, D // n_heads)"},
        "merge_heads": {"merge_heads": "B, H, T, d = x.shape\nreturn x.new_zeros(B, T, H * d)"},
        "MultiHeadAttention": {"forward": "return torch.zeros_like(x)"},
    },
    "a2_masking": {
        "causal_mask": {"causal_mask": (
            "T_k = T_q if T_k is None else T_k\nreturn torch.ones(T_q, T_k, dtype=torch.bool, device=device)")},
        "padding_mask": {"padding_mask": (
            "return torch.ones(lengths.shape[0], 1, 1, T, dtype=torch.bool, device=lengths.device)")},
        "masked_softmax": {"masked_softmax": "return torch.zeros_like(scores)"},
        "scaled_dot_product_attention": {"scaled_dot_product_attention": (
            "out = q.new_zeros(*q.shape[:-1], v.shape[-1])\n"
            "return out, q.new_zeros(*q.shape[:-1], k.shape[-2])")},
        "MultiHeadAttention": {"forward": "return torch.zeros_like(x)"},
    },
    "a3_ffn_positions": {
        "FeedForward": {"forward": "return torch.zeros_like(x)"},
        "SwiGLU": {"forward": "return torch.zeros_like(x)"},
        "sinusoidal_positions": {"sinusoidal_positions": "return torch.zeros(T, d_model)"},
    },
    "a4_residual_norm": {
        "LayerNorm": {"forward": "return torch.zeros_like(x)"},
        "RMSNorm": {"forward": "return torch.zeros_like(x)"},
        "TransformerBlock": {"forward": "return torch.zeros_like(x)"},
    },
    "a5_transformer_lm": {
        "TransformerLM": {"forward": (
            "V, weight = self.tok_emb.num_embeddings, self.tok_emb.weight\n"
            "return torch.zeros(*tokens.shape, V, dtype=weight.dtype, device=tokens.device)")},
        "lm_loss": {"lm_loss": "return logits.new_zeros(())"},
        "train_step": {"train_step": "return 0.0"},
        "generate": {"generate": (
            "B, T0 = prompt.shape\n"
            "return torch.zeros(B, T0 + max_new_tokens, dtype=torch.int64, device=prompt.device)")},
    },
    "a6_training_stability": {
        "lr_schedule": {"lr_schedule": "return 0.0"},
        "ReZeroBlock": {"forward": "return torch.zeros_like(x)"},
        "ResiDual": {"forward": "return torch.zeros_like(x), torch.zeros_like(dual)"},  # ResiDualBlock's forward
        "gpt2_init_": {"gpt2_init_": "return model"},
    },
}

ZEROS["a7_fast_weights"] = {
    "linear_attention": {"linear_attention": "return q.new_zeros(*q.shape[:-1], v.shape[-1])"},
    "recurrent_linear_attention": {"recurrent_linear_attention": (
        "S, z = q.new_zeros(*q.shape[:-2], q.shape[-1], v.shape[-1]), q.new_zeros(*q.shape[:-2], q.shape[-1])\n"
        "return q.new_zeros(*q.shape[:-1], v.shape[-1]), (S, z)")},
    "delta_rule": {"delta_rule": (
        "return q.new_zeros(*q.shape[:-1], v.shape[-1]), q.new_zeros(*q.shape[:-2], q.shape[-1], v.shape[-1])")},
    "forward_cached": {"forward_cached": (
        "B, T_new = tokens.shape\n"
        "T = T_new + (0 if cache is None else cache[0][0].shape[-2])\n"
        "w = model.lm_head.weight\n"
        "H = model.blocks[0].attn.n_heads\n"
        "kv = w.new_zeros(B, H, T, w.shape[1] // H)\n"
        "return w.new_zeros(B, T_new, w.shape[0]), [(kv, kv) for _ in model.blocks]")},
    "generate_cached": {"generate_cached": (
        "B, T0 = prompt.shape\n"
        "return torch.zeros(B, T0 + max_new_tokens, dtype=torch.int64, device=prompt.device)")},
}

# Constants that are not zero, and a softmax that is uniform (rows sum to 1, whatever the input).
CONSTANTS = {
    "a1_attention": {
        "softmax": {"softmax": "return torch.full_like(x, 1.0 / x.shape[dim])"},
        "scaled_dot_product_attention": {"scaled_dot_product_attention": (
            "weights = q.new_full((*q.shape[:-1], k.shape[-2]), 1.0 / k.shape[-2])\n"
            "return q.new_ones(*q.shape[:-1], v.shape[-1]), weights")},
        "split_heads": {"split_heads": "B, T, D = x.shape\nreturn x.new_ones(B, n_heads, T, D // n_heads)"},
        "merge_heads": {"merge_heads": "B, H, T, d = x.shape\nreturn x.new_ones(B, T, H * d)"},
        "MultiHeadAttention": {"forward": "return torch.ones_like(x)"},
    },
    "a4_residual_norm": {
        "LayerNorm": {"forward": "return torch.full_like(x, 0.5)"},
        "RMSNorm": {"forward": "return torch.ones_like(x)"},
        "TransformerBlock": {"forward": "return torch.full_like(x, 2.0)"},
    },
}

# The same fixed, non-constant pattern for every input of a shape (float32 or float64): only comparing calls
# with different inputs tells it from real work.
def _pattern(shape: str, like: str = "x") -> str:
    # % and / only: what every exercise's usage policy allows (a .sin() would be a forbidden use, not do-nothing code)
    return f"(torch.arange(math.prod({shape}), dtype={like}.dtype, device={like}.device).reshape({shape}) % 7) / 7"


FIXED = {
    "a1_attention": {
        "softmax": {"softmax": "return " + _pattern("x.shape")},
        "scaled_dot_product_attention": {"scaled_dot_product_attention": (
            "out_shape, weights_shape = (*q.shape[:-1], v.shape[-1]), (*q.shape[:-1], k.shape[-2])\n"
            f"return {_pattern('out_shape', 'q')}, {_pattern('weights_shape', 'q')}")},
        "split_heads": {"split_heads": "B, T, D = x.shape\nreturn " + _pattern("(B, n_heads, T, D // n_heads)")},
        "merge_heads": {"merge_heads": "B, H, T, d = x.shape\nreturn " + _pattern("(B, T, H * d)")},
        "MultiHeadAttention": {"forward": "return " + _pattern("x.shape")},
    },
    "a4_residual_norm": {
        "LayerNorm": {"forward": "return " + _pattern("x.shape")},
        "RMSNorm": {"forward": "return " + _pattern("x.shape")},
        "TransformerBlock": {"forward": "return " + _pattern("x.shape")},
    },
}

SOLUTION_BODY = re.compile(r"(?P<indent>[ \t]*)### BEGIN SOLUTION\n.*?### END SOLUTION\n?", re.S)


def replace_bodies(source: str, bodies: dict[str, str]) -> str:
    """``source`` with the solution region of each named ``def`` replaced by its do-nothing body."""
    for name, body in bodies.items():
        start = source.index(f"def {name}(")
        match = SOLUTION_BODY.search(source, start)
        assert match, f"no solution region after def {name}("
        indent = match.group("indent")
        new = "".join(f"{indent}{line}\n" for line in body.splitlines())
        source = source[:match.start()] + new + source[match.end():]
    return source


def cells(assignment: str, plan: dict[str, dict[str, str]]) -> dict[str, str]:
    """The exercise cells of ``assignment``'s solution, each with its do-nothing bodies."""
    nb = nbformat.read(solution_path(assignment), as_version=4)
    sources = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells if c.cell_type == "code"}
    assert set(plan) == set(load_suite(assignment).exercises), f"plan for {assignment} must cover every exercise"
    return {exercise: replace_bodies(sources[exercise], bodies) for exercise, bodies in plan.items()}


VARIANTS = [(assignment, kind, plan) for kind, plans in (("zeros", ZEROS), ("constants", CONSTANTS), ("fixed", FIXED))
            for assignment, plan in plans.items()]
