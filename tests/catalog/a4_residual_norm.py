"""Variants of the a4_residual_norm solution: realistic bugs, other correct styles, and cheats.

Every entry replaces one or two exercise cells (by nbgrader grade_id) of
``solutions/a4_residual_norm/residual_norm.ipynb``; the rest of the notebook stays the reference
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
from tests.variants import (
    Cheat,
    Variant,
    expect_failing,
    expect_full_marks,
    expect_no_credit,
    failures,
)

EXERCISES = ("LayerNorm", "RMSNorm", "TransformerBlock")

__all__ = ["ALTERNATIVES", "CHEATS", "EXERCISES", "MUTANTS", "Cheat", "failures"]

# --- building blocks ---------------------------------------------------------------------
# A cell is a class head (signature and docstring), an __init__ and a forward.

LN_HEAD = '''\
class LayerNorm(nn.Module):
    """Layer normalisation over the last dimension (Ba, Kiros & Hinton, 2016), as nn.LayerNorm.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the mean and the biased variance taken
    over the last dimension. Parameters weight (ones) and bias (zeros), of shape (d_model,),
    exist only when elementwise_affine is True.
    """

'''

LN_INIT = '''\
    def __init__(self, d_model, eps=1e-5, elementwise_affine=True):
        """Store eps; create weight and bias when elementwise_affine is True."""
        super().__init__()
        self.eps = eps
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(d_model))
            self.bias = nn.Parameter(torch.zeros(d_model))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

'''

LN_FORWARD_DEF = '''\
    def forward(self, x):
        """Normalise x of shape (..., d_model) over its last dimension; the output has x's shape."""
'''


def layer_norm(body: str, init: str = LN_INIT) -> str:
    return LN_HEAD + init + LN_FORWARD_DEF + body


RMS_HEAD = '''\
class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension (Zhang & Sennrich, 2019).

    y = x / sqrt(mean(x**2) + eps) * weight: no mean subtraction and no bias. Half-precision
    inputs (float16, bfloat16) are normalised in float32; the result has the input's dtype.
    """

    def __init__(self, d_model, eps=1e-5):
        """Store eps and create weight (ones, shape (d_model,))."""
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        """Normalise x of shape (..., d_model) by its root mean square; same shape and dtype out."""
'''


def rms_norm(body: str) -> str:
    return RMS_HEAD + body


BLOCK_HEAD = '''\
class TransformerBlock(nn.Module):
    """A Transformer block: self-attention and a feed-forward network, each in a residual branch.

    Pre-LN (norm_first=True; Xiong et al., 2020):  x = x + attn(norm1(x));  x = x + ffn(norm2(x))
    Post-LN (norm_first=False; Vaswani et al., 2017): x = norm1(x + attn(x)); x = norm2(x + ffn(x))
    Submodules norm1, attn (MultiHeadAttention), norm2 and ffn (FeedForward); the norms are
    LayerNorm(d_model) when norm="layer" and RMSNorm(d_model) when norm="rms".
    """

    def __init__(self, d_model, n_heads, d_ff=None, norm_first=True, activation="gelu", dropout=0.0,
                 bias=True, norm="layer"):
        """Create norm1, attn, norm2 and ffn; raise ValueError for an unknown norm."""
'''

BLOCK_INIT = '''\
        super().__init__()
        if norm not in ("layer", "rms"):
            raise ValueError(f"norm must be 'layer' or 'rms', not {norm!r}")
        make_norm = LayerNorm if norm == "layer" else RMSNorm
        self.norm_first = norm_first
        self.norm1 = make_norm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, bias=bias)
        self.norm2 = make_norm(d_model)
        self.ffn = FeedForward(d_model, d_ff, activation=activation, bias=bias, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

'''

BLOCK_FORWARD_DEF = '''\
    def forward(self, x, mask=None):
        """x of shape (B, T, d_model), mask True = may attend; returns shape (B, T, d_model)."""
'''

BLOCK_FORWARD = '''\
        if self.norm_first:
            x = x + self.dropout(self.attn(self.norm1(x), mask=mask))
            x = x + self.dropout(self.ffn(self.norm2(x)))
        else:
            x = self.norm1(x + self.dropout(self.attn(x, mask=mask)))
            x = self.norm2(x + self.dropout(self.ffn(x)))
        return x
'''


def block(forward: str = BLOCK_FORWARD, init: str = BLOCK_INIT) -> str:
    return BLOCK_HEAD + init + BLOCK_FORWARD_DEF + forward


# --- MUTANTS -------------------------------------------------------------------------------
# LayerNorm

LN_UNBIASED_VARIANCE = layer_norm('''\
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True)  # the variance of the features
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            x_hat = x_hat * self.weight + self.bias
        return x_hat
''')

LN_EPS_OUTSIDE_SQRT = layer_norm('''\
        mean = x.mean(dim=-1, keepdim=True)
        std = (x - mean).pow(2).mean(dim=-1, keepdim=True).sqrt()
        x_hat = (x - mean) / (std + self.eps)  # eps keeps the division safe
        if self.weight is not None:
            x_hat = x_hat * self.weight + self.bias
        return x_hat
''')

LN_HARDCODED_EPS = layer_norm('''\
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        x_hat = (x - mean) / torch.sqrt(var + 1e-5)
        if self.weight is not None:
            x_hat = x_hat * self.weight + self.bias
        return x_hat
''')

LN_OVER_WHOLE_SEQUENCE = layer_norm('''\
        dims = tuple(range(1, x.dim()))  # every dimension of a sample: the whole "layer"
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            x_hat = x_hat * self.weight + self.bias
        return x_hat
''')

LN_IGNORES_AFFINE = layer_norm('''\
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps)
''')

LN_WITHOUT_BIAS = layer_norm('''\
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, unbiased=False, keepdim=True)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            x_hat = x_hat * self.weight
        return x_hat
''')

LN_ONE_PASS_VARIANCE = layer_norm('''\
        mean = x.mean(dim=-1, keepdim=True)
        var = (x * x).mean(dim=-1, keepdim=True) - mean * mean  # Var[x] = E[x^2] - E[x]^2, one pass
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            x_hat = x_hat * self.weight + self.bias
        return x_hat
''')

LN_DETACHED_STATISTICS = layer_norm('''\
        # the statistics are not learned, so no gradient should flow through them
        mean = x.mean(dim=-1, keepdim=True).detach()
        var = x.var(dim=-1, unbiased=False, keepdim=True).detach()
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            x_hat = x_hat * self.weight + self.bias
        return x_hat
''')

LN_CENTRES_IN_PLACE = layer_norm('''\
        x -= x.mean(dim=-1, keepdim=True)  # centre the features
        var = x.pow(2).mean(dim=-1, keepdim=True)
        x_hat = x / torch.sqrt(var + self.eps)
        if self.weight is not None:
            x_hat = x_hat * self.weight + self.bias
        return x_hat
''')

LN_ALWAYS_AFFINE = layer_norm(init='''\
    def __init__(self, d_model, eps=1e-5, elementwise_affine=True):
        """Store eps; create weight and bias when elementwise_affine is True."""
        super().__init__()
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

''', body='''\
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, unbiased=False, keepdim=True)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        if self.elementwise_affine:
            x_hat = x_hat * self.weight + self.bias
        return x_hat
''')

# RMSNorm

RMS_SUBTRACTS_MEAN = rms_norm('''\
        h = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
        h = h - h.mean(dim=-1, keepdim=True)
        h = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (h * self.weight).to(x.dtype)
''')

RMS_IN_HALF_PRECISION = rms_norm('''\
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return x * inv_rms * self.weight
''')

RMS_RETURNS_FLOAT32 = rms_norm('''\
        h = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
        inv_rms = torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return h * inv_rms * self.weight.to(h.dtype)
''')

RMS_ALWAYS_FLOAT32 = rms_norm('''\
        h = x.float()  # normalisation is always done in float32
        inv_rms = torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (h * inv_rms * self.weight).to(x.dtype)
''')

RMS_EUCLIDEAN_NORM = rms_norm('''\
        h = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
        norm = torch.sqrt(h.pow(2).sum(dim=-1, keepdim=True) + self.eps)
        return (h / norm * self.weight).to(x.dtype)
''')

# TransformerBlock

BLOCK_RESIDUAL_ON_NORMALISED = block('''\
        if self.norm_first:
            x = self.norm1(x)
            x = x + self.dropout(self.attn(x, mask=mask))
            x = self.norm2(x)
            x = x + self.dropout(self.ffn(x))
        else:
            x = self.norm1(x + self.dropout(self.attn(x, mask=mask)))
            x = self.norm2(x + self.dropout(self.ffn(x)))
        return x
''')

BLOCK_ALWAYS_PRE_LN = block('''\
        x = x + self.dropout(self.attn(self.norm1(x), mask=mask))
        x = x + self.dropout(self.ffn(self.norm2(x)))
        return x
''')

BLOCK_ALWAYS_POST_LN = block('''\
        x = self.norm1(x + self.dropout(self.attn(x, mask=mask)))
        x = self.norm2(x + self.dropout(self.ffn(x)))
        return x
''')

BLOCK_POST_LN_NORMALISES_THE_BRANCH = block('''\
        if self.norm_first:
            x = x + self.dropout(self.attn(self.norm1(x), mask=mask))
            x = x + self.dropout(self.ffn(self.norm2(x)))
        else:  # normalise after the sublayer
            x = x + self.dropout(self.norm1(self.attn(x, mask=mask)))
            x = x + self.dropout(self.norm2(self.ffn(x)))
        return x
''')

BLOCK_NORM1_REUSED = block('''\
        if self.norm_first:
            x = x + self.dropout(self.attn(self.norm1(x), mask=mask))
            x = x + self.dropout(self.ffn(self.norm1(x)))
        else:
            x = self.norm1(x + self.dropout(self.attn(x, mask=mask)))
            x = self.norm1(x + self.dropout(self.ffn(x)))
        return x
''')

BLOCK_NO_FFN_RESIDUAL = block('''\
        if self.norm_first:
            x = x + self.dropout(self.attn(self.norm1(x), mask=mask))
            x = self.dropout(self.ffn(self.norm2(x)))
        else:
            x = self.norm1(x + self.dropout(self.attn(x, mask=mask)))
            x = self.norm2(self.dropout(self.ffn(x)))
        return x
''')

BLOCK_FUNCTIONAL_DROPOUT = block(init=BLOCK_INIT.replace("        self.dropout = nn.Dropout(dropout)\n",
                                                          "        self.p = dropout\n"), forward='''\
        if self.norm_first:
            x = x + F.dropout(self.attn(self.norm1(x), mask=mask), self.p)
            x = x + F.dropout(self.ffn(self.norm2(x)), self.p)
        else:
            x = self.norm1(x + F.dropout(self.attn(x, mask=mask), self.p))
            x = self.norm2(x + F.dropout(self.ffn(x), self.p))
        return x
''')

BLOCK_ALWAYS_LAYER_NORM = block(init=BLOCK_INIT.replace('make_norm = LayerNorm if norm == "layer" else RMSNorm',
                                                        "make_norm = LayerNorm"))

BLOCK_IGNORES_MASK = block('''\
        if self.norm_first:
            x = x + self.dropout(self.attn(self.norm1(x)))
            x = x + self.dropout(self.ffn(self.norm2(x)))
        else:
            x = self.norm1(x + self.dropout(self.attn(x)))
            x = self.norm2(x + self.dropout(self.ffn(x)))
        return x
''')

BLOCK_IGNORES_ACTIVATION = block(init=BLOCK_INIT.replace(
    "FeedForward(d_model, d_ff, activation=activation, bias=bias, dropout=dropout)",
    "FeedForward(d_model, d_ff, bias=bias, dropout=dropout)"))

BLOCK_SHARED_NORM = block(init=BLOCK_INIT.replace("self.norm2 = make_norm(d_model)",
                                                  "self.norm2 = self.norm1  # the same normalisation"))

BLOCK_IGNORES_BIAS = block(init=BLOCK_INIT.replace("MultiHeadAttention(d_model, n_heads, bias=bias)",
                                                   "MultiHeadAttention(d_model, n_heads)"))

LN_TESTS = ["layernorm_matches_reference", "layernorm_tiny_d_model"]

MUTANTS = [
    # LayerNorm
    Variant("ln_unbiased_variance", {"LayerNorm": LN_UNBIASED_VARIANCE}, fails=LN_TESTS, says="unbiased variance"),
    Variant("ln_eps_outside_sqrt", {"LayerNorm": LN_EPS_OUTSIDE_SQRT},
            fails=["layernorm_eps_inside_sqrt", "layernorm_matches_reference"], says="eps outside the square root"),
    Variant("ln_hardcoded_eps", {"LayerNorm": LN_HARDCODED_EPS}, fails=["layernorm_eps_inside_sqrt"],
            says="hard-coded eps"),
    Variant("ln_statistics_over_the_whole_sequence", {"LayerNorm": LN_OVER_WHOLE_SEQUENCE},
            fails=["layernorm_matches_reference"], says="instead of over each token's features"),
    Variant("ln_forward_ignores_weight_and_bias", {"LayerNorm": LN_IGNORES_AFFINE},
            fails=["layernorm_matches_reference", "layernorm_gradients_match"], says="without weight and bias"),
    Variant("ln_without_bias", {"LayerNorm": LN_WITHOUT_BIAS}, fails=["layernorm_matches_reference"],
            says="without the bias"),
    Variant("ln_one_pass_variance", {"LayerNorm": LN_ONE_PASS_VARIANCE}, fails=["layernorm_float32_stress"],
            says="cancels catastrophically"),
    Variant("ln_detached_statistics", {"LayerNorm": LN_DETACHED_STATISTICS}, fails=["layernorm_gradients_match"],
            says="detached"),
    Variant("ln_centres_input_in_place", {"LayerNorm": LN_CENTRES_IN_PLACE},
            fails=["layernorm_keeps_dtype_device_and_input", "layernorm_gradients_match"], says="modified in place"),
    Variant("ln_parameters_even_without_affine", {"LayerNorm": LN_ALWAYS_AFFINE}, fails=["layernorm_parameters"],
            says="as None"),
    # RMSNorm
    Variant("rms_subtracts_the_mean", {"RMSNorm": RMS_SUBTRACTS_MEAN}, fails=["rmsnorm_matches_reference"],
            says="subtracts the mean"),
    Variant("rms_computed_in_half_precision", {"RMSNorm": RMS_IN_HALF_PRECISION},
            fails=["rmsnorm_float16_large_values", "rmsnorm_half_precision"], says="overflows float16"),
    Variant("rms_returns_float32_for_half_inputs", {"RMSNorm": RMS_RETURNS_FLOAT32},
            fails=["rmsnorm_half_precision", "rmsnorm_float16_large_values"], says="dtype float32, expected float16"),
    Variant("rms_always_computes_in_float32", {"RMSNorm": RMS_ALWAYS_FLOAT32},
            fails=["rmsnorm_matches_reference"], says="must stay float64"),
    Variant("rms_euclidean_norm", {"RMSNorm": RMS_EUCLIDEAN_NORM}, fails=["rmsnorm_matches_reference"],
            says="Euclidean norm"),
    # TransformerBlock
    Variant("block_residual_added_to_normalised_x", {"TransformerBlock": BLOCK_RESIDUAL_ON_NORMALISED},
            fails=["block_pre_ln_matches_torch", "block_pre_ln_identity_path", "block_gradients_match"],
            says="the residual added to the normalised x"),
    Variant("block_norm_first_ignored_always_pre_ln", {"TransformerBlock": BLOCK_ALWAYS_PRE_LN},
            fails=["block_post_ln_matches_torch", "block_pre_ln_identity_path", "block_gradient_profile_pre_vs_post"],
            says="but norm_first=False asks for Post-LN"),
    Variant("block_norm_first_ignored_always_post_ln", {"TransformerBlock": BLOCK_ALWAYS_POST_LN},
            fails=["block_pre_ln_matches_torch", "block_pre_ln_identity_path", "block_gradient_profile_pre_vs_post"],
            says="but norm_first=True asks for Pre-LN"),
    Variant("block_post_ln_normalises_the_branch", {"TransformerBlock": BLOCK_POST_LN_NORMALISES_THE_BRANCH},
            fails=["block_post_ln_matches_torch", "block_pre_ln_identity_path"],
            says="the norm applied to the branch output"),
    Variant("block_norm1_used_twice", {"TransformerBlock": BLOCK_NORM1_REUSED},
            fails=["block_pre_ln_matches_torch", "block_post_ln_matches_torch", "block_gradients_match"],
            says="norm1 used before the FFN as well"),
    Variant("block_without_ffn_residual", {"TransformerBlock": BLOCK_NO_FFN_RESIDUAL},
            fails=["block_pre_ln_matches_torch", "block_post_ln_matches_torch"],
            says="no residual connection around the FFN"),
    Variant("block_functional_dropout_in_eval", {"TransformerBlock": BLOCK_FUNCTIONAL_DROPOUT},
            fails=["block_keeps_dtype_device_and_input"], says="in eval() mode dropout must do nothing"),
    Variant("block_norm_rms_ignored", {"TransformerBlock": BLOCK_ALWAYS_LAYER_NORM},
            fails=["block_structure", "block_rms_matches_reference"], says="RMSNorm"),
    Variant("block_mask_not_passed_to_attention", {"TransformerBlock": BLOCK_IGNORES_MASK},
            fails=["block_passes_the_mask"], says="the mask ignored"),
    Variant("block_activation_ignored", {"TransformerBlock": BLOCK_IGNORES_ACTIVATION},
            fails=["block_pre_ln_matches_torch", "block_post_ln_matches_torch"], says="but activation='relu'"),
    Variant("block_norm2_is_norm1", {"TransformerBlock": BLOCK_SHARED_NORM},
            fails=["block_structure", "block_output_shape"], says="two separate norms"),
    Variant("block_bias_not_passed_to_attention", {"TransformerBlock": BLOCK_IGNORES_BIAS},
            fails=["block_structure"], says="bias=bias"),
]

# --- ALTERNATIVES --------------------------------------------------------------------------

LN_VAR_MEAN_RSQRT = layer_norm('''\
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)  # (..., 1) each
        x_hat = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is None:
            return x_hat
        return torch.addcmul(self.bias, x_hat, self.weight)
''')

LN_AFFINE_FLAG_AND_UNBIASED_FALSE = layer_norm(init='''\
    def __init__(self, d_model, eps=1e-5, elementwise_affine=True):
        """Store eps; create weight and bias when elementwise_affine is True."""
        super().__init__()
        self.d_model, self.eps, self.elementwise_affine = d_model, eps, elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.empty(d_model))
            self.bias = nn.Parameter(torch.empty(d_model))
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)
        else:
            self.weight, self.bias = None, None

''', body='''\
        mu = torch.mean(x, -1, keepdim=True)
        sigma = torch.sqrt(torch.var(x, -1, unbiased=False, keepdim=True) + self.eps)
        out = (x - mu) / sigma
        return out * self.weight + self.bias if self.elementwise_affine else out
''')

RMS_LLAMA_ORDER = rms_norm('''\
        input_dtype = x.dtype
        h = x.to(torch.float32) if input_dtype in (torch.float16, torch.bfloat16) else x
        h = h / torch.sqrt(h.square().mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(input_dtype)  # LLaMA's order: cast back, then scale
''')

RMS_VECTOR_NORM = rms_norm('''\
        compute_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        h = x.to(compute_dtype)
        rms = torch.linalg.vector_norm(h, dim=-1, keepdim=True) / math.sqrt(h.shape[-1])
        y = h / torch.sqrt(rms * rms + self.eps) * self.weight.to(compute_dtype)
        return y.type_as(x)
''')

BLOCK_TWO_METHODS = BLOCK_HEAD + '''\
        super().__init__()
        norms = {"layer": LayerNorm, "rms": RMSNorm}
        if norm not in norms:
            raise ValueError(f"unknown norm {norm!r}")
        self.norm_first = norm_first
        self.norm1, self.norm2 = norms[norm](d_model), norms[norm](d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, bias=bias)
        self.ffn = FeedForward(d_model, d_ff, activation=activation, bias=bias, dropout=dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _sa_block(self, x, mask):
        return self.dropout1(self.attn(x, mask=mask))

    def _ff_block(self, x):
        return self.dropout2(self.ffn(x))

    def _pre_ln(self, x, mask):
        x = x + self._sa_block(self.norm1(x), mask)
        return x + self._ff_block(self.norm2(x))

    def _post_ln(self, x, mask):
        x = self.norm1(x + self._sa_block(x, mask))
        return self.norm2(x + self._ff_block(x))

    def forward(self, x, mask=None):
        """x of shape (B, T, d_model), mask True = may attend; returns shape (B, T, d_model)."""
        return self._pre_ln(x, mask) if self.norm_first else self._post_ln(x, mask)
'''

BLOCK_SUBLAYER_LOOP = block(forward='''\
        sublayers = [(self.norm1, lambda h: self.attn(h, mask=mask)), (self.norm2, self.ffn)]
        for norm, sublayer in sublayers:
            if self.norm_first:
                x = x + self.dropout(sublayer(norm(x)))
            else:
                x = norm(x + self.dropout(sublayer(x)))
        return x
''')

ALTERNATIVES = [
    Variant("ln_var_mean_rsqrt_addcmul", {"LayerNorm": LN_VAR_MEAN_RSQRT}),
    Variant("ln_affine_flag_and_var_unbiased_false", {"LayerNorm": LN_AFFINE_FLAG_AND_UNBIASED_FALSE}),
    Variant("rms_llama_order_cast_then_scale", {"RMSNorm": RMS_LLAMA_ORDER}),
    Variant("rms_from_vector_norm", {"RMSNorm": RMS_VECTOR_NORM}),
    Variant("block_pre_and_post_as_two_methods", {"TransformerBlock": BLOCK_TWO_METHODS}),
    Variant("block_loop_over_sublayers", {"TransformerBlock": BLOCK_SUBLAYER_LOOP}),
]

# --- CHEATS --------------------------------------------------------------------------------

LAYER_NORM_BLOCK_TESTS = ["block_output_shape", "block_pre_ln_matches_torch", "block_post_ln_matches_torch",
                          "block_passes_the_mask", "block_gradients_match"]

# (a) The forbidden built-in, called directly.
CHEAT_CALLS_F_LAYER_NORM = layer_norm('''\
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
''')


def check_calls_f_layer_norm(report: GradeReport) -> None:
    expect_no_credit(report, "LayerNorm", "built-in layer norm")
    expect_full_marks(report, "RMSNorm")
    # Verdict changed with the usage policy (issue 8): the block reaches the built-in through the student's
    # LayerNorm, and a forbidden use counts wherever the exercise's code reaches it, so the whole block scores 0
    # (its RMSNorm test used to pass).
    expect_forbidden(report, "TransformerBlock", "F.layer_norm", "built-in layer norm")


# (b) A subclass of nn.LayerNorm: the same parameters, no work.
CHEAT_SUBCLASSES_NN_LAYER_NORM = '''\
class LayerNorm(nn.LayerNorm):
    """Layer normalisation over the last dimension (Ba, Kiros & Hinton, 2016), as nn.LayerNorm.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the mean and the biased variance taken
    over the last dimension. Parameters weight (ones) and bias (zeros), of shape (d_model,),
    exist only when elementwise_affine is True.
    """

    def __init__(self, d_model, eps=1e-5, elementwise_affine=True):
        """Store eps; create weight and bias when elementwise_affine is True."""
        super().__init__(d_model, eps=eps, elementwise_affine=elementwise_affine)
'''


def check_subclasses_nn_layer_norm(report: GradeReport) -> None:
    expect_no_credit(report, "LayerNorm", "built-in layer norm")
    expect_full_marks(report, "RMSNorm")
    # The block reaches nn.LayerNorm through the student's LayerNorm: forbidden there too (issue 8: whole program).
    expect_forbidden(report, "TransformerBlock", "nn.LayerNorm", "built-in layer norm")


# (c) Patch the worker's comparison functions, hoping the grader compares there; the layer norm
# itself uses the unbiased variance.
CHEAT_PATCHED_COMPARISONS = '''\
import torch.testing

torch.allclose = lambda *args, **kwargs: True
torch.Tensor.allclose = lambda self, *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None


''' + LN_UNBIASED_VARIANCE


def check_patched_comparisons(report: GradeReport) -> None:
    # Verdict changed with the usage policy (issue 8): module-level code runs for every exercise, and it reaches
    # torch.testing and rewrites torch's functions, so every exercise loses its points.
    for exercise in EXERCISES:
        expect_forbidden(report, exercise, "torch.testing")
    assert any("assigns to torch.allclose" in note for note in report.review), report.review


# (d) sys.exit inside RMSNorm: the worker catches SystemExit like any exception, and the
# LayerNorm block is still graded.
CHEAT_SYS_EXIT_IN_RMS_NORM = rms_norm('''\
        import sys

        sys.exit(0)  # "exit cleanly" before anything can be checked
''')


def check_sys_exit(report: GradeReport) -> None:
    expect_no_credit(report, "RMSNorm", "SystemExit", tests=["rmsnorm_matches_reference", "rmsnorm_half_precision"])
    expect_full_marks(report, "LayerNorm")
    expect_failing(report, ["block_rms_matches_reference"], "SystemExit")
    # Verdict changed with the usage policy (issue 8): the block's code reaches the student's RMSNorm, which imports
    # sys, so under strict grading the block needs review and scores 0 (its LayerNorm tests used to pass).
    expect_needs_review(report, "TransformerBlock", "import sys")


# (e) The forbidden RMS norm through a module-level alias.
CHEAT_ALIASED_RMS_NORM = '''\
_rms = torch.rms_norm


''' + rms_norm('''\
        return _rms(x, (x.shape[-1],), self.weight, self.eps)
''')


def check_aliased_rms_norm(report: GradeReport) -> None:
    expect_no_credit(report, "RMSNorm", "built-in RMS norm")
    expect_full_marks(report, "LayerNorm")
    expect_failing(report, ["block_rms_matches_reference"], "rms_norm")


# (f) The block handed to nn.TransformerEncoderLayer, with the expected submodules kept for show.
CHEAT_WRAPS_ENCODER_LAYER = block(init=BLOCK_INIT + '''\
        self.shadow = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=self.ffn.up.out_features,
                                                 dropout=0.0, activation=activation, batch_first=True,
                                                 norm_first=norm_first)
        self.n_heads = n_heads

''', forward='''\
        layer = self.shadow
        with torch.no_grad():
            layer.self_attn.in_proj_weight.copy_(torch.cat([self.attn.q_proj.weight, self.attn.k_proj.weight,
                                                            self.attn.v_proj.weight]))
            layer.self_attn.out_proj.weight.copy_(self.attn.out_proj.weight)
        return layer(x, src_mask=None if mask is None else ~mask)
''')


def check_wraps_encoder_layer(report: GradeReport) -> None:
    expect_no_credit(report, "TransformerBlock", "Transformer layers")
    expect_full_marks(report, "LayerNorm", "RMSNorm")


CHEATS = [
    Cheat("calls_f_layer_norm", {"LayerNorm": CHEAT_CALLS_F_LAYER_NORM}, check=check_calls_f_layer_norm),
    Cheat("subclasses_nn_layer_norm", {"LayerNorm": CHEAT_SUBCLASSES_NN_LAYER_NORM},
          check=check_subclasses_nn_layer_norm),
    Cheat("patches_torch_comparisons_in_the_worker", {"LayerNorm": CHEAT_PATCHED_COMPARISONS},
          check=check_patched_comparisons),
    Cheat("sys_exit_in_rms_norm", {"RMSNorm": CHEAT_SYS_EXIT_IN_RMS_NORM}, check=check_sys_exit),
    Cheat("module_level_alias_of_torch_rms_norm", {"RMSNorm": CHEAT_ALIASED_RMS_NORM}, check=check_aliased_rms_norm),
    Cheat("wraps_nn_transformer_encoder_layer", {"TransformerBlock": CHEAT_WRAPS_ENCODER_LAYER},
          check=check_wraps_encoder_layer),
]
