"""What the a5 tests build: seeded tokens, TransformerLM configurations with random weights, and the given BigramLM.

``build_lm`` constructs the student's ``TransformerLM``, checks its submodules and parameters against the API
(a failure names the likely slip), and loads weights drawn by ``random_state``: the state dict that
``autograder/reference.py``'s ``transformer_lm`` reads. ``build_bigram`` loads a table into the notebook's given
``BigramLM`` (next-token logits looked up by the current token), which the train_step and generate tests use so
that a bug in TransformerLM costs no points there.
"""

from __future__ import annotations

import math

import torch

from autograder import reference
from autograder.checks import fail, tolerance
from autograder.session import CheckFailed, StudentRaised
from autograder.suites.common import dtype_name, load_weights, parameter_mismatch
from autograder.wire import WireTensor

# Tolerances for a whole model against the float64 reference with the same weights. float64 roundoff through
# two layers stays near 1e-13; 10x (logits) and 100x (gradients, one more pass) the per-op tolerance of
# checks.TOLERANCES leave room for other summation orders, while every bug we know of moves logits by > 1e-3.
LOGITS_TOL = tolerance(torch.float64, 10)
GRADIENT_TOL = tolerance(torch.float64, 100)
# Causality and padding compare the model with itself, so they use the plain float64 tolerance.
SELF_TOL = tolerance(torch.float64)
# The sinusoid buffer is computed in float32 (the given sinusoidal_positions): errors below 1e-6 for
# angles up to max_len; a shifted or transposed table is off by more than 0.01.
SINUSOID_TOL = tolerance(torch.float32, 10)


def wire(tensor: torch.Tensor) -> WireTensor:
    """A grader-side tensor dressed as a returned value, for checks that take one (slices of results).

    Its device is where its values are (results arrive on the CPU), not the worker's: the device check
    (``lm_keeps_dtype_and_inputs``) reads a returned value itself, never one of these.
    """
    return WireTensor(tensor=tensor, dtype=dtype_name(tensor.dtype), shape=tuple(tensor.shape),
                      type_name="torch.Tensor", requires_grad=False, has_grad_fn=False, device=str(tensor.device))


def randint(ctx, high: int, *shape) -> torch.Tensor:
    """Seeded int64 token ids in 0 .. high-1."""
    return torch.randint(0, high, shape, generator=ctx.generator)


# --- TransformerLM ------------------------------------------------------------------------------------

class Config:
    """One TransformerLM configuration: its arguments, its expected parameters, how to name it in feedback."""

    def __init__(self, vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_len=12, d_ff=None,
                 norm_first=True, positions="learned", tie_weights=False):
        self.vocab_size, self.d_model, self.n_heads, self.n_layers = vocab_size, d_model, n_heads, n_layers
        self.max_len, self.d_ff = max_len, d_ff
        self.norm_first, self.positions, self.tie_weights = norm_first, positions, tie_weights

    def args(self) -> tuple:
        return (self.vocab_size, self.d_model, self.n_heads, self.n_layers, self.max_len)

    def kwargs(self) -> dict:
        kw = {"norm_first": self.norm_first, "positions": self.positions, "tie_weights": self.tie_weights}
        if self.d_ff is not None:
            kw["d_ff"] = self.d_ff
        return kw

    def call(self) -> str:
        extra = ", ".join(f"{k}={v!r}" for k, v in self.kwargs().items()
                          if (k, v) not in {("norm_first", True), ("positions", "learned"), ("tie_weights", False)})
        return f"TransformerLM({', '.join(map(str, self.args()))}{', ' + extra if extra else ''})"

    def parameter_shapes(self) -> dict[str, tuple]:
        """Every parameter and its shape, as named_parameters() lists them (a tied lm_head.weight is listed once)."""
        return reference.lm_shapes(self.vocab_size, self.d_model, self.n_layers, self.max_len, self.d_ff,
                                   self.norm_first, self.positions, self.tie_weights)

    def reference(self, state: dict, tokens: torch.Tensor, **kwargs) -> torch.Tensor:
        """The float64 logits of this model with these weights (reference.transformer_lm)."""
        return reference.transformer_lm(state, tokens, n_heads=self.n_heads, norm_first=self.norm_first, **kwargs)


def random_state(ctx, cfg: Config) -> dict[str, torch.Tensor]:
    """Weights at a scale where every part matters: unit-variance embeddings, 1/sqrt(fan_in) matrices.

    The scales of reference.random_state, drawn by name in sorted order with ctx.randn (a matrix is multiplied by
    1/sqrt(fan_in)): the inputs every earlier grade of this suite had.
    """
    state = {}
    for name, shape in sorted(cfg.parameter_shapes().items()):
        if "norm" in name:
            state[name] = (1.0 if name.endswith("weight") else 0.0) + ctx.randn(*shape, scale=0.2)
        elif name.endswith("bias"):
            state[name] = ctx.randn(*shape, scale=0.1)
        elif name in ("tok_emb.weight", "pos_emb.weight"):
            state[name] = ctx.randn(*shape)
        else:
            state[name] = ctx.randn(*shape, scale=1 / math.sqrt(shape[1]))
    if cfg.tie_weights:
        state["lm_head.weight"] = state["tok_emb.weight"]  # state_dict() lists a tied tensor under both names
    return state


def check_structure(model, cfg: Config) -> None:
    """Submodules and parameters as the API names them; a failure names the likely slip."""
    subs = model.submodules
    what = cfg.call()
    kinds = {"tok_emb": ("torch.nn.modules.sparse.Embedding", "nn.Embedding(vocab_size, d_model)"),
             "blocks": ("torch.nn.modules.container.ModuleList", "an nn.ModuleList of TransformerBlock"),
             "lm_head": ("torch.nn.modules.linear.Linear", "nn.Linear(d_model, vocab_size, bias=False)")}
    if cfg.positions == "learned":
        kinds["pos_emb"] = ("torch.nn.modules.sparse.Embedding", "nn.Embedding(max_len, d_model)")
    for name, (kind, want) in kinds.items():
        if name not in subs:
            fail(f"{what} has no submodule named {name}", f"Create self.{name} = {want} in __init__")
        if subs[name]["type"] != kind:
            fail(f"{what}.{name} is a {subs[name]['type'].rpartition('.')[2]}, expected {want}")
    blocks = sorted(n for n in subs if n.startswith("blocks.") and n.count(".") == 1)
    if len(blocks) != cfg.n_layers:
        fail(f"{what} has {len(blocks)} distinct block(s), expected n_layers = {cfg.n_layers}",
             "Create a new TransformerBlock for every layer: nn.ModuleList(TransformerBlock(...) for _ in "
             "range(n_layers)); [block] * n_layers repeats one block (shared weights)")
    for name in blocks:
        if not subs[name]["type"].endswith(".TransformerBlock"):
            fail(f"{what}.{name} is a {subs[name]['type'].rpartition('.')[2]}, expected the given TransformerBlock")
    norm_f = subs.get("norm_f", {}).get("type", "")
    if cfg.norm_first and not norm_f.endswith("LayerNorm"):
        fail(f"{what}.norm_f is {norm_f.rpartition('.')[2] or 'missing'}, expected a LayerNorm(d_model)",
             "With Pre-LN blocks the residual stream is never normalised: apply a final LayerNorm before lm_head")
    if not cfg.norm_first and norm_f != "torch.nn.modules.linear.Identity":
        fail(f"{what}.norm_f is {norm_f.rpartition('.')[2] or 'missing'}, expected nn.Identity() when norm_first=False",
             "A Post-LN block already ends with a LayerNorm, so the final norm is the identity")
    mismatch = parameter_mismatch(model, cfg.parameter_shapes(), what)
    if mismatch is None:
        return
    message, extra, wrong = mismatch.message, mismatch.extra, mismatch.wrong
    if "lm_head.bias" in extra:
        fail(message, "lm_head has no bias: nn.Linear(d_model, vocab_size, bias=False)")
    if "pos_emb.weight" in wrong:
        fail(message, "pos_emb needs one row per position 0 .. max_len-1: nn.Embedding(max_len, d_model)")
    if cfg.positions == "sinusoidal" and "pos_emb.weight" in extra:
        fail(message, "Sinusoidal positions are fixed: register them as a buffer, not a parameter")
    if cfg.tie_weights and "lm_head.weight" in extra:
        fail(message, "With tie_weights=True, lm_head.weight must be the very Parameter tok_emb.weight "
                      "(self.lm_head.weight = self.tok_emb.weight), not a copy")
    fail(message, "Build tok_emb, pos_emb, blocks, norm_f and lm_head exactly as the exercise lists them")


def build_lm(ctx, cfg: Config, dtype=torch.float64, state: dict | None = None):
    """The student's TransformerLM with the test's weights loaded, checked against the API first."""
    model = ctx.construct("TransformerLM", *cfg.args(), **cfg.kwargs())
    check_structure(model, cfg)
    state = random_state(ctx, cfg) if state is None else state
    model.set_mode(train=False, dtype=dtype)
    load_weights(model, {k: v.to(dtype) for k, v in state.items()})
    return model, state


# --- the given BigramLM -------------------------------------------------------------------------------

def build_bigram(ctx, vocab_size: int, max_len: int = 16, dtype=torch.float64, table: torch.Tensor | None = None):
    """The notebook's BigramLM with ``table`` (random when not given) as its next-token logits."""
    model = ctx.construct("BigramLM", vocab_size, max_len)
    table = ctx.randn(vocab_size, vocab_size) if table is None else table
    model.set_mode(train=False, dtype=dtype)
    try:
        load_weights(model, {"table.weight": table.to(dtype)})
    except StudentRaised as exc:
        raise CheckFailed(f"the given BigramLM was changed, so the grader cannot load its weights ({exc}); "
                          "restore the given cell") from None
    return model, table.to(torch.float64)


def table_of(model) -> torch.Tensor:
    """The model's table as it is now (an nn.Parameter, read as plain values)."""
    value = model.parameters.get("table.weight")
    if not isinstance(value, WireTensor) or value.tensor is None:
        fail("the given BigramLM has no readable parameter table.weight: restore the given cell")
    return value.tensor


def cycle_table(ctx, vocab_size: int) -> torch.Tensor:
    """Bigram logits whose argmax walks one cycle through every token (small noise elsewhere)."""
    order = ctx.permutation(vocab_size)
    table = ctx.randn(vocab_size, vocab_size, scale=0.1)
    table[order, order.roll(-1)] += 5.0  # token order[i] is followed by order[i + 1]
    return table
