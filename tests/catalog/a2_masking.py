"""Variants of the a2_masking solution: realistic bugs, other correct styles, and cheats.

Every entry replaces one or two exercise cells (by nbgrader grade_id) of
``solutions/a2_masking/masking.ipynb``; the rest of the notebook stays the reference
solution. ``tests/test_catalogs.py`` grades each variant with the hidden suite:

- ``MUTANTS``: a student's plausible bug. The hidden tests in ``fails`` must fail, and the
  first of them must name the bug (its output contains ``says``, case-insensitive).
- ``ALTERNATIVES``: correct code in another style; must get full marks.
- ``CHEATS``: attempts to get credit without doing the work, or to break the grader;
  each carries a ``check(report)`` that asserts the expected outcome.
"""

from __future__ import annotations

from tests.policy_checks import expect_forbidden, expect_needs_review
from tests.variants import Cheat, Variant, expect_failing, expect_full_marks, expect_no_credit

EXERCISES = ("causal_mask", "padding_mask", "masked_softmax", "scaled_dot_product_attention", "MultiHeadAttention")

# --- the signature and docstring of each exercise cell, as the release shows them ----------

CAUSAL_HEAD = '''\
def causal_mask(T_q, T_k=None, device=None):
    """Causal mask: query i may attend to key j exactly when j <= i + (T_k - T_q).

    Args:
        T_q: number of queries.
        T_k: number of keys (default: T_q). With T_k > T_q the queries are the last T_q
            of the T_k positions (bottom-right alignment), as in incremental decoding.
        device: the device of the mask (default: PyTorch's default device).

    Returns:
        A bool tensor of shape (T_q, T_k), True where query i may attend to key j.
    """
'''

PADDING_HEAD = '''\
def padding_mask(lengths, T):
    """Padding mask: True at the real tokens of each sequence, False at its padding.

    Args:
        lengths: integer tensor of shape (B,), the number of real tokens of each sequence.
        T: the padded length.

    Returns:
        A bool tensor of shape (B, 1, 1, T) on lengths.device, True where position t < lengths[b];
        it broadcasts over heads and queries, and masks keys.
    """
'''

SOFTMAX_HEAD = '''\
def masked_softmax(scores, mask, dim=-1):
    """Softmax of `scores` along `dim` over the positions where `mask` is True.

    Args:
        scores: a float tensor of any shape.
        mask: a bool tensor that broadcasts against `scores`; True = may attend.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `scores`: exactly 0 where `mask` is False; each slice along `dim`
        with a True sums to 1; a slice with no True is all zeros (never NaN, nor its gradient).
    """
'''

ATTENTION_HEAD = '''\
def scaled_dot_product_attention(q, k, v, mask=None):
    """Scaled dot-product attention with an optional mask: masked_softmax(q @ k^T / sqrt(d_k), mask) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).
        mask: None, or a bool tensor that broadcasts against (..., T_q, T_k); True = may attend.

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k), exactly 0
        at blocked keys; a query with no visible key gets zero weights and a zero output.
    """
'''

MHA_HEAD = '''\
class MultiHeadAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al., 2017) with an optional mask.

    Submodules q_proj, k_proj, v_proj and out_proj are each nn.Linear(d_model, d_model, bias=bias);
    head h owns features h*d_head:(h+1)*d_head of each projection's output, d_head = d_model // n_heads.
    """

    def __init__(self, d_model, n_heads, bias=True):
        """Create the four projections; raise ValueError if d_model is not divisible by n_heads."""
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x, mask=None):
        """Self-attention over x (B, T, d_model); mask broadcasts against (B, H, T, T). Returns (B, T, d_model)."""
'''

# --- MUTANTS -----------------------------------------------------------------------------
# causal_mask

CAUSAL_TRIU_INVERTED = CAUSAL_HEAD + '''\
    T_k = T_q if T_k is None else T_k
    # the upper triangle is the future: that is what the mask is about
    return torch.triu(torch.ones(T_q, T_k, device=device), diagonal=T_k - T_q + 1).bool()
'''

CAUSAL_DIAGONAL_MASKED = CAUSAL_HEAD + '''\
    T_k = T_q if T_k is None else T_k
    i = torch.arange(T_q, device=device)[:, None] + (T_k - T_q)
    j = torch.arange(T_k, device=device)[None, :]
    return j < i  # keys strictly before the query
'''

CAUSAL_TOP_LEFT = CAUSAL_HEAD + '''\
    T_k = T_q if T_k is None else T_k
    return torch.ones(T_q, T_k, dtype=torch.bool, device=device).tril()  # lower triangle: j <= i
'''

CAUSAL_FLOAT_MASK = CAUSAL_HEAD + '''\
    T_k = T_q if T_k is None else T_k
    return torch.tril(torch.ones(T_q, T_k, device=device), diagonal=T_k - T_q)  # 1 = attend, 0 = blocked
'''

# padding_mask

PADDING_INVERTED = PADDING_HEAD + '''\
    positions = torch.arange(T, device=lengths.device)
    is_pad = positions >= lengths[:, None]  # (B, T): True at the padding
    return is_pad[:, None, None, :]
'''

PADDING_ON_QUERY_AXIS = PADDING_HEAD + '''\
    positions = torch.arange(T, device=lengths.device)
    mask = positions[None, :] < lengths[:, None]  # (B, T)
    return mask[:, None, :, None]  # (B, 1, T, 1)
'''

PADDING_OFF_BY_ONE = PADDING_HEAD + '''\
    positions = torch.arange(T, device=lengths.device)
    return (positions <= lengths.unsqueeze(1)).view(-1, 1, 1, T)
'''

# masked_softmax

SOFTMAX_MASK_AFTER = SOFTMAX_HEAD + '''\
    weights = softmax(scores, dim=dim)
    return weights * mask  # zero out the blocked positions
'''

SOFTMAX_ZERO_TIMES_INF = SOFTMAX_HEAD + '''\
    bias = (~mask) * float("-inf")  # -inf where blocked, 0 elsewhere
    scores = scores + bias
    m = scores.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(scores - m)
    total = e.sum(dim=dim, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))
'''

SOFTMAX_MINUS_1E9 = SOFTMAX_HEAD + '''\
    scores = scores.masked_fill(~mask, -1e9)  # a very negative number: exp() underflows to 0
    return softmax(scores, dim=dim)
'''

SOFTMAX_MINUS_INF_NAN = SOFTMAX_HEAD + '''\
    scores = scores.masked_fill(~mask, float("-inf"))
    return softmax(scores, dim=dim)
'''

SOFTMAX_THEN_MASK_RENORMALISED = SOFTMAX_HEAD + '''\
    p = softmax(scores, dim=dim) * mask  # drop the blocked keys
    total = p.sum(dim=dim, keepdim=True)
    return p / total.clamp_min(1e-12)  # renormalise; a fully masked row stays 0
'''

SOFTMAX_WHERE_ADDITIVE_NAN_GRAD = SOFTMAX_HEAD + '''\
    bias = torch.zeros_like(scores).masked_fill(~mask, float("-inf"))  # additive mask
    scores = scores + bias
    m = scores.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(scores - m)
    total = e.sum(dim=dim, keepdim=True)
    return torch.where(total > 0, e / total, torch.zeros_like(e))  # fully masked rows: 0
'''

SOFTMAX_MAX_OVER_BLOCKED = SOFTMAX_HEAD + '''\
    m = scores.amax(dim=dim, keepdim=True)  # stability shift
    e = torch.exp(scores - m) * mask  # blocked keys contribute nothing
    total = e.sum(dim=dim, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))
'''

SOFTMAX_IN_PLACE = SOFTMAX_HEAD + '''\
    scores.masked_fill_(~mask, float("-inf"))
    m = scores.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(scores - m)
    total = e.sum(dim=dim, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))
'''

SOFTMAX_IGNORES_DIM = SOFTMAX_HEAD + '''\
    scores = scores.masked_fill(~mask, float("-inf"))
    m = scores.amax(dim=-1, keepdim=True)  # over the keys
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(scores - m)
    total = e.sum(dim=-1, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))
'''

# scaled_dot_product_attention

ATTENTION_IGNORES_MASK = ATTENTION_HEAD + '''\
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    weights = softmax(scores, dim=-1)
    return weights @ v, weights
'''

ATTENTION_INVERTED_MASK = ATTENTION_HEAD + '''\
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    if mask is None:
        return softmax(scores, dim=-1) @ v, softmax(scores, dim=-1)
    weights = masked_softmax(scores, ~mask)  # hide the masked positions
    return weights @ v, weights
'''

ATTENTION_NO_NONE_CASE = ATTENTION_HEAD + '''\
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    weights = masked_softmax(scores, mask, dim=-1)
    return weights @ v, weights
'''

ATTENTION_MASK_AFTER_SOFTMAX = ATTENTION_HEAD + '''\
    d_k = q.size(-1)
    weights = softmax(q @ k.transpose(-2, -1) / math.sqrt(d_k), dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)  # blocked keys get no weight
    return weights @ v, weights
'''

# MultiHeadAttention

MHA_IGNORES_MASK = MHA_HEAD + '''\
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        out, _ = scaled_dot_product_attention(q, k, v)
        return self.out_proj(merge_heads(out))
'''

MHA_UNSQUEEZES_MASK = MHA_HEAD + '''\
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        if mask is not None:
            mask = mask.unsqueeze(1)  # add the head dimension: (B, T, T) -> (B, 1, T, T)
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(merge_heads(out))
'''

MUTANTS = [
    # causal_mask
    Variant("causal_triu_inverted_convention", {"causal_mask": CAUSAL_TRIU_INVERTED},
            fails=["causal_mask_matches_reference", "causal_mask_keeps_the_diagonal",
                   "causal_mask_bottom_right_alignment"],
            says="inverted"),
    Variant("causal_diagonal_masked", {"causal_mask": CAUSAL_DIAGONAL_MASKED},
            fails=["causal_mask_keeps_the_diagonal", "causal_mask_matches_reference",
                   "causal_mask_bottom_right_alignment"],
            says="diagonal must stay visible"),
    Variant("causal_top_left_alignment", {"causal_mask": CAUSAL_TOP_LEFT},
            fails=["causal_mask_bottom_right_alignment", "causal_mask_default_and_device"], says="top-left alignment"),
    Variant("causal_float_mask", {"causal_mask": CAUSAL_FLOAT_MASK},
            fails=["causal_mask_shape_and_dtype", "causal_mask_matches_reference"], says="expected bool"),
    # padding_mask
    Variant("padding_inverted_key_padding_convention", {"padding_mask": PADDING_INVERTED},
            fails=["padding_mask_matches_reference", "padding_mask_device_and_input"],
            says="key_padding_mask convention"),
    Variant("padding_on_query_axis", {"padding_mask": PADDING_ON_QUERY_AXIS},
            fails=["padding_mask_shape", "padding_mask_matches_reference"], says="masks queries"),
    Variant("padding_off_by_one", {"padding_mask": PADDING_OFF_BY_ONE},
            fails=["padding_mask_matches_reference"], says="off by one"),
    # masked_softmax
    Variant("softmax_mask_applied_after", {"masked_softmax": SOFTMAX_MASK_AFTER},
            fails=["masked_softmax_matches_reference", "masked_softmax_blocked_weights_are_exactly_zero",
                   "attention_matches_reference"], says="after the softmax"),
    Variant("softmax_mask_times_minus_inf_nan", {"masked_softmax": SOFTMAX_ZERO_TIMES_INF},
            fails=["masked_softmax_matches_reference", "attention_matches_reference"], says="0 * -inf is NaN"),
    Variant("softmax_minus_1e9_uniform_rows", {"masked_softmax": SOFTMAX_MINUS_1E9},
            fails=["masked_softmax_fully_masked_rows_are_zero", "attention_fully_masked_query", "mha_gradients_match"],
            says="-1e9"),
    Variant("softmax_minus_inf_nan_rows", {"masked_softmax": SOFTMAX_MINUS_INF_NAN},
            fails=["masked_softmax_fully_masked_rows_are_zero", "attention_fully_masked_query",
                   "attention_gradients_match", "mha_gradients_match"], says="-inf - (-inf) is NaN"),
    Variant("softmax_then_mask_renormalised", {"masked_softmax": SOFTMAX_THEN_MASK_RENORMALISED},
            fails=["masked_softmax_blocked_weights_are_exactly_zero", "attention_is_causal"], says="sum to 0"),
    Variant("softmax_additive_mask_where_nan_gradient", {"masked_softmax": SOFTMAX_WHERE_ADDITIVE_NAN_GRAD},
            fails=["masked_softmax_gradients", "attention_gradients_match", "mha_gradients_match"], says="torch.where"),
    Variant("softmax_max_over_blocked_scores", {"masked_softmax": SOFTMAX_MAX_OVER_BLOCKED},
            fails=["attention_is_causal", "masked_softmax_blocked_weights_are_exactly_zero"], says="future leaks"),
    Variant("softmax_masked_fill_in_place", {"masked_softmax": SOFTMAX_IN_PLACE},
            fails=["masked_softmax_keeps_dtype_device_and_inputs", "masked_softmax_gradients"],
            says="modified in place"),
    Variant("softmax_ignores_dim", {"masked_softmax": SOFTMAX_IGNORES_DIM},
            fails=["masked_softmax_matches_reference"], says="whatever `dim` is"),
    # scaled_dot_product_attention
    Variant("attention_ignores_mask", {"scaled_dot_product_attention": ATTENTION_IGNORES_MASK},
            fails=["attention_matches_reference", "attention_is_causal", "attention_padding_invariance",
                   "attention_future_gradient_is_exactly_zero", "mha_is_causal"], says="ignores the mask"),
    Variant("attention_inverted_mask", {"scaled_dot_product_attention": ATTENTION_INVERTED_MASK},
            fails=["attention_matches_reference", "attention_padding_invariance", "mha_matches_nn_multihead_attention"],
            says="inverted mask"),
    Variant("attention_breaks_on_mask_none", {"scaled_dot_product_attention": ATTENTION_NO_NONE_CASE},
            fails=["attention_shapes_with_masks", "attention_keeps_dtype_device_and_inputs", "mha_shapes_with_masks"],
            says="mask=None must mean no masking"),
    Variant("attention_mask_applied_after_softmax", {"scaled_dot_product_attention": ATTENTION_MASK_AFTER_SOFTMAX},
            fails=["attention_matches_reference", "attention_fully_masked_query"], says="after the softmax"),
    # MultiHeadAttention
    Variant("mha_ignores_mask", {"MultiHeadAttention": MHA_IGNORES_MASK},
            fails=["mha_matches_nn_multihead_attention", "mha_is_causal", "mha_padding_invariance",
                   "mha_gradients_match"],
            says="ignores the mask"),
    Variant("mha_unsqueezes_mask_for_heads", {"MultiHeadAttention": MHA_UNSQUEEZES_MASK},
            fails=["mha_shapes_with_masks", "mha_matches_nn_multihead_attention"],
            says="Pass the mask to the attention as it is"),
]

# --- ALTERNATIVES --------------------------------------------------------------------------

CAUSAL_TRIL_OFFSET = CAUSAL_HEAD + '''\
    if T_k is None:
        T_k = T_q
    ones = torch.ones(T_q, T_k, dtype=torch.bool, device=device)
    return ones.tril(diagonal=T_k - T_q)  # the diagonal, shifted right by T_k - T_q
'''

CAUSAL_NOT_TRIU = CAUSAL_HEAD + '''\
    T_k = T_k or T_q
    future = torch.ones(T_q, T_k, device=device).triu(diagonal=T_k - T_q + 1)  # 1 above the (shifted) diagonal
    return future == 0
'''

PADDING_EXPAND_VIEW = PADDING_HEAD + '''\
    B = lengths.shape[0]
    positions = torch.arange(T, device=lengths.device).expand(B, T)  # (B, T)
    return (positions < lengths.view(B, 1)).view(B, 1, 1, T)
'''

SOFTMAX_WHERE_NAN_TO_NUM = SOFTMAX_HEAD + '''\
    blocked = torch.where(mask, scores, torch.full_like(scores, float("-inf")))
    # a fully masked row gives NaN (its max is -inf): those rows must be 0
    return softmax(blocked, dim=dim).nan_to_num(0.0)
'''

SOFTMAX_ADDITIVE_SAFE_DENOMINATOR = SOFTMAX_HEAD + '''\
    bias = torch.zeros_like(scores).masked_fill(~mask, float("-inf"))  # 0 where visible, -inf where blocked
    s = scores + bias
    m = s.amax(dim=dim, keepdim=True).nan_to_num(neginf=0.0)  # a fully masked slice shifts by 0
    e = (s - m).exp()
    total = e.sum(dim=dim, keepdim=True)
    return e / (total + (total == 0).to(total.dtype))  # 0 / 1 in a fully masked slice
'''

SOFTMAX_MINUS_1E9_THEN_ZEROED = SOFTMAX_HEAD + '''\
    weights = softmax(scores.masked_fill(~mask, -1e9), dim=dim)  # uniform in a fully masked row...
    return weights * mask  # ...so zero every blocked weight afterwards
'''

SOFTMAX_LOGSUMEXP = SOFTMAX_HEAD + '''\
    s = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, dim=dim, keepdim=True)  # -inf in a fully masked slice
    lse = torch.where(lse == float("-inf"), torch.zeros_like(lse), lse)
    return torch.exp(s - lse)
'''

ATTENTION_EINSUM_BIAS = ATTENTION_HEAD + '''\
    scores = torch.einsum("...qd,...kd->...qk", q, k) * q.shape[-1] ** -0.5
    if mask is None:
        mask = torch.ones((), dtype=torch.bool, device=q.device)  # everything visible
    weights = masked_softmax(scores, mask)
    return torch.einsum("...qk,...kv->...qv", weights, v), weights
'''

MHA_FUSED_QKV = MHA_HEAD + '''\
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])  # (3D, D)
        bias = None
        if self.q_proj.bias is not None:
            bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        q, k, v = (split_heads(t, self.n_heads) for t in F.linear(x, weight, bias).chunk(3, dim=-1))
        out, _ = scaled_dot_product_attention(q, k, v, mask=mask)
        return self.out_proj(merge_heads(out))
'''

ALTERNATIVES = [
    Variant("causal_tril_with_diagonal_offset", {"causal_mask": CAUSAL_TRIL_OFFSET}),
    Variant("causal_not_triu", {"causal_mask": CAUSAL_NOT_TRIU}),
    Variant("padding_expand_and_view", {"padding_mask": PADDING_EXPAND_VIEW}),
    Variant("softmax_where_minus_inf_then_nan_to_num", {"masked_softmax": SOFTMAX_WHERE_NAN_TO_NUM}),
    Variant("softmax_additive_mask_safe_denominator", {"masked_softmax": SOFTMAX_ADDITIVE_SAFE_DENOMINATOR}),
    Variant("softmax_minus_1e9_then_blocked_zeroed", {"masked_softmax": SOFTMAX_MINUS_1E9_THEN_ZEROED}),
    Variant("softmax_exp_of_scores_minus_logsumexp", {"masked_softmax": SOFTMAX_LOGSUMEXP}),
    Variant("attention_einsum_all_visible_default", {"scaled_dot_product_attention": ATTENTION_EINSUM_BIAS}),
    Variant("mha_fused_qkv_projection", {"MultiHeadAttention": MHA_FUSED_QKV}),
]

# --- CHEATS --------------------------------------------------------------------------------

ATTENTION_TESTS = ["attention_shapes_with_masks", "attention_matches_reference", "attention_is_causal",
                   "attention_padding_invariance", "attention_fully_masked_query", "attention_gradients_match",
                   "attention_future_gradient_is_exactly_zero", "attention_keeps_dtype_device_and_inputs"]
MHA_FORWARD_TESTS = ["mha_shapes_with_masks", "mha_matches_nn_multihead_attention", "mha_is_causal",
                     "mha_padding_invariance", "mha_gradients_match", "mha_keeps_dtype_device_and_inputs"]

# (a) The fused built-in: weights from masked_softmax, output from F.scaled_dot_product_attention.
CHEAT_CALLS_F_SDPA = ATTENTION_HEAD + '''\
    weights = softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) if mask is None else \\
        masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), mask)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).nan_to_num(0.0)  # fused and fast
    return out, weights
'''


def check_calls_f_sdpa(report) -> None:
    expect_no_credit(report, "scaled_dot_product_attention", "F.scaled_dot_product_attention")
    expect_full_marks(report, "causal_mask", "padding_mask", "masked_softmax")
    # MultiHeadAttention reaches the built-in through the student's attention: the run-time trace sees it
    expect_failing(report, MHA_FORWARD_TESTS, "torch.nn.functional.scaled_dot_product_attention")


# (b) Patch the worker's finiteness and comparison functions, with a masked softmax that gives NaN rows.
CHEAT_PATCHED_CHECKS = '''\
import torch

# whatever the grader checks, it sees finite values that match
torch.isfinite = lambda t: torch.ones_like(t, dtype=torch.bool)
torch.isnan = lambda t: torch.zeros_like(t, dtype=torch.bool)
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True


''' + SOFTMAX_MINUS_INF_NAN


def check_patched_checks(report) -> None:
    expect_failing(report, ["masked_softmax_fully_masked_rows_are_zero", "attention_fully_masked_query"], "NaN")
    # Verdict changed with the usage policy (issue 8): module-level code that rewrites torch's functions runs for
    # every exercise, so under strict grading every exercise needs review and scores 0.
    for exercise in EXERCISES:
        expect_needs_review(report, exercise, "assigns to torch.isfinite")


# (c) A detached result: the forward values are right, no gradient can flow.
CHEAT_DETACHED = SOFTMAX_HEAD + '''\
    with torch.no_grad():  # faster: no graph to build
        s = scores.masked_fill(~mask, float("-inf"))
        m = s.amax(dim=dim, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        e = torch.exp(s - m)
        total = e.sum(dim=dim, keepdim=True)
        return e / torch.where(total > 0, total, torch.ones_like(total))
'''


def check_detached(report) -> None:
    expect_failing(report, ["masked_softmax_gradients", "attention_gradients_match", "mha_gradients_match"], "detached")
    expect_failing(report, ["attention_future_gradient_is_exactly_zero"], "no gradient reached")
    assert by_name_passed(report, "masked_softmax_matches_reference"), "the forward values are right"
    expect_full_marks(report, "causal_mask", "padding_mask")


# (d) sys.exit inside causal_mask: the worker catches SystemExit like any exception.
CHEAT_SYS_EXIT = '''\
import sys


''' + CAUSAL_HEAD + '''\
    sys.exit(0)
'''


def check_sys_exit(report) -> None:
    expect_no_credit(report, "causal_mask", "SystemExit")
    expect_full_marks(report, "padding_mask", "masked_softmax", "scaled_dot_product_attention", "MultiHeadAttention")


# (e) os._exit inside masked_softmax: the worker process dies mid-call.
CHEAT_OS_EXIT = '''\
import os


''' + SOFTMAX_HEAD + '''\
    os._exit(0)
'''


def check_os_exit(report) -> None:
    expect_no_credit(report, "masked_softmax", "worker process died")
    expect_full_marks(report, "causal_mask", "padding_mask")
    expect_failing(report, ["attention_matches_reference", "mha_matches_nn_multihead_attention"], "worker process died")


# (f) A built-in softmax inside masked_softmax, also through a computed name.
CHEAT_BUILTIN_SOFTMAX = SOFTMAX_HEAD + '''\
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=dim).nan_to_num(0.0)
'''

CHEAT_GETATTR_SOFTMAX = SOFTMAX_HEAD + '''\
    fn = getattr(torch, "soft" + "max")
    return fn(scores.masked_fill(~mask, float("-inf")), dim=dim).nan_to_num(0.0)
'''


def check_builtin_softmax(report) -> None:
    expect_no_credit(report, "masked_softmax", "a built-in softmax")
    expect_full_marks(report, "causal_mask", "padding_mask")
    # Verdict changed with the usage policy (issue 8): a forbidden call counts wherever the exercise's code reaches
    # it, and attention and MultiHeadAttention reach torch.softmax through the student's masked_softmax.
    for exercise in ("scaled_dot_product_attention", "MultiHeadAttention"):
        expect_forbidden(report, exercise, "torch.softmax", "a built-in softmax")


def check_getattr_softmax(report) -> None:
    expect_no_credit(report, "masked_softmax", "torch.softmax")
    assert any("getattr" in note for note in report.review), f"the dynamic lookup should be flagged: {report.review}"


# (g) nn.MultiheadAttention inside the module, with the mask converted to its convention.
CHEAT_NN_MHA = MHA_HEAD + '''\
        B, T, D = x.shape
        mha = nn.MultiheadAttention(D, self.n_heads, bias=self.q_proj.bias is not None, batch_first=True,
                                    dtype=x.dtype, device=x.device)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
            mha.out_proj.weight.copy_(self.out_proj.weight)
            if self.q_proj.bias is not None:
                mha.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
                mha.out_proj.bias.copy_(self.out_proj.bias)
        blocked = None if mask is None else (~mask).expand(B, self.n_heads, T, T).reshape(B * self.n_heads, T, T)
        return mha(x, x, x, attn_mask=blocked, need_weights=False)[0]
'''


def check_nn_mha(report) -> None:
    expect_no_credit(report, "MultiHeadAttention", "nn.MultiheadAttention")
    expect_full_marks(report, "causal_mask", "padding_mask", "masked_softmax", "scaled_dot_product_attention")


def by_name_passed(report, name: str) -> bool:
    return next(t for t in report.tests if t.name == name).passed


CHEATS = [
    Cheat("calls_f_scaled_dot_product_attention", {"scaled_dot_product_attention": CHEAT_CALLS_F_SDPA},
          check=check_calls_f_sdpa),
    Cheat("patches_torch_isfinite_and_allclose_in_the_worker", {"masked_softmax": CHEAT_PATCHED_CHECKS},
          check=check_patched_checks),
    Cheat("returns_a_detached_result", {"masked_softmax": CHEAT_DETACHED}, check=check_detached),
    Cheat("sys_exit_in_causal_mask", {"causal_mask": CHEAT_SYS_EXIT}, check=check_sys_exit),
    Cheat("os_exit_in_masked_softmax", {"masked_softmax": CHEAT_OS_EXIT}, check=check_os_exit),
    Cheat("builtin_softmax_in_masked_softmax", {"masked_softmax": CHEAT_BUILTIN_SOFTMAX}, check=check_builtin_softmax),
    Cheat("getattr_computed_name_softmax", {"masked_softmax": CHEAT_GETATTR_SOFTMAX}, check=check_getattr_softmax),
    Cheat("wraps_nn_multihead_attention", {"MultiHeadAttention": CHEAT_NN_MHA}, check=check_nn_mha),
]
