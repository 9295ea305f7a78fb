"""gpt2_init_: GPT-2's initialisation, with the residual projections scaled by 1/sqrt(2 * n_layers).

Radford et al., "Language Models are Unsupervised Multitask Learners" (2019, §2.3: "We scale the weights of residual
layers at initialization by a factor of 1/sqrt(N) where N is the number of residual layers"); nanoGPT's
``_init_weights`` (N(0, 0.02**2) for Linear and Embedding weights, zero biases) and its ``c_proj.weight`` loop
(std 0.02 / sqrt(2 * n_layer)). The tests scramble every parameter of the notebook's given TransformerLM, call the
student's gpt2_init_ on it, and judge what it holds against ``reference.gpt2_init_spec``: exact values for norms and
biases, standard deviations for the weights.
"""

from __future__ import annotations

import math

import torch

from autograder import reference
from autograder.checks import fail
from autograder.hidden import hidden
from autograder.known_bugs.a6_training_stability import matching_init_bug
from autograder.session import RemoteModule
from autograder.suites.a6_training_stability.inputs import build_lm

# The standard deviation of n normal samples has a relative standard error of 1/sqrt(2n). A pooled group here holds
# at least 2 * 64 * 64 = 8192 samples (error 0.8%), one matrix at least 64 * 64 = 4096 (1.1%); 10% and 25% are 9 and
# 20 standard errors away, while every bug we know of is off by a factor of sqrt(2) or more.
POOLED_REL, SINGLE_REL = 0.10, 0.25
# The excess kurtosis of n normal samples is 0 with a standard error of sqrt(24 / n): at most 0.054 for a pooled
# group. 0.5 is 9 standard errors away, while a uniform draw of the right std (-1.2) or +-std patterns (-2) are not.
KURTOSIS_TOL = 0.5


def initialised(ctx, n_layers: int, **kwargs):
    """The given TransformerLM (d_model 64), scrambled, after the student's gpt2_init_(model, n_layers)."""
    model, shapes = build_lm(ctx, 13, 64, 4, n_layers, 16, **kwargs)
    returned = ctx.call("gpt2_init_", model, n_layers)
    params = {name: value.tensor.to(torch.float64) for name, value in model.parameters.items()}
    return model, returned, params, shapes


def call(n_layers: int) -> str:
    return f"gpt2_init_(model, n_layers={n_layers})"


@hidden("gpt2_init_", points=1, group="shapes")
def test_init_keeps_parameters(ctx):
    """initialises in place: returns the model, keeps every parameter (the same tensors, shapes and dtypes), keeps
    tied weights tied"""
    model, shapes = build_lm(ctx, 13, 64, 4, 2, 16, tie_weights=True)
    before = ctx.builtin("parameter_ids", model)
    returned = ctx.call("gpt2_init_", model, 2)
    params = {name: value.tensor for name, value in model.parameters.items()}
    if not isinstance(returned, RemoteModule) or returned.id != model.id:
        fail(f"{call(2)} returned {getattr(returned, 'type_name', type(returned).__name__)}, expected the model itself",
             "Initialise in place and end with return model")
    got = {name: tuple(p.shape) for name, p in params.items()}
    if got != shapes:
        fail(f"after {call(2)} the model's parameters changed: {sorted(set(got) ^ set(shapes))[:4]}",
             "Initialise the existing parameters in place (nn.init.normal_(p, ...)); do not replace them")
    if not ctx.builtin("shares_parameter", model, "lm_head.weight", "tok_emb.weight"):
        fail(f"after {call(2)} lm_head.weight and tok_emb.weight are no longer one tensor",
             "Initialise in place (nn.init.normal_, nn.init.zeros_): assigning new Parameters unties tied weights")
    after = ctx.builtin("parameter_ids", model)
    replaced = sorted(name for name in before if after.get(name) != before[name])
    if replaced:
        fail(f"after {call(2)} the model holds new Parameter objects for {replaced[:4]}",
             "Initialise the existing parameters in place (nn.init.normal_(p, ...)); do not replace them: an "
             "optimizer built before the call would still update the old ones")


@hidden("gpt2_init_", points=2, group="numerics")
def test_init_norms_and_biases(ctx):
    """every LayerNorm weight is exactly 1, every LayerNorm and Linear bias exactly 0"""
    n_layers = 2
    _, _, params, shapes = initialised(ctx, n_layers)
    for name, (mean, std) in reference.gpt2_init_spec(shapes, n_layers).items():
        if std == 0 and not torch.all(params[name] == mean):
            wrong = params[name][params[name] != mean].flatten()[0].item()
            kind = "LayerNorm weight" if mean == 1 else ("LayerNorm bias" if "norm" in name else "Linear bias")
            fail(f"after {call(n_layers)}, {name} holds {wrong:.4g}, expected every entry to be exactly {mean:g}",
                 f"Set every {kind} to {mean:g}: "
                 + ("nn.init.ones_(module.weight) for each LayerNorm" if mean == 1 else "nn.init.zeros_(module.bias)"),
                 named=True)


def stats(params: dict, names) -> tuple[float, float]:
    values = torch.cat([params[n].flatten() for n in names])
    return values.std().item(), values.mean().item()


def excess_kurtosis(params: dict, names) -> float:
    """Of all the entries, each divided by its own matrix's std (the two groups of std then pool as one normal)."""
    values = torch.cat([(params[n] / params[n].std()).flatten() for n in names])
    z = (values - values.mean()) / values.std()
    return (z ** 4).mean().item() - 3.0


def expect_normal_draws(params: dict, spec: dict, n_layers: int) -> None:
    """The weights are fresh normal draws: their excess kurtosis is near 0 (not uniform, not a +-std pattern), and
    two layers' matrices of the same name differ (not a fixed tensor written with the right std)."""
    weights = [n for n, (_, std) in spec.items() if std > 0]
    kurtosis = excess_kurtosis(params, weights)
    if abs(kurtosis) > KURTOSIS_TOL:
        fail(f"after {call(n_layers)}, the weights have std-normalised excess kurtosis {kurtosis:.3g}, expected about "
             f"0 (normal draws; a uniform draw has -1.2)",
             "GPT-2 draws from a normal distribution: nn.init.normal_(weight, mean=0.0, std=...), not uniform_ or a "
             "fixed pattern", named=True)
    for name in weights:
        if name.startswith("blocks.0."):
            other = "blocks.1." + name.removeprefix("blocks.0.")
            if torch.equal(params[name], params[other]):
                fail(f"after {call(n_layers)}, {name} and {other} hold the same values",
                     "Draw every weight afresh from the random generator (nn.init.normal_), not a fixed tensor",
                     named=True)


@hidden("gpt2_init_", points=3, group="numerics")
def test_init_weight_std(ctx):
    """weights N(0, 0.02**2), the residual projections N(0, (0.02 / sqrt(2 * n_layers))**2), for 2 and 6 layers:
    normal draws (excess kurtosis near 0), different in every layer"""
    for n_layers in (2, 6):
        _, _, params, shapes = initialised(ctx, n_layers)
        spec = reference.gpt2_init_spec(shapes, n_layers)
        projections = [n for n in spec if n.endswith(reference.RESIDUAL_PROJECTIONS)]
        others = [n for n, (_, std) in spec.items() if std > 0 and n not in projections]
        other_std, other_mean = stats(params, others)
        projection_std, projection_mean = stats(params, projections)
        expect_normal_draws(params, spec, n_layers)
        want = 0.02 / math.sqrt(2 * n_layers)
        for what, got, expected, mean in (("the other Linear and Embedding weights", other_std, 0.02, other_mean),
                                          ("the residual projections (attn.out_proj, ffn.down)", projection_std,
                                           want, projection_mean)):
            if abs(got - expected) > POOLED_REL * expected or abs(mean) > 0.1 * expected:
                bug = matching_init_bug(other_std, projection_std, n_layers)
                fail(f"after {call(n_layers)}, {what} have mean {mean:.3g} and std {got:.4g}, expected mean 0 and "
                     f"std {expected:.4g} (other weights: std {other_std:.4g}, residual projections: "
                     f"{projection_std:.4g})",
                     f"Your result matches {bug}" if bug else
                     "nn.init.normal_(weight, mean=0.0, std=0.02) for every nn.Linear and nn.Embedding, then "
                     "std=0.02 / math.sqrt(2 * n_layers) for attn.out_proj.weight and ffn.down.weight",
                     named=bool(bug))


@hidden("gpt2_init_", points=2, group="numerics")
def test_init_scales_the_residual_projections_only(ctx):
    """each weight matrix on its own: only attn.out_proj and ffn.down of every block are scaled down"""
    n_layers = 4
    _, _, params, shapes = initialised(ctx, n_layers)
    for name, (_, std) in sorted(reference.gpt2_init_spec(shapes, n_layers).items()):
        if std == 0:
            continue
        got = params[name].std().item()
        if abs(got - std) > SINGLE_REL * std:
            projection = name.endswith(reference.RESIDUAL_PROJECTIONS)
            fail(f"after {call(n_layers)}, {name} has std {got:.4g}, expected {std:.4g}",
                 ("Every residual projection, attn.out_proj.weight and ffn.down.weight in every block, gets std "
                  "0.02 / sqrt(2 * n_layers)") if projection else
                 (f"{name} is not a residual projection: it keeps std 0.02. Only the parameters whose names end in "
                  "attn.out_proj.weight or ffn.down.weight are scaled"), named=True)
