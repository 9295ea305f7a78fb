"""Catalogs of variants of each assignment's solution: mutants (plausible bugs), alternatives (other correct styles)
and cheats; plus the catalogs of attacks on the grader. ``CATALOGS``: one entry per registered assignment."""

from tests.catalog import (
    a1_attention,
    a2_masking,
    a3_ffn_positions,
    a4_residual_norm,
    a5_transformer_lm,
    a6_training_stability,
    a7_fast_weights,
)

CATALOGS = {module.__name__.rpartition(".")[2]: module
            for module in (a1_attention, a2_masking, a3_ffn_positions, a4_residual_norm, a5_transformer_lm,
                           a6_training_stability, a7_fast_weights)}
