"""Variants of the a6_training_stability solution: realistic bugs, other correct styles, and cheats.

Every entry replaces one or more exercise cells (by nbgrader grade_id) of
``solutions/a6_training_stability/training_stability.ipynb``; the rest of the notebook stays the reference
solution. ``tests/test_catalogs.py`` grades each variant:

- ``MUTANTS``: a student's plausible bug. The hidden tests in ``fails`` must fail, and the first of them must name
  the bug (its output contains ``says``, case-insensitive).
- ``ALTERNATIVES``: correct code in another style; must get full marks.
- ``CHEATS``: attempts to get credit without doing the work; each carries a ``check(report)``.
"""

from __future__ import annotations

import nbformat

from tests.variants import Cheat, Variant, by_name, expect_full_marks, expect_no_credit, solution_path, tests_of

EXERCISES = ("lr_schedule", "ReZeroBlock", "ResiDual", "gpt2_init_")
SOURCES = {c.metadata["nbgrader"]["grade_id"]: c.source
           for c in nbformat.read(solution_path("a6_training_stability"), as_version=4).cells
           if c.metadata.get("nbgrader", {}).get("grade_id") in EXERCISES}


def patch(exercise: str, *edits: tuple[str, str]) -> dict[str, str]:
    """The reference cell of ``exercise`` with each (old, new) applied once (a catalog typo fails loudly)."""
    source = SOURCES[exercise]
    for old, new in edits:
        assert source.count(old) == 1, f"expected exactly one {old!r} in the reference {exercise}"
        source = source.replace(old, new)
    return {exercise: source}


LR_WARM = "return max_lr * (step + 1) / warmup_steps"
LR_PROGRESS = "progress = (step - warmup_steps) / (total_steps - warmup_steps)"
LR_COSINE = "return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))"
LR_END = ("    if step >= total_steps:  # the end of the schedule, and every step after it\n"
          "        return float(min_lr)\n")

MUTANTS = [
    # lr_schedule
    Variant("lr_warmup_off_by_one", patch("lr_schedule", (LR_WARM, "return max_lr * step / warmup_steps")),
            fails=["schedule_matches_reference", "schedule_warmup_rises_linearly_to_max_lr"],
            says="warm-up off by one step"),
    Variant("lr_warmup_one_step_too_long",
            patch("lr_schedule", (LR_WARM, "return max_lr * (step + 1) / (warmup_steps + 1)")),
            fails=["schedule_matches_reference", "schedule_warmup_rises_linearly_to_max_lr"],
            says="warm-up of warmup_steps + 1 steps"),
    Variant("lr_cosine_over_total_steps_misses_min_lr",
            patch("lr_schedule", (LR_PROGRESS, "progress = (step - warmup_steps) / total_steps")),
            fails=["schedule_matches_reference", "schedule_matches_pytorch"], says="never reaches min_lr"),
    Variant("lr_cosine_down_to_zero",
            patch("lr_schedule", (LR_COSINE, "return 0.5 * max_lr * (1 + math.cos(math.pi * progress))")),
            fails=["schedule_matches_reference", "schedule_matches_pytorch"], says="cosine down to 0"),
    Variant("lr_cosine_rises_after_the_end",
            patch("lr_schedule", (LR_END, ""),
                  (LR_PROGRESS, "progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)")),
            fails=["schedule_ends_exactly_at_min_lr", "schedule_matches_reference"], says="must not rise again"),
    Variant("lr_linear_decay", patch("lr_schedule", (LR_COSINE, "return max_lr - (max_lr - min_lr) * progress")),
            fails=["schedule_matches_reference", "schedule_matches_pytorch"], says="linear decay"),
    # ReZeroBlock
    Variant("rezero_alpha_initialised_at_1", patch("ReZeroBlock", ("torch.zeros(1)", "torch.ones(1)")),
            fails=["rezero_is_identity_at_init"], says="alpha starts at 0"),
    Variant("rezero_keeps_a_layernorm", patch(
        "ReZeroBlock",
        ("        self.alpha = nn.Parameter",
         "        self.norm1, self.norm2 = LayerNorm(d_model), LayerNorm(d_model)\n        self.alpha = nn.Parameter"),
        ("self.dropout(self.attn(x, mask))", "self.dropout(self.attn(self.norm1(x), mask))"),
        ("self.dropout(self.ffn(x))", "self.dropout(self.ffn(self.norm2(x)))")),
            fails=["rezero_structure", "rezero_matches_reference"], says="LayerNorm"),
    Variant("rezero_alpha_on_attention_only",
            patch("ReZeroBlock",
                  ("return x + self.alpha * self.dropout(self.ffn(x))", "return x + self.dropout(self.ffn(x))")),
            fails=["rezero_matches_reference", "rezero_only_alpha_learns_at_init"], says="attention branch only"),
    Variant("rezero_parallel_branches", patch(
        "ReZeroBlock", ("        x = x + self.alpha * self.dropout(self.attn(x, mask))\n"
                        "        return x + self.alpha * self.dropout(self.ffn(x))",
                        "        return x + self.alpha * self.dropout(self.attn(x, mask)) + self.alpha * self.dropout("
                        "self.ffn(x))")),
            fails=["rezero_matches_reference"], says="parallel block"),
    Variant("rezero_one_alpha_per_sublayer", patch(
        "ReZeroBlock",
        ("self.alpha = nn.Parameter(torch.zeros(1))", "self.alpha_attn = nn.Parameter(torch.zeros(1))\n"
                                                      "        self.alpha_ffn = nn.Parameter(torch.zeros(1))"),
        ("x = x + self.alpha * self", "x = x + self.alpha_attn * self"),
        ("return x + self.alpha * self", "return x + self.alpha_ffn * self")),
            fails=["rezero_structure", "rezero_matches_reference"], says="one scalar per layer"),
    # ResiDual
    Variant("residual_dual_normalised_per_layer", patch(
        "ResiDual", ("            x, dual = block(x, dual, mask)\n        return x + self.norm_dual(dual)",
                     "            x, dual = block(x, dual, mask)\n            dual = self.norm_dual(dual)\n"
                     "        return x + dual")),
            fails=["residual_matches_reference", "residual_gradients_match"], says="normalised in every layer"),
    Variant("residual_forgets_the_final_norm",
            patch("ResiDual", ("return x + self.norm_dual(dual)", "return x + dual")),
            fails=["residual_matches_reference", "residual_gradients_match"], says="never normalised"),
    Variant("residual_dual_starts_at_zero", patch("ResiDual", ("dual = x  #", "dual = torch.zeros_like(x)  #")),
            fails=["residual_matches_reference", "residual_gradients_match"], says="starts at 0"),
    Variant("residual_dual_adds_the_normalised_stream", patch(
        "ResiDual", ("x, dual = self.norm1(x + a), dual + a", "x = self.norm1(x + a)\n        dual = dual + x"),
        ("return self.norm2(x + f), dual + f", "x = self.norm2(x + f)\n        return x, dual + x")),
            fails=["residual_block_matches_reference", "residual_matches_reference"], says="dual = dual + a + f"),
    Variant("residual_post_ln_stream_only", patch("ResiDual", ("return x + self.norm_dual(dual)", "return x")),
            fails=["residual_matches_reference"], says="the Post-LN stream alone"),
    Variant("residual_ffn_reads_the_old_stream", patch(
        "ResiDual", ("        f = self.dropout(self.ffn(x))\n", ""),
        ("        a = self.dropout(self.attn(x, mask))\n",
         "        a = self.dropout(self.attn(x, mask))\n        f = self.dropout(self.ffn(x))\n")),
            fails=["residual_block_matches_reference", "residual_matches_reference"], says="ffn(x) of the new x"),
    # gpt2_init_
    Variant("init_scales_every_linear", patch(
        "gpt2_init_", ('if name.endswith(("attn.out_proj.weight", "ffn.down.weight")):',
                       'if name.endswith("weight") and "norm" not in name and "emb" not in name:')),
            fails=["init_weight_std", "init_scales_the_residual_projections_only"], says="for every Linear"),
    Variant("init_n_instead_of_2n", patch("gpt2_init_", ("math.sqrt(2 * n_layers)", "math.sqrt(n_layers)")),
            fails=["init_weight_std", "init_scales_the_residual_projections_only"], says="sqrt(n_layers) instead of"),
    Variant("init_no_residual_scaling", patch("gpt2_init_", ("std=0.02 / math.sqrt(2 * n_layers)", "std=0.02")),
            fails=["init_weight_std", "init_scales_the_residual_projections_only"],
            says="the residual projections at std 0.02"),
    Variant("init_only_the_attention_projection", patch(
        "gpt2_init_",
        ('name.endswith(("attn.out_proj.weight", "ffn.down.weight"))', 'name.endswith("attn.out_proj.weight")')),
            fails=["init_scales_the_residual_projections_only"], says="every residual projection"),
    Variant("init_biases_left_alone", patch(
        "gpt2_init_", ('            if getattr(module, "bias", None) is not None:\n'
                       '                nn.init.zeros_(module.bias)\n', "")),
            fails=["init_norms_and_biases"], says="Linear bias"),
    Variant("init_layernorms_left_alone", patch(
        "gpt2_init_", ("        elif isinstance(module, (LayerNorm, nn.LayerNorm)) and module.weight is not None:\n"
                       "            nn.init.ones_(module.weight)\n            nn.init.zeros_(module.bias)\n", "")),
            fails=["init_norms_and_biases"], says="LayerNorm weight"),
    Variant("init_replaces_the_parameters", patch(
        "gpt2_init_", ("nn.init.normal_(module.weight, mean=0.0, std=0.02)",
                       "module.weight = nn.Parameter(module.weight.new_empty(module.weight.shape).normal_(0, 0.02))")),
            fails=["init_keeps_parameters"], says="do not replace them"),
    # Red team (full_red_a6): wrong work that got full marks before the suite checked it.
    Variant("init_uniform_with_the_right_std", patch(
        "gpt2_init_", ("nn.init.normal_(module.weight, mean=0.0, std=0.02)",
                       "nn.init.uniform_(module.weight, -0.02 * math.sqrt(3), 0.02 * math.sqrt(3))")),
            fails=["init_weight_std"], says="kurtosis"),
    Variant("rezero_no_alpha_while_training", patch(
        "ReZeroBlock", ("return x + self.alpha * self.dropout(self.ffn(x))",
                        "if self.training:\n            return x + self.dropout(self.ffn(x))\n"
                        "        return x + self.alpha * self.dropout(self.ffn(x))")),
            fails=["rezero_matches_reference"], says="train() mode"),
    Variant("rezero_no_alpha_in_float32", patch(
        "ReZeroBlock", ("return x + self.alpha * self.dropout(self.ffn(x))",
                        "if x.dtype == torch.float32:\n            return x + self.dropout(self.ffn(x))\n"
                        "        return x + self.alpha * self.dropout(self.ffn(x))")),
            fails=["rezero_keeps_dtype_and_input"], says="do not branch on x.dtype"),
    Variant("residual_skips_norm_dual_while_training", patch(
        "ResiDual", ("return x + self.norm_dual(dual)",
                     "return x + (dual if self.training else self.norm_dual(dual))")),
            fails=["residual_matches_reference"], says="train() mode"),
    Variant("residual_skips_norm_dual_in_float32", patch(
        "ResiDual", ("return x + self.norm_dual(dual)",
                     "return x + (dual if x.dtype == torch.float32 else self.norm_dual(dual))")),
            fails=["residual_keeps_dtype_and_input"], says="do not branch on x.dtype"),
]

# --- ALTERNATIVES -----------------------------------------------------------------------

LR_OTHER_STYLE = '''\
def lr_schedule(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    """The learning rate of optimizer step `step` (0, 1, 2, ...): a linear warm-up, then a cosine to min_lr."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps * max_lr
    if step >= total_steps:
        return min_lr * 1.0
    t = (step - warmup_steps) / (total_steps - warmup_steps)
    return (max_lr - min_lr) * (math.cos(math.pi * t) + 1) / 2 + min_lr
'''

REZERO_OTHER_STYLE = '''\
class ReZeroBlock(nn.Module):
    """ReZero layer: residual branches scaled by one learned scalar that starts at 0."""

    def __init__(self, d_model, n_heads, d_ff=None, dropout=0.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor([0.0]))
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ffn = FeedForward(d_model, d_ff, dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def _branch(self, x, out):
        return x + self.drop(out) * self.alpha

    def forward(self, x, mask=None):
        x = self._branch(x, self.attn(x, mask=mask))
        return self._branch(x, self.ffn(x))
'''

RESIDUAL_OTHER_STYLE = '''\
class ResiDualBlock(nn.Module):
    """One ResiDual layer: Post-LN on x, raw sublayer outputs into the dual stream."""

    def __init__(self, d_model, n_heads, d_ff=None, dropout=0.0):
        super().__init__()
        self.norm1, self.attn = LayerNorm(d_model), MultiHeadAttention(d_model, n_heads)
        self.norm2, self.ffn = LayerNorm(d_model), FeedForward(d_model, d_ff, dropout=dropout)

    def forward(self, x, dual, mask=None):
        outputs = []
        for sublayer, norm in ((lambda h: self.attn(h, mask), self.norm1), (self.ffn, self.norm2)):
            out = sublayer(x)
            outputs.append(out)
            x = norm(out + x)
        return x, dual + sum(outputs)


class ResiDual(nn.Module):
    """ResiDual stack: x_a + norm_dual(x_d)."""

    def __init__(self, d_model, n_heads, n_layers, d_ff=None, dropout=0.0):
        super().__init__()
        self.blocks = nn.ModuleList([ResiDualBlock(d_model, n_heads, d_ff, dropout) for _ in range(n_layers)])
        self.norm_dual = LayerNorm(d_model)

    def forward(self, x, mask=None):
        streams = (x, x)
        for block in self.blocks:
            streams = block(*streams, mask=mask)
        x_a, x_d = streams
        return self.norm_dual(x_d) + x_a
'''

INIT_OTHER_STYLE = '''\
def gpt2_init_(model, n_layers):
    """GPT-2's initialisation, by module names and in-place tensor methods."""
    residual_std = 0.02 / math.sqrt(2 * n_layers)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, residual_std if name.endswith(("attn.out_proj", "ffn.down")) else 0.02)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, 0.02)
            elif isinstance(module, LayerNorm) and module.weight is not None:
                module.weight.fill_(1.0)
                module.bias.zero_()
    return model
'''

ALTERNATIVES = [
    Variant("lr_guards_in_another_order", {"lr_schedule": LR_OTHER_STYLE}),
    Variant("rezero_helper_and_tensor_alpha", {"ReZeroBlock": REZERO_OTHER_STYLE}),
    Variant("residual_loop_over_sublayers", {"ResiDual": RESIDUAL_OTHER_STYLE}),
    Variant("init_by_module_names_and_tensor_methods", {"gpt2_init_": INIT_OTHER_STYLE}),
]

# --- CHEATS -----------------------------------------------------------------------------

CHEAT_TORCH_SCHEDULER = '''\
def lr_schedule(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    """PyTorch's schedulers instead of the exercise."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return float(sched.get_last_lr()[0])
'''


def check_torch_scheduler(report) -> None:
    expect_no_credit(report, "lr_schedule", "optim")
    expect_full_marks(report, "ReZeroBlock", "ResiDual", "gpt2_init_")


CHEAT_IDENTITY_REZERO = '''\
class ReZeroBlock(nn.Module):
    """Returns its input: the identity at initialisation, for free."""

    def __init__(self, d_model, n_heads, d_ff=None, dropout=0.0):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ffn = FeedForward(d_model, d_ff, dropout=dropout)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x, mask=None):
        return x
'''


def check_identity_rezero(report) -> None:
    results = by_name(report)
    name = "rezero_is_identity_at_init"
    assert results[name].score == 0 and "returned its input unchanged" in results[name].output, results[name].output
    assert results["rezero_matches_reference"].score == 0
    assert results["rezero_keeps_dtype_and_input"].score == 0  # its float32 output is not the reference's
    expect_full_marks(report, "lr_schedule", "ResiDual", "gpt2_init_")


CHEAT_MHA_RESIDUAL = SOURCES["ResiDual"].replace(
    "self.attn = MultiHeadAttention(d_model, n_heads)", "self.attn = nn.MultiheadAttention(d_model, n_heads)")


def check_mha_residual(report) -> None:
    expect_no_credit(report, "ResiDual", "MultiheadAttention")
    expect_full_marks(report, "lr_schedule", "ReZeroBlock", "gpt2_init_")


CHEAT_EXIT = '''\
import sys


def gpt2_init_(model, n_layers):
    """Takes the worker down."""
    sys.exit(0)
'''


def check_exit(report) -> None:
    expect_no_credit(report, "gpt2_init_", "SystemExit")
    expect_full_marks(report, "lr_schedule", "ReZeroBlock", "ResiDual")


INIT_FIXED_PATTERN = '''\
def gpt2_init_(model, n_layers):
    """No random draw: every weight a fixed +-std pattern, whose mean and std are exactly GPT-2's."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            else:
                projection = name.endswith(("attn.out_proj.weight", "ffn.down.weight"))
                std = 0.02 / math.sqrt(2 * n_layers) if projection else 0.02
                signs = torch.ones(p.numel(), dtype=p.dtype)
                signs[1::2] = -1.0
                p.copy_((signs * std).reshape(p.shape))  # (numel,) -> p.shape
    return model
'''


def check_fixed_pattern(report) -> None:
    result = by_name(report)["init_weight_std"]
    assert result.score == 0 and "kurtosis" in result.output, result.output
    expect_full_marks(report, "lr_schedule", "ReZeroBlock", "ResiDual")


INIT_ONE_DRAW_FOR_EVERY_LAYER = SOURCES["gpt2_init_"].replace("    return model\n", '''\
    first = dict(model.blocks[0].named_parameters())
    with torch.no_grad():  # every later block a copy of block 0: normal, the right std, one draw
        for block in model.blocks[1:]:
            for name, p in block.named_parameters():
                p.copy_(first[name])
    return model
''', 1)


def check_one_draw(report) -> None:
    result = by_name(report)["init_weight_std"]
    assert result.score == 0 and "hold the same values" in result.output, result.output
    expect_full_marks(report, "lr_schedule", "ReZeroBlock", "ResiDual")


INIT_REPLACES_AND_TIES_AGAIN = '''\
def gpt2_init_(model, n_layers):
    """New Parameters with GPT-2's statistics, and the tied weights tied again by hand: not in place."""
    tied = model.lm_head.weight is model.tok_emb.weight
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            projection = name.endswith(("attn.out_proj", "ffn.down"))
            std = 0.02 / math.sqrt(2 * n_layers) if projection else 0.02
            module.weight = nn.Parameter(torch.empty_like(module.weight).normal_(0.0, std))
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias = nn.Parameter(torch.zeros_like(module.bias))
        elif isinstance(module, LayerNorm):
            module.weight = nn.Parameter(torch.ones_like(module.weight))
            module.bias = nn.Parameter(torch.zeros_like(module.bias))
    if tied:
        model.lm_head.weight = model.tok_emb.weight
    return model
'''


def check_replaces_and_ties_again(report) -> None:
    result = by_name(report)["init_keeps_parameters"]
    assert result.score == 0 and "new Parameter objects" in result.output, result.output
    expect_full_marks(report, "lr_schedule", "ReZeroBlock", "ResiDual")


CHEAT_CONSTANT_SCHEDULE = '''\
def lr_schedule(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    """Does nothing: min_lr at every step (the end of the schedule is right, and it is pure)."""
    return float(min_lr)
'''


def check_constant_schedule(report) -> None:
    earned = {t.name: t.score for t in tests_of(report, "lr_schedule") if t.score}
    assert set(earned) <= {"schedule_returns_a_float"}, f"a constant schedule earned {earned}"
    expect_full_marks(report, "ReZeroBlock", "ResiDual", "gpt2_init_")


CHEATS = [
    Cheat("lr_schedule_from_torch_optim", {"lr_schedule": CHEAT_TORCH_SCHEDULER}, check=check_torch_scheduler),
    Cheat("rezero_returns_its_input", {"ReZeroBlock": CHEAT_IDENTITY_REZERO}, check=check_identity_rezero),
    Cheat("residual_with_nn_multiheadattention", {"ResiDual": CHEAT_MHA_RESIDUAL}, check=check_mha_residual),
    Cheat("sys_exit_in_gpt2_init", {"gpt2_init_": CHEAT_EXIT}, check=check_exit),
    Cheat("init_fixed_pattern_with_the_right_std", {"gpt2_init_": INIT_FIXED_PATTERN}, check=check_fixed_pattern),
    Cheat("init_one_draw_copied_to_every_layer", {"gpt2_init_": INIT_ONE_DRAW_FOR_EVERY_LAYER}, check=check_one_draw),
    Cheat("init_replaces_the_parameters_and_ties_again", {"gpt2_init_": INIT_REPLACES_AND_TIES_AGAIN},
          check=check_replaces_and_ties_again),
    Cheat("lr_schedule_returns_min_lr", {"lr_schedule": CHEAT_CONSTANT_SCHEDULE}, check=check_constant_schedule),
]
