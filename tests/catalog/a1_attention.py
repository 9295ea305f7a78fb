"""Variants of the a1_attention solution: realistic bugs, other correct styles, and cheats.

Every entry replaces one or two exercise cells (by nbgrader grade_id) of
``solutions/a1_attention/attention.ipynb``; the rest of the notebook stays the reference
solution. ``tests/test_catalogs.py`` grades each variant with the hidden suite:

- ``MUTANTS``: a student's plausible bug. The hidden tests in ``fails`` must fail, and the
  first of them must name the bug (its output contains ``says``, case-insensitive).
- ``ALTERNATIVES``: correct code in another style; must get full marks.
- ``CHEATS``: attempts to get credit without doing the work, or to break the grader;
  each carries a ``check(report)`` that asserts the expected outcome.
"""

from __future__ import annotations

from autograder.runner import GradeReport
from tests.policy_checks import expect_forbidden, expect_needs_review
from tests.variants import Cheat, Variant, expect_failing, expect_full_marks, expect_no_credit

EXERCISES = ("softmax", "scaled_dot_product_attention", "split_heads", "merge_heads", "MultiHeadAttention")

# --- MUTANTS ---------------------------------------------------------------------------
# softmax

SOFTMAX_IGNORES_DIM = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    # softmax is always over the last axis (the keys), so -1 everywhere
    shifted = x - x.max(dim=-1, keepdim=True).values
    e = torch.exp(shifted)
    return e / e.sum(dim=-1, keepdim=True)
'''

SOFTMAX_HARDCODED_DIM_0 = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    m = x.max(0, keepdim=True).values  # max of each column
    e = (x - m).exp()
    return e / e.sum(0, keepdim=True)
'''

SOFTMAX_DEFAULT_DIM_0 = '''\
def softmax(x, dim=0):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    x = x - x.amax(dim=dim, keepdim=True)
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)
'''

SOFTMAX_WITHOUT_MAX_SUBTRACTION = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    # softmax(x)_i = exp(x_i) / sum_j exp(x_j)
    numerator = torch.exp(x)
    denominator = torch.sum(numerator, dim=dim, keepdim=True)
    return numerator / denominator
'''

SOFTMAX_SUM_WITHOUT_KEEPDIM = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    x = x - x.amax(dim=dim, keepdim=True)
    e = x.exp()
    total = e.sum(dim=dim)
    return e / total
'''

SOFTMAX_OVER_WHOLE_TENSOR = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    x = x - x.max()  # subtract the max for stability
    e = torch.exp(x)
    return e / e.sum()
'''

SOFTMAX_GLOBAL_MAX = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    e = torch.exp(x - x.max())  # the largest entry becomes exp(0) = 1, nothing overflows
    return e / e.sum(dim=dim, keepdim=True)
'''

SOFTMAX_IN_PLACE_SHIFT = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    x -= x.max(dim=dim, keepdim=True).values  # shift so the max is 0 (avoids overflow)
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)
'''

SOFTMAX_DETACHED_DENOMINATOR = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    norm = e.sum(dim=dim, keepdim=True).detach()  # the normaliser is just a constant
    return e / norm
'''

SOFTMAX_CASTS_TO_FLOAT32 = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    x = x.float()  # make sure we work with floats
    x = x - x.amax(dim=dim, keepdim=True)
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)
'''

# scaled_dot_product_attention

SDPA_WITHOUT_SCALE = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    scores = torch.matmul(q, k.transpose(-2, -1))  # (..., T_q, T_k)
    weights = softmax(scores, dim=-1)
    out = torch.matmul(weights, v)
    return out, weights
'''

SDPA_SCALED_BY_D_K = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / d_k  # scale so the scores do not grow with d_k
    weights = softmax(scores, dim=-1)
    return weights @ v, weights
'''

SDPA_SCALED_BY_SQRT_D_V = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    d = v.size(-1)  # the head dimension
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    weights = softmax(scores, dim=-1)
    out = weights @ v
    return out, weights
'''

SDPA_MULTIPLIED_BY_SQRT_D_K = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    scale = math.sqrt(q.shape[-1])
    scores = (q @ k.transpose(-2, -1)) * scale
    weights = softmax(scores, dim=-1)
    return weights @ v, weights
'''

SDPA_SOFTMAX_OVER_QUERIES = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T_q, T_k)
    weights = softmax(scores, dim=-2)  # normalise the scores
    out = weights @ v
    return out, weights
'''

SDPA_WEIGHTS_TRANSPOSED = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    weights = softmax(scores, dim=-1)
    out = weights @ v
    # return the attention map as (keys, queries), like the plots in the paper
    return out, weights.transpose(-2, -1)
'''

SDPA_RETURNS_WEIGHTS_FIRST = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    d_k = q.size(-1)
    attn = softmax(q @ k.transpose(-2, -1) / math.sqrt(d_k), dim=-1)
    return attn, attn @ v
'''

SDPA_FIXED_BATCH_TRANSPOSE = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(2, 3) / math.sqrt(d_k)  # (B, H, T_q, d_k) @ (B, H, d_k, T_k)
    weights = softmax(scores, dim=-1)
    return weights @ v, weights
'''

SDPA_SCALES_Q_IN_PLACE = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    d_k = q.shape[-1]
    q.div_(math.sqrt(d_k))  # scale the (smaller) query tensor instead of the scores, saves memory
    weights = softmax(q @ k.transpose(-2, -1), dim=-1)
    return weights @ v, weights
'''

SDPA_DETACHED_WEIGHTS = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    weights = softmax(scores, dim=-1).detach()  # weights are only for plotting
    out = weights @ v
    return out, weights
'''

SDPA_CASTS_TO_FLOAT32 = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    q, k, v = q.float(), k.float(), v.float()  # matmul needs matching dtypes
    scale = 1.0 / math.sqrt(q.shape[-1])
    weights = softmax(q @ k.transpose(-2, -1) * scale, dim=-1)
    return weights @ v, weights
'''

# split_heads / merge_heads

SPLIT_WITHOUT_TRANSPOSE = '''\
def split_heads(x, n_heads):
    """Split the features into heads: (B, T, d_model) -> (B, H, T, d_head).

    H = n_heads and d_head = d_model // n_heads; head h gets features
    h*d_head:(h+1)*d_head of every token.
    """
    B, T, d_model = x.shape
    d_head = d_model // n_heads
    return x.reshape(B, n_heads, T, d_head)  # already the shape we want
'''

SPLIT_INTERLEAVED = '''\
def split_heads(x, n_heads):
    """Split the features into heads: (B, T, d_model) -> (B, H, T, d_head).

    H = n_heads and d_head = d_model // n_heads; head h gets features
    h*d_head:(h+1)*d_head of every token.
    """
    B, T, d_model = x.shape
    d_head = d_model // n_heads
    x = x.view(B, T, d_head, n_heads)  # (B, T, d_head, H)
    return x.permute(0, 3, 1, 2)  # (B, H, T, d_head)
'''

MERGE_WITHOUT_TRANSPOSE = '''\
def merge_heads(x):
    """Inverse of split_heads: (B, H, T, d_head) -> (B, T, H * d_head).

    Features h*d_head:(h+1)*d_head of every output token come from head h.
    """
    B, H, T, d_head = x.shape
    return x.reshape(B, T, H * d_head)  # concatenate the heads
'''

MERGE_VIEW_AFTER_TRANSPOSE = '''\
def merge_heads(x):
    """Inverse of split_heads: (B, H, T, d_head) -> (B, T, H * d_head).

    Features h*d_head:(h+1)*d_head of every output token come from head h.
    """
    B, H, T, d_head = x.shape
    x = x.transpose(1, 2)  # (B, T, H, d_head)
    return x.view(B, T, H * d_head)
'''

# MultiHeadAttention

MHA_INIT = '''\
    def __init__(self, d_model, n_heads, bias=True):
        """Create the four projections; raise ValueError if d_model is not divisible by n_heads."""
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
'''

MHA_HEAD = '''\
class MultiHeadAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al., 2017), without masking.

    Submodules q_proj, k_proj, v_proj and out_proj are each nn.Linear(d_model, d_model, bias=bias);
    head h owns features h*d_head:(h+1)*d_head of each projection's output, d_head = d_model // n_heads.
    """

'''

MHA_WITHOUT_OUT_PROJ = MHA_HEAD + MHA_INIT + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        out, _ = scaled_dot_product_attention(q, k, v)
        return merge_heads(out)  # back to (B, T, d_model)
'''

MHA_HEADS_NEVER_SPLIT = MHA_HEAD + MHA_INIT + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        q = self.q_proj(x)  # (B, T, d_model)
        k = self.k_proj(x)
        v = self.v_proj(x)
        out, _ = scaled_dot_product_attention(q, k, v)  # attention works on any batch shape
        return self.out_proj(out)
'''

MHA_SCALED_BY_SQRT_D_MODEL = MHA_HEAD + MHA_INIT + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_model)  # (B, H, T, T)
        weights = softmax(scores, dim=-1)
        return self.out_proj(merge_heads(weights @ v))
'''

MHA_MERGES_WITHOUT_TRANSPOSE = MHA_HEAD + MHA_INIT + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        B, T, D = x.shape
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        out, _ = scaled_dot_product_attention(q, k, v)  # (B, H, T, d_head)
        out = out.reshape(B, T, D)  # concatenate the heads
        return self.out_proj(out)
'''

MHA_SPLITS_INTO_D_HEAD_HEADS = MHA_HEAD + MHA_INIT + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        q = split_heads(self.q_proj(x), self.d_head)  # (B, H, T, d_head)
        k = split_heads(self.k_proj(x), self.d_head)
        v = split_heads(self.v_proj(x), self.d_head)
        out, _ = scaled_dot_product_attention(q, k, v)
        return self.out_proj(merge_heads(out))
'''

MHA_IGNORES_BIAS_FALSE = MHA_HEAD + '''\
    def __init__(self, d_model, n_heads, bias=True):
        """Create the four projections; raise ValueError if d_model is not divisible by n_heads."""
        super().__init__()
        if d_model % n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        out, _ = scaled_dot_product_attention(q, k, v)
        return self.out_proj(merge_heads(out))
'''

# The notebook asks for a ValueError "with a message that gives both numbers": a bare ValueError breaks that rule.
MHA_BARE_VALUE_ERROR = MHA_HEAD + MHA_INIT.replace(
    'raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")', "raise ValueError") + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        out, _ = scaled_dot_product_attention(q, k, v)
        return self.out_proj(merge_heads(out))
'''

MHA_K_PROJ_FOR_VALUES = MHA_HEAD + MHA_INIT + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.k_proj(x), self.n_heads)
        out, _ = scaled_dot_product_attention(q, k, v)
        return self.out_proj(merge_heads(out))
'''

MHA_OUT_PROJ_WEIGHT_DATA = MHA_HEAD + MHA_INIT + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        out, _ = scaled_dot_product_attention(q, k, v)
        merged = merge_heads(out)
        # apply the output projection by hand: y = x W^T + b
        y = merged @ self.out_proj.weight.data.T
        if self.out_proj.bias is not None:
            y = y + self.out_proj.bias
        return y
'''

MHA_CASTS_INPUT_TO_FLOAT32 = MHA_HEAD + MHA_INIT + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        x = x.float()  # nn.Linear weights are float32
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        out, _ = scaled_dot_product_attention(q, k, v)
        return self.out_proj(merge_heads(out))
'''

MUTANTS = [
    # softmax
    Variant("softmax_ignores_dim_uses_last_axis", {"softmax": SOFTMAX_IGNORES_DIM},
            fails=["softmax_matches_reference", "softmax_rows_sum_to_one"], says="instead of dim=1"),
    Variant("softmax_hardcoded_dim_0", {"softmax": SOFTMAX_HARDCODED_DIM_0},
            fails=["softmax_matches_reference", "softmax_rows_sum_to_one", "attention_matches_reference"],
            says="(that is, dim=0) instead of dim=-1"),
    Variant("softmax_default_dim_0", {"softmax": SOFTMAX_DEFAULT_DIM_0},
            fails=["softmax_matches_reference"], says="default must be dim=-1"),
    Variant("softmax_without_max_subtraction", {"softmax": SOFTMAX_WITHOUT_MAX_SUBTRACTION},
            fails=["softmax_is_stable_for_large_inputs", "attention_is_stable_for_large_scores"],
            says="subtract the maximum"),
    Variant("softmax_sum_without_keepdim", {"softmax": SOFTMAX_SUM_WITHOUT_KEEPDIM},
            fails=["softmax_keeps_shape", "softmax_matches_reference"], says="keepdim=True"),
    Variant("softmax_normalised_over_whole_tensor", {"softmax": SOFTMAX_OVER_WHOLE_TENSOR},
            fails=["softmax_matches_reference", "softmax_rows_sum_to_one"], says="over the whole tensor"),
    Variant("softmax_max_of_whole_tensor_subtracted", {"softmax": SOFTMAX_GLOBAL_MAX},
            fails=["softmax_is_stable_for_large_inputs"], says="maximum along dim"),
    Variant("softmax_shifts_input_in_place", {"softmax": SOFTMAX_IN_PLACE_SHIFT},
            fails=["softmax_keeps_dtype_device_and_input", "softmax_gradient_matches"], says="modified in place"),
    Variant("softmax_detached_denominator", {"softmax": SOFTMAX_DETACHED_DENOMINATOR},
            fails=["softmax_gradient_matches", "attention_gradients_match"], says="detached"),
    Variant("softmax_casts_to_float32", {"softmax": SOFTMAX_CASTS_TO_FLOAT32},
            fails=["softmax_matches_reference", "softmax_keeps_dtype_device_and_input"], says=".float()"),
    # scaled_dot_product_attention
    Variant("attention_without_scale", {"scaled_dot_product_attention": SDPA_WITHOUT_SCALE},
            fails=["attention_matches_reference", "attention_matches_reference_float32",
                   "mha_matches_nn_multihead_attention"],
            says="without the 1/sqrt(d_k) scale"),
    Variant("attention_scaled_by_d_k", {"scaled_dot_product_attention": SDPA_SCALED_BY_D_K},
            fails=["attention_matches_reference", "attention_gradients_match"],
            says="scaled by 1/d_k instead of 1/sqrt(d_k)"),
    Variant("attention_scaled_by_sqrt_d_v", {"scaled_dot_product_attention": SDPA_SCALED_BY_SQRT_D_V},
            fails=["attention_matches_reference"], says="1/sqrt(d_v) instead of 1/sqrt(d_k)"),
    Variant("attention_multiplied_by_sqrt_d_k", {"scaled_dot_product_attention": SDPA_MULTIPLIED_BY_SQRT_D_K},
            fails=["attention_matches_reference", "attention_matches_reference_float32"],
            says="multiplied, not divided"),
    Variant("attention_softmax_over_queries", {"scaled_dot_product_attention": SDPA_SOFTMAX_OVER_QUERIES},
            fails=["attention_matches_reference", "attention_weights_are_distributions", "attention_gradients_match"],
            says="over the query axis (dim=-2)"),
    Variant("attention_weights_transposed", {"scaled_dot_product_attention": SDPA_WEIGHTS_TRANSPOSED},
            fails=["attention_shapes", "attention_matches_reference", "attention_matches_reference_float32"],
            says="transposed"),
    Variant("attention_returns_weights_first", {"scaled_dot_product_attention": SDPA_RETURNS_WEIGHTS_FIRST},
            fails=["attention_shapes", "attention_matches_reference"], says="(out, weights)"),
    Variant("attention_transposes_fixed_dims_2_3", {"scaled_dot_product_attention": SDPA_FIXED_BATCH_TRANSPOSE},
            fails=["attention_shapes"], says="k.transpose(-2, -1)"),
    Variant("attention_scales_q_in_place", {"scaled_dot_product_attention": SDPA_SCALES_Q_IN_PLACE},
            fails=["attention_keeps_dtype_device_and_inputs", "attention_gradients_match"],
            says="input q was modified in place"),
    Variant("attention_detached_weights", {"scaled_dot_product_attention": SDPA_DETACHED_WEIGHTS},
            fails=["attention_gradients_match", "mha_gradients_match"], says="detached"),
    Variant("attention_casts_to_float32", {"scaled_dot_product_attention": SDPA_CASTS_TO_FLOAT32},
            fails=["attention_matches_reference", "attention_keeps_dtype_device_and_inputs"], says=".float()"),
    # split_heads / merge_heads
    Variant("split_heads_reshape_without_transpose", {"split_heads": SPLIT_WITHOUT_TRANSPOSE},
            fails=["split_heads_layout", "split_heads_gradient_and_input", "mha_matches_nn_multihead_attention"],
            says="a reshape without the transpose"),
    Variant("split_heads_interleaved_layout", {"split_heads": SPLIT_INTERLEAVED},
            fails=["split_heads_layout", "mha_matches_nn_multihead_attention"], says="every H-th feature"),
    Variant("merge_heads_reshape_without_transpose", {"merge_heads": MERGE_WITHOUT_TRANSPOSE},
            fails=["merge_heads_inverts_split", "merge_heads_gradient_and_input", "mha_matches_nn_multihead_attention"],
            says="transpose back to (B, T, H, d_head)"),
    Variant("merge_heads_view_after_transpose", {"merge_heads": MERGE_VIEW_AFTER_TRANSPOSE},
            fails=["merge_heads_shape", "merge_heads_inverts_split", "mha_output_shape"], says="reshape"),
    # MultiHeadAttention
    Variant("mha_without_out_proj", {"MultiHeadAttention": MHA_WITHOUT_OUT_PROJ},
            fails=["mha_matches_nn_multihead_attention", "mha_gradients_match"],
            says="without the output projection out_proj"),
    Variant("mha_heads_never_split", {"MultiHeadAttention": MHA_HEADS_NEVER_SPLIT},
            fails=["mha_matches_nn_multihead_attention", "mha_matches_in_float32", "mha_gradients_match"],
            says="a single head over all of d_model"),
    Variant("mha_scaled_by_sqrt_d_model", {"MultiHeadAttention": MHA_SCALED_BY_SQRT_D_MODEL},
            fails=["mha_matches_nn_multihead_attention", "mha_gradients_match"],
            says="1/sqrt(d_model) instead of 1/sqrt(d_head)"),
    Variant("mha_merges_heads_without_transpose", {"MultiHeadAttention": MHA_MERGES_WITHOUT_TRANSPOSE},
            fails=["mha_matches_nn_multihead_attention"], says="merged by a reshape without the transpose"),
    Variant("mha_splits_into_d_head_heads", {"MultiHeadAttention": MHA_SPLITS_INTO_D_HEAD_HEADS},
            fails=["mha_matches_nn_multihead_attention", "mha_gradients_match"], says="n_heads and d_head swapped"),
    Variant("mha_ignores_bias_false", {"MultiHeadAttention": MHA_IGNORES_BIAS_FALSE},
            fails=["mha_structure", "mha_matches_nn_multihead_attention"], says="bias=False"),
    Variant("mha_raises_a_bare_value_error", {"MultiHeadAttention": MHA_BARE_VALUE_ERROR},
            fails=["mha_structure"], says="the message does not give 21 and 4"),
    Variant("mha_k_proj_used_for_values", {"MultiHeadAttention": MHA_K_PROJ_FOR_VALUES},
            fails=["mha_matches_nn_multihead_attention", "mha_gradients_match"], says="values projected with k_proj"),
    Variant("mha_out_proj_weight_data_detached", {"MultiHeadAttention": MHA_OUT_PROJ_WEIGHT_DATA},
            fails=["mha_gradients_match"], says="out_proj.weight received no gradient"),
    Variant("mha_casts_input_to_float32", {"MultiHeadAttention": MHA_CASTS_INPUT_TO_FLOAT32},
            fails=["mha_matches_nn_multihead_attention", "mha_keeps_dtype_device_and_input"], says=".float()"),
    # two cells: a student who "fixed" the MHA test by transposing in both helpers the wrong way
    Variant("split_and_merge_both_without_transpose",
            {"split_heads": SPLIT_WITHOUT_TRANSPOSE, "merge_heads": MERGE_WITHOUT_TRANSPOSE},
            fails=["split_heads_layout", "merge_heads_inverts_split", "mha_matches_nn_multihead_attention"],
            says="a reshape without the transpose"),
]

# --- ALTERNATIVES ----------------------------------------------------------------------

SOFTMAX_LOGSUMEXP = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    # log softmax(x) = x - logsumexp(x); torch.logsumexp is itself stable (it shifts by the max)
    return torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))
'''

SOFTMAX_MOVEDIM = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    z = x.movedim(dim, -1)  # work on the last axis, then move it back
    z = z - z.max(dim=-1, keepdim=True).values
    e = torch.exp(z)
    p = e / e.sum(-1, keepdim=True)
    return p.movedim(-1, dim)
'''

SDPA_EINSUM = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    d_k = q.shape[-1]
    scores = torch.einsum("...qd,...kd->...qk", q, k) / d_k**0.5
    weights = softmax(scores, dim=-1)
    out = torch.einsum("...qk,...kv->...qv", weights, v)
    return out, weights
'''

SDPA_SCALE_FOLDED_INTO_Q = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    scale = q.shape[-1] ** -0.5
    q = q * scale  # scaling q (T_q x d_k) is cheaper than scaling the scores (T_q x T_k)
    weights = softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1)
    return torch.matmul(weights, v), weights
'''

SDPA_BADDBMM = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    *batch, T_q, d_k = q.shape
    T_k, d_v = k.shape[-2], v.shape[-1]
    # flatten all batch dims into one so bmm/baddbmm apply: (N, T, d)
    q3, k3, v3 = q.reshape(-1, T_q, d_k), k.reshape(-1, T_k, d_k), v.reshape(-1, T_k, d_v)
    empty = torch.empty(q3.shape[0], T_q, T_k, dtype=q.dtype, device=q.device)
    scores = torch.baddbmm(empty, q3, k3.transpose(1, 2), beta=0.0, alpha=1.0 / math.sqrt(d_k))
    weights = softmax(scores, dim=-1)
    out = torch.bmm(weights, v3)
    return out.reshape(*batch, T_q, d_v), weights.reshape(*batch, T_q, T_k)
'''

SPLIT_UNFLATTEN = '''\
def split_heads(x, n_heads):
    """Split the features into heads: (B, T, d_model) -> (B, H, T, d_head).

    H = n_heads and d_head = d_model // n_heads; head h gets features
    h*d_head:(h+1)*d_head of every token.
    """
    return x.unflatten(-1, (n_heads, -1)).transpose(1, 2)  # (B, T, H, d_head) -> (B, H, T, d_head)
'''

MERGE_FLATTEN = '''\
def merge_heads(x):
    """Inverse of split_heads: (B, H, T, d_head) -> (B, T, H * d_head).

    Features h*d_head:(h+1)*d_head of every output token come from head h.
    """
    return x.transpose(1, 2).flatten(-2)  # (B, T, H, d_head) -> (B, T, H * d_head)
'''

SPLIT_VIEW_PERMUTE = '''\
def split_heads(x, n_heads):
    """Split the features into heads: (B, T, d_model) -> (B, H, T, d_head).

    H = n_heads and d_head = d_model // n_heads; head h gets features
    h*d_head:(h+1)*d_head of every token.
    """
    B, T, C = x.size()
    return x.view(B, T, n_heads, C // n_heads).permute(0, 2, 1, 3)
'''

MERGE_PERMUTE_CONTIGUOUS_VIEW = '''\
def merge_heads(x):
    """Inverse of split_heads: (B, H, T, d_head) -> (B, T, H * d_head).

    Features h*d_head:(h+1)*d_head of every output token come from head h.
    """
    B, H, T, d_head = x.size()
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, H * d_head)
'''

MHA_FUSED_QKV = MHA_HEAD + MHA_INIT + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        # one matmul for all three projections, as nn.MultiheadAttention does with in_proj_weight
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight], dim=0)  # (3D, D)
        bias = None
        if self.q_proj.bias is not None:
            bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        qkv = F.linear(x, weight, bias)  # (B, T, 3D)
        q, k, v = (split_heads(t, self.n_heads) for t in qkv.chunk(3, dim=-1))
        out, _ = scaled_dot_product_attention(q, k, v)
        return self.out_proj(merge_heads(out))
'''

MHA_INLINE_EINSUM = MHA_HEAD + MHA_INIT + '''
    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        B, T, _ = x.shape
        H, dh = self.n_heads, self.d_head
        q = self.q_proj(x).view(B, T, H, dh)
        k = self.k_proj(x).view(B, T, H, dh)
        v = self.v_proj(x).view(B, T, H, dh)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(dh)
        weights = softmax(scores, dim=-1)
        out = torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(B, T, H * dh)
        return self.out_proj(out)
'''

MHA_D_HEAD_BUFFER = MHA_HEAD + '''\
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
        # d_head as a buffer: it follows .to(device, dtype) and is saved in the state dict
        self.register_buffer("d_head", torch.tensor(float(d_model // n_heads)))

    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        weights = softmax(q @ k.transpose(-2, -1) / self.d_head.sqrt(), dim=-1)
        return self.out_proj(merge_heads(weights @ v))
'''

ALTERNATIVES = [
    Variant("softmax_exp_of_x_minus_logsumexp", {"softmax": SOFTMAX_LOGSUMEXP}),
    Variant("softmax_movedim_to_last_axis", {"softmax": SOFTMAX_MOVEDIM}),
    Variant("attention_with_einsum", {"scaled_dot_product_attention": SDPA_EINSUM}),
    Variant("attention_scale_folded_into_q", {"scaled_dot_product_attention": SDPA_SCALE_FOLDED_INTO_Q}),
    Variant("attention_baddbmm_over_flattened_batch", {"scaled_dot_product_attention": SDPA_BADDBMM}),
    Variant("heads_with_unflatten_and_flatten", {"split_heads": SPLIT_UNFLATTEN, "merge_heads": MERGE_FLATTEN}),
    Variant("heads_with_view_and_permute",
            {"split_heads": SPLIT_VIEW_PERMUTE, "merge_heads": MERGE_PERMUTE_CONTIGUOUS_VIEW}),
    Variant("mha_fused_qkv_projection", {"MultiHeadAttention": MHA_FUSED_QKV}),
    Variant("mha_inline_einsum_attention", {"MultiHeadAttention": MHA_INLINE_EINSUM}),
    Variant("mha_d_head_as_registered_buffer", {"MultiHeadAttention": MHA_D_HEAD_BUFFER}),
]

# --- CHEATS ----------------------------------------------------------------------------


MHA_FORWARD_TESTS = ["mha_output_shape", "mha_matches_nn_multihead_attention", "mha_matches_in_float32",
                     "mha_is_permutation_equivariant", "mha_gradients_match", "mha_keeps_dtype_device_and_input"]
ATTENTION_TESTS = ["attention_shapes", "attention_matches_reference", "attention_matches_reference_float32",
                   "attention_weights_are_distributions", "attention_is_permutation_equivariant",
                   "attention_is_stable_for_large_scores", "attention_gradients_match",
                   "attention_keeps_dtype_device_and_inputs"]

# (a) Patch the worker's comparison functions, hoping the grader compares there. The softmax
# ignores `dim` (always the last axis): wrong for the softmax tests, right for attention's use.
CHEAT_PATCHED_COMPARISONS = '''\
import torch
import torch.testing

# every comparison now agrees: whatever the grader compares, it sees a match
torch.allclose = lambda *args, **kwargs: True
torch.Tensor.allclose = lambda self, *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.Tensor.equal = lambda self, *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None


def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    e = (x - x.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)
'''


def check_patched_comparisons(report: GradeReport) -> None:
    # Verdict changed with the usage policy (issue 8): module-level code runs for every exercise, and it reaches
    # torch.testing and rewrites torch's functions, so every exercise loses its points.
    for exercise in EXERCISES:
        expect_forbidden(report, exercise, "torch.testing")
    assert any("assigns to torch.allclose" in note for note in report.review), report.review


# (b) A tensor subclass that agrees with every comparison, holding wrong values.
CHEAT_LYING_SUBCLASS = '''\
class _AgreeableTensor(torch.Tensor):
    """A tensor that is equal and close to anything it is compared with."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = torch.Tensor.__hash__

    def allclose(self, *args, **kwargs):
        return True

    def equal(self, *args, **kwargs):
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("allclose", "equal", "isclose", "eq", "__eq__", "assert_close"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


def split_heads(x, n_heads):
    """Split the features into heads: (B, T, d_model) -> (B, H, T, d_head).

    H = n_heads and d_head = d_model // n_heads; head h gets features
    h*d_head:(h+1)*d_head of every token.
    """
    B, T, d_model = x.shape
    return (0 * x).reshape(B, n_heads, T, d_model // n_heads).as_subclass(_AgreeableTensor)
'''


def check_lying_subclass(report: GradeReport) -> None:
    expect_no_credit(report, "split_heads", "subclass", tests=["split_heads_shape", "split_heads_layout"])
    expect_full_marks(report, "softmax", "scaled_dot_product_attention", "merge_heads")


# (c) sys.exit inside softmax: the worker catches SystemExit like any exception.
CHEAT_SYS_EXIT_IN_SOFTMAX = '''\
import sys


def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    sys.exit(0)  # "exit cleanly" before anything can be checked
'''


def check_sys_exit(report: GradeReport) -> None:
    expect_no_credit(report, "softmax", "SystemExit")
    expect_full_marks(report, "split_heads", "merge_heads")
    expect_failing(report, ["attention_matches_reference", "mha_matches_nn_multihead_attention"], "SystemExit")


# (d) os._exit inside attention: the worker process dies mid-call.
CHEAT_OS_EXIT_IN_ATTENTION = '''\
import os


def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    os._exit(0)
'''


def check_os_exit(report: GradeReport) -> None:
    expect_no_credit(report, "scaled_dot_product_attention", "worker process died")
    expect_full_marks(report, "softmax", "split_heads", "merge_heads")
    expect_failing(report, MHA_FORWARD_TESTS, "worker process died")
    # Verdict changed with the usage policy (issue 8): MultiHeadAttention reaches os._exit through the student's
    # attention, so under strict grading it needs review and scores 0, construction included.
    expect_needs_review(report, "MultiHeadAttention", "os._exit")


# (e) An infinite loop in merge_heads, bounded by the per-test time limit.
CHEAT_INFINITE_LOOP_IN_MERGE = '''\
def merge_heads(x):
    """Inverse of split_heads: (B, H, T, d_head) -> (B, T, H * d_head).

    Features h*d_head:(h+1)*d_head of every output token come from head h.
    """
    while True:
        pass
'''


def check_infinite_loop(report: GradeReport) -> None:
    expect_no_credit(report, "merge_heads", "time limit")
    expect_full_marks(report, "softmax", "scaled_dot_product_attention", "split_heads")
    expect_failing(report, ["mha_output_shape", "mha_matches_nn_multihead_attention"], "time limit")


# (f) The forbidden built-in, called directly.
CHEAT_CALLS_F_SDPA = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    weights = softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    out = F.scaled_dot_product_attention(q, k, v)  # fused kernel, much faster
    return out, weights
'''


def check_calls_f_sdpa(report: GradeReport) -> None:
    expect_no_credit(report, "scaled_dot_product_attention", "F.scaled_dot_product_attention")
    expect_full_marks(report, "softmax", "split_heads", "merge_heads")
    # MultiHeadAttention reaches the built-in through the student's attention: the run-time trace sees it
    expect_failing(report, MHA_FORWARD_TESTS, "torch.nn.functional.scaled_dot_product_attention")


# (g) The forbidden built-in through a module-level alias.
CHEAT_ALIASED_F_SDPA = '''\
_attn = torch.nn.functional.scaled_dot_product_attention


def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v.

    Args:
        q: queries, shape (..., T_q, d_k).
        k: keys, shape (..., T_k, d_k).
        v: values, shape (..., T_k, d_v).

    Returns:
        (out, weights): out has shape (..., T_q, d_v); weights has shape (..., T_q, T_k)
        and each of its rows sums to 1.
    """
    weights = softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return _attn(q, k, v), weights
'''


def check_aliased_f_sdpa(report: GradeReport) -> None:
    expect_no_credit(report, "scaled_dot_product_attention", "F.scaled_dot_product_attention")
    expect_full_marks(report, "softmax", "split_heads", "merge_heads")


# (g') An import alias in the MultiHeadAttention cell.
CHEAT_IMPORT_ALIASED_F_SDPA_IN_MHA = '''\
from torch.nn.functional import scaled_dot_product_attention as fused_attention


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al., 2017), without masking.

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

    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        return self.out_proj(merge_heads(fused_attention(q, k, v)))
'''


def check_import_aliased_f_sdpa_in_mha(report: GradeReport) -> None:
    expect_no_credit(report, "MultiHeadAttention", "F.scaled_dot_product_attention")
    expect_full_marks(report, "softmax", "scaled_dot_product_attention", "split_heads", "merge_heads")


# (h) A computed attribute name the static scan cannot read.
CHEAT_GETATTR_SOFTMAX = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    fn = getattr(torch, "soft" + "max")
    return fn(x, dim=dim)
'''


def check_getattr_softmax(report: GradeReport) -> None:
    expect_no_credit(report, "softmax", "torch.softmax")
    assert any("getattr" in note for note in report.review), \
        f"the dynamic lookup should be flagged for review: {report.review}"


# (i) nn.MultiheadAttention inside the student's module.
CHEAT_NN_MULTIHEAD_ATTENTION = '''\
class MultiHeadAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al., 2017), without masking.

    Submodules q_proj, k_proj, v_proj and out_proj are each nn.Linear(d_model, d_model, bias=bias);
    head h owns features h*d_head:(h+1)*d_head of each projection's output, d_head = d_model // n_heads.
    """

    def __init__(self, d_model, n_heads, bias=True):
        """Create the four projections; raise ValueError if d_model is not divisible by n_heads."""
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.bias = d_model, n_heads, bias
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x):
        """Self-attention over x of shape (B, T, d_model); returns shape (B, T, d_model)."""
        mha = nn.MultiheadAttention(self.d_model, self.n_heads, bias=self.bias, batch_first=True,
                                    dtype=x.dtype, device=x.device)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
            mha.out_proj.weight.copy_(self.out_proj.weight)
            if self.bias:
                mha.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
                mha.out_proj.bias.copy_(self.out_proj.bias)
        return mha(x, x, x, need_weights=False)[0]
'''


def check_nn_multihead_attention(report: GradeReport) -> None:
    expect_no_credit(report, "MultiHeadAttention", "nn.MultiheadAttention")
    expect_full_marks(report, "softmax", "scaled_dot_product_attention", "split_heads", "merge_heads")


# (j) KeyboardInterrupt inside split_heads: caught in the worker like any exception.
CHEAT_KEYBOARD_INTERRUPT_IN_SPLIT = '''\
def split_heads(x, n_heads):
    """Split the features into heads: (B, T, d_model) -> (B, H, T, d_head).

    H = n_heads and d_head = d_model // n_heads; head h gets features
    h*d_head:(h+1)*d_head of every token.
    """
    raise KeyboardInterrupt
'''


def check_keyboard_interrupt(report: GradeReport) -> None:
    expect_no_credit(report, "split_heads", "KeyboardInterrupt")
    expect_full_marks(report, "softmax", "scaled_dot_product_attention", "merge_heads")
    expect_failing(report, ["mha_output_shape"], "KeyboardInterrupt")


CHEATS = [
    Cheat("patches_torch_comparisons_in_the_worker", {"softmax": CHEAT_PATCHED_COMPARISONS},
          check=check_patched_comparisons),
    Cheat("returns_a_lying_tensor_subclass", {"split_heads": CHEAT_LYING_SUBCLASS}, check=check_lying_subclass),
    Cheat("sys_exit_in_softmax", {"softmax": CHEAT_SYS_EXIT_IN_SOFTMAX}, check=check_sys_exit),
    Cheat("os_exit_in_attention", {"scaled_dot_product_attention": CHEAT_OS_EXIT_IN_ATTENTION}, check=check_os_exit),
    Cheat("infinite_loop_in_merge_heads", {"merge_heads": CHEAT_INFINITE_LOOP_IN_MERGE}, check=check_infinite_loop,
          time_limit=1.5),
    Cheat("calls_f_scaled_dot_product_attention", {"scaled_dot_product_attention": CHEAT_CALLS_F_SDPA},
          check=check_calls_f_sdpa),
    Cheat("module_level_alias_of_f_sdpa", {"scaled_dot_product_attention": CHEAT_ALIASED_F_SDPA},
          check=check_aliased_f_sdpa),
    Cheat("import_alias_of_f_sdpa_in_mha", {"MultiHeadAttention": CHEAT_IMPORT_ALIASED_F_SDPA_IN_MHA},
          check=check_import_aliased_f_sdpa_in_mha),
    Cheat("getattr_computed_name_softmax", {"softmax": CHEAT_GETATTR_SOFTMAX}, check=check_getattr_softmax),
    Cheat("wraps_nn_multihead_attention", {"MultiHeadAttention": CHEAT_NN_MULTIHEAD_ATTENTION},
          check=check_nn_multihead_attention),
    Cheat("keyboard_interrupt_in_split_heads", {"split_heads": CHEAT_KEYBOARD_INTERRUPT_IN_SPLIT},
          check=check_keyboard_interrupt),
]


# --- cheats that reach a forbidden built-in by a path the static scan cannot read -------
# Each must still get no credit (the worker's torch-function trace sees the call) and be
# flagged for review (the scan sees the dynamic lookup or the reach into internals).

CHEAT_GETATTR_DUNDER_WRAPPED = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    builtin = getattr(torch, "soft" + "max")
    return builtin.__wrapped__(x, dim=dim)  # a wrapper's untraced original, if there were one
'''

CHEAT_ATTRGETTER_DUNDER_WRAPPED = '''\
import operator


def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    return operator.attrgetter("soft" + "max.__wrapped__")(torch)(x, dim=dim)
'''

CHEAT_GETATTRIBUTE_ON_AN_INTERNAL_ALIAS = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`.

    Args:
        x: a tensor of any shape, float32 or float64.
        dim: the dimension to normalise over (default: the last one).

    Returns:
        A tensor shaped like `x` whose slices along `dim` are non-negative and sum to 1.
    """
    return torch._C._VariableFunctions.__getattribute__("soft" + "max")(x, dim)
'''


def check_builtin_softmax_gets_no_credit_and_is_flagged(report: GradeReport) -> None:
    expect_no_credit(report, "softmax", "softmax")
    assert report.review, "the dynamic lookup should be flagged for review"


DYNAMIC_CHEATS = [
    Cheat("getattr_then_dunder_wrapped", {"softmax": CHEAT_GETATTR_DUNDER_WRAPPED},
          check=check_builtin_softmax_gets_no_credit_and_is_flagged),
    Cheat("attrgetter_dunder_wrapped", {"softmax": CHEAT_ATTRGETTER_DUNDER_WRAPPED},
          check=check_builtin_softmax_gets_no_credit_and_is_flagged),
    Cheat("getattribute_on_an_internal_alias", {"softmax": CHEAT_GETATTRIBUTE_ON_AN_INTERNAL_ALIAS},
          check=check_builtin_softmax_gets_no_credit_and_is_flagged),
]
CHEATS += DYNAMIC_CHEATS
