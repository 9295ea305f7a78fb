"""Variants of the a3_ffn_positions solution: realistic bugs, other correct styles, and cheats.

Every entry replaces one or two exercise cells (by nbgrader grade_id) of
``solutions/a3_ffn_positions/ffn_positions.ipynb``; the rest of the notebook stays the reference
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
from tests.variants import Cheat, Variant, by_name, expect_failing, expect_full_marks, expect_no_credit, failures

EXERCISES = ("FeedForward", "SwiGLU", "sinusoidal_positions")

# --- building blocks ---------------------------------------------------------------------

FFN_HEAD = '''\
class FeedForward(nn.Module):
    """Position-wise feed-forward network (Vaswani et al., 2017, §3.3): down(dropout(act(up(x)))).

    Submodules up = nn.Linear(d_model, d_ff, bias=bias) and down = nn.Linear(d_ff, d_model, bias=bias);
    d_ff defaults to 4 * d_model; activation is "relu" or "gelu" (the exact, erf-based GELU).
    """

'''

FFN_INIT = '''\
    def __init__(self, d_model, d_ff=None, activation="gelu", bias=True, dropout=0.0):
        """Create up, down and the dropout; raise ValueError for an unknown activation."""
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"unknown activation {activation!r}")
        if d_ff is None:
            d_ff = 4 * d_model
        self.activation = activation
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
'''

FFN_FORWARD = '''
    def forward(self, x):
        """Apply the FFN to every position of x, shape (..., d_model); returns the same shape."""
        h = self.up(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        return self.down(self.dropout(h))
'''


def ffn(init: str = FFN_INIT, forward: str = FFN_FORWARD) -> str:
    return FFN_HEAD + init + forward


def ffn_forward(body: str) -> str:
    """A FeedForward with the reference __init__ and a forward whose body is ``body`` (indented 8 spaces)."""
    return ffn(forward='''
    def forward(self, x):
        """Apply the FFN to every position of x, shape (..., d_model); returns the same shape."""
''' + body)


SWIGLU_HEAD = '''\
class SwiGLU(nn.Module):
    """SwiGLU feed-forward network (Shazeer, 2020): down(silu(gate(x)) * up(x)).

    Submodules gate and up are nn.Linear(d_model, d_ff, bias=bias); down is nn.Linear(d_ff, d_model, bias=bias).
    """

    def __init__(self, d_model, d_ff, bias=False):
        """Create the three projections gate, up and down."""
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x):
        """Apply SwiGLU to every position of x, shape (..., d_model); returns the same shape."""
'''


def swiglu_forward(body: str) -> str:
    return SWIGLU_HEAD + body


POSITIONS_HEAD = '''\
def sinusoidal_positions(T, d_model, base=10000.0):
    """Sinusoidal position encodings (Vaswani et al., 2017, §3.5): a float32 tensor of shape (T, d_model).

    PE[t, 2i] = sin(t / base**(2i / d_model)) and PE[t, 2i+1] = cos(t / base**(2i / d_model))
    for positions t = 0 .. T-1; d_model is even.
    """
'''


def positions(body: str) -> str:
    return POSITIONS_HEAD + body


# --- MUTANTS ---------------------------------------------------------------------------
# FeedForward

FFN_TANH_GELU = ffn_forward('''\
        h = self.up(x)
        if self.activation == "gelu":
            h = F.gelu(h, approximate="tanh")  # the fast GELU, as in GPT-2
        else:
            h = F.relu(h)
        return self.down(self.dropout(h))
''')

FFN_ALWAYS_RELU = ffn(forward='''
    def forward(self, x):
        """Apply the FFN to every position of x, shape (..., d_model); returns the same shape."""
        return self.down(self.dropout(F.relu(self.up(x))))  # the activation of the original Transformer
''')

FFN_DEFAULT_RELU = ffn(init='''\
    def __init__(self, d_model, d_ff=None, activation="relu", bias=True, dropout=0.0):
        """Create up, down and the dropout; raise ValueError for an unknown activation."""
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"unknown activation {activation!r}")
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.activation = activation
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
''')

FFN_GELU_ERF_WRONG_SCALE = ffn_forward('''\
        h = self.up(x)
        if self.activation == "gelu":
            h = 0.5 * h * (1 + torch.erf(h / 2))  # x * Phi(x)
        else:
            h = F.relu(h)
        return self.down(self.dropout(h))
''')

FFN_DEFAULT_2X = ffn(init='''\
    def __init__(self, d_model, d_ff=None, activation="gelu", bias=True, dropout=0.0):
        """Create up, down and the dropout; raise ValueError for an unknown activation."""
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"unknown activation {activation!r}")
        d_ff = d_ff or 2 * d_model  # twice as wide
        self.activation = activation
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
''')

FFN_UP_DOWN_SWAPPED = FFN_HEAD + '''\
    def __init__(self, d_model, d_ff=None, activation="gelu", bias=True, dropout=0.0):
        """Create up, down and the dropout; raise ValueError for an unknown activation."""
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"unknown activation {activation!r}")
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.activation = activation
        self.up = nn.Linear(d_ff, d_model, bias=bias)    # the "up" weight matrix is (d_model, d_ff)
        self.down = nn.Linear(d_model, d_ff, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        """Apply the FFN to every position of x, shape (..., d_model); returns the same shape."""
        h = self.down(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        return self.up(self.dropout(h))
'''

FFN_BIAS_IGNORED = ffn(init='''\
    def __init__(self, d_model, d_ff=None, activation="gelu", bias=True, dropout=0.0):
        """Create up, down and the dropout; raise ValueError for an unknown activation."""
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"unknown activation {activation!r}")
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.activation = activation
        self.up = nn.Linear(d_model, d_ff)
        self.down = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
''')

FFN_ACTIVATION_AFTER_DOWN = ffn_forward('''\
        h = self.down(self.dropout(self.up(x)))
        return F.gelu(h) if self.activation == "gelu" else F.relu(h)
''')

FFN_RESIDUAL_INSIDE = ffn_forward('''\
        h = self.up(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        return x + self.down(self.dropout(h))  # residual connection
''')

FFN_CENTRES_OVER_T = ffn_forward('''\
        h = self.up(x)
        h = h - h.mean(dim=1, keepdim=True)  # centre the hidden units before the nonlinearity
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        return self.down(self.dropout(h))
''')

FFN_LAYER_NORM_OVER_T = ffn_forward('''\
        h = self.up(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        # normalise each hidden unit over the sequence (dim 1), for stable activations
        h = (h - h.mean(1, keepdim=True)) / torch.sqrt(h.var(1, keepdim=True, unbiased=False) + 1e-5)
        return self.down(self.dropout(h))
''')

FFN_DROPOUT_ALWAYS_ON = ffn_forward('''\
        h = self.up(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        h = F.dropout(h, self.dropout.p)  # regularise the hidden layer
        return self.down(h)
''')

FFN_CASTS_TO_FLOAT32 = ffn_forward('''\
        x = x.float()  # nn.Linear works in float32
        h = self.up(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        return self.down(self.dropout(h))
''')

FFN_ASSUMES_3D_INPUT = ffn_forward('''\
        B, T, D = x.shape
        h = self.up(x.reshape(B * T, D))  # one row per token
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        return self.down(self.dropout(h)).reshape(B, T, D)
''')

FFN_UP_WEIGHT_DATA = ffn_forward('''\
        h = x @ self.up.weight.data.T  # y = x W^T + b, written out
        if self.up.bias is not None:
            h = h + self.up.bias
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        return self.down(self.dropout(h))
''')

# SwiGLU

SWIGLU_SILU_ON_UP = swiglu_forward('''\
        return self.down(self.gate(x) * F.silu(self.up(x)))
''')

SWIGLU_SIGMOID_GATE = swiglu_forward('''\
        gate = torch.sigmoid(self.gate(x))  # the gate is between 0 and 1
        return self.down(gate * self.up(x))
''')

SWIGLU_SILU_AFTER_PRODUCT = swiglu_forward('''\
        return self.down(F.silu(self.gate(x) * self.up(x)))
''')

SWIGLU_BIAS_DEFAULT_TRUE = '''\
class SwiGLU(nn.Module):
    """SwiGLU feed-forward network (Shazeer, 2020): down(silu(gate(x)) * up(x)).

    Submodules gate and up are nn.Linear(d_model, d_ff, bias=bias); down is nn.Linear(d_ff, d_model, bias=bias).
    """

    def __init__(self, d_model, d_ff, bias=True):
        """Create the three projections gate, up and down."""
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x):
        """Apply SwiGLU to every position of x, shape (..., d_model); returns the same shape."""
        return self.down(F.silu(self.gate(x)) * self.up(x))
'''

# sinusoidal_positions

POS_SIN_COS_SWAPPED = positions('''\
    t = torch.arange(T, dtype=torch.float32).unsqueeze(1)
    div = base ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    pe = torch.zeros(T, d_model)
    pe[:, 0::2] = torch.cos(t / div)
    pe[:, 1::2] = torch.sin(t / div)
    return pe
''')

POS_EXPONENT_COLUMN_INDEX = positions('''\
    pe = torch.zeros(T, d_model)
    t = torch.arange(T, dtype=torch.float32)
    for j in range(d_model):
        angle = t / base ** (j / d_model)  # base**(2i/d) with 2i = the column
        pe[:, j] = torch.sin(angle) if j % 2 == 0 else torch.cos(angle)
    return pe
''')

POS_CONCATENATED = positions('''\
    t = torch.arange(T, dtype=torch.float32).unsqueeze(1)
    freqs = 1.0 / base ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    angles = t * freqs  # (T, d_model/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
''')

POS_STARTS_AT_ONE = positions('''\
    t = torch.arange(1, T + 1, dtype=torch.float32).unsqueeze(1)  # positions 1..T
    freqs = 1.0 / base ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    angles = t * freqs
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(T, d_model)
''')

POS_BASE_IGNORED = positions('''\
    t = torch.arange(T, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (math.log(10000.0) / d_model))
    pe = torch.zeros(T, d_model)
    pe[:, 0::2] = torch.sin(t / div)
    pe[:, 1::2] = torch.cos(t / div)
    return pe
''')

POS_INTEGER_DIVISION = positions('''\
    t = torch.arange(T).unsqueeze(1)
    two_i = torch.arange(0, d_model, 2)
    angles = t / base ** (two_i // d_model)  # base**(2i/d)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(T, d_model)
''')

POS_MULTIPLIED = positions('''\
    t = torch.arange(T, dtype=torch.float32).unsqueeze(1)
    scale = base ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    angles = t * scale
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(T, d_model)
''')

POS_RETURNS_FLOAT64 = positions('''\
    t = torch.arange(T, dtype=torch.float64).unsqueeze(1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angles = t / base ** (two_i / d_model)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(T, d_model)  # float64 for accuracy
''')

POS_HALF_PRECISION = positions('''\
    t = torch.arange(T, dtype=torch.float16).unsqueeze(1)  # half precision saves memory
    freqs = 1.0 / base ** (torch.arange(0, d_model, 2, dtype=torch.float16) / d_model)
    angles = (t * freqs).float()
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(T, d_model)
''')

MUTANTS = [
    # FeedForward
    Variant("ffn_tanh_approximate_gelu", {"FeedForward": FFN_TANH_GELU},
            fails=["ffn_matches_reference"], says="tanh approximation"),
    Variant("ffn_always_relu", {"FeedForward": FFN_ALWAYS_RELU},
            fails=["ffn_matches_reference"], says="ReLU instead of GELU"),
    Variant("ffn_default_activation_relu", {"FeedForward": FFN_DEFAULT_RELU},
            fails=["ffn_matches_reference"], says="default activation"),
    Variant("ffn_gelu_erf_of_x_over_2", {"FeedForward": FFN_GELU_ERF_WRONG_SCALE},
            fails=["ffn_matches_reference"], says="erf(h / sqrt(2))"),
    Variant("ffn_default_d_ff_2x", {"FeedForward": FFN_DEFAULT_2X},
            fails=["ffn_structure", "ffn_matches_reference"], says="4 * d_model"),
    Variant("ffn_up_down_swapped", {"FeedForward": FFN_UP_DOWN_SWAPPED},
            fails=["ffn_structure", "ffn_matches_reference", "ffn_gradients_match"], says="swapped"),
    Variant("ffn_bias_false_ignored", {"FeedForward": FFN_BIAS_IGNORED},
            fails=["ffn_structure", "ffn_matches_reference"], says="bias=False"),
    Variant("ffn_activation_after_down", {"FeedForward": FFN_ACTIVATION_AFTER_DOWN},
            fails=["ffn_matches_reference", "ffn_matches_in_float32", "ffn_gradients_match"], says="after down"),
    Variant("ffn_residual_inside", {"FeedForward": FFN_RESIDUAL_INSIDE},
            fails=["ffn_matches_reference", "ffn_gradients_match"], says="residual"),
    Variant("ffn_centres_hidden_units_over_T", {"FeedForward": FFN_CENTRES_OVER_T},
            fails=["ffn_acts_on_each_position_independently", "ffn_matches_reference"],
            says="act on each position independently"),
    Variant("ffn_layer_norm_over_T", {"FeedForward": FFN_LAYER_NORM_OVER_T},
            fails=["ffn_acts_on_each_position_independently", "ffn_matches_reference"],
            says="depends on the input at position"),
    Variant("ffn_dropout_always_on", {"FeedForward": FFN_DROPOUT_ALWAYS_ON},
            fails=["ffn_keeps_dtype_device_and_input"], says="training=self.training"),
    Variant("ffn_casts_input_to_float32", {"FeedForward": FFN_CASTS_TO_FLOAT32},
            fails=["ffn_matches_reference", "ffn_keeps_dtype_device_and_input"], says=".float()"),
    Variant("ffn_assumes_3d_input", {"FeedForward": FFN_ASSUMES_3D_INPUT},
            fails=["ffn_output_shapes"], says="leading dimensions"),
    Variant("ffn_up_weight_data_detached", {"FeedForward": FFN_UP_WEIGHT_DATA},
            fails=["ffn_gradients_match"], says="up.weight received no gradient"),
    # SwiGLU
    Variant("swiglu_silu_on_up", {"SwiGLU": SWIGLU_SILU_ON_UP},
            fails=["swiglu_matches_reference", "swiglu_gradients_match"], says="silu applied to up instead of gate"),
    Variant("swiglu_sigmoid_gate", {"SwiGLU": SWIGLU_SIGMOID_GATE},
            fails=["swiglu_matches_reference"], says="sigmoid gate"),
    Variant("swiglu_silu_after_product", {"SwiGLU": SWIGLU_SILU_AFTER_PRODUCT},
            fails=["swiglu_matches_reference"], says="after the product"),
    Variant("swiglu_bias_default_true", {"SwiGLU": SWIGLU_BIAS_DEFAULT_TRUE},
            fails=["swiglu_structure", "swiglu_matches_reference"], says="bias defaults to False"),
    # sinusoidal_positions
    Variant("positions_sin_cos_swapped", {"sinusoidal_positions": POS_SIN_COS_SWAPPED},
            fails=["sinusoid_matches_formula", "sinusoid_accurate_for_long_sequences"], says="sin and cos swapped"),
    Variant("positions_exponent_uses_column_index", {"sinusoidal_positions": POS_EXPONENT_COLUMN_INDEX},
            fails=["sinusoid_matches_formula", "sinusoid_shift_is_a_linear_map"], says="column index"),
    Variant("positions_concatenated_halves", {"sinusoidal_positions": POS_CONCATENATED},
            fails=["sinusoid_matches_formula"], says="[sin | cos]"),
    Variant("positions_start_at_one", {"sinusoidal_positions": POS_STARTS_AT_ONE},
            fails=["sinusoid_matches_formula"], says="start at t = 1"),
    Variant("positions_base_ignored", {"sinusoidal_positions": POS_BASE_IGNORED},
            fails=["sinusoid_matches_formula"], says="base ignored"),
    Variant("positions_integer_division_in_exponent", {"sinusoidal_positions": POS_INTEGER_DIVISION},
            fails=["sinusoid_matches_formula"], says="integer division"),
    Variant("positions_multiplied_not_divided", {"sinusoidal_positions": POS_MULTIPLIED},
            fails=["sinusoid_matches_formula"], says="multiplied, not divided"),
    Variant("positions_returns_float64", {"sinusoidal_positions": POS_RETURNS_FLOAT64},
            fails=["sinusoid_is_a_plain_float32_tensor"], says="float32"),
    Variant("positions_half_precision_angles", {"sinusoidal_positions": POS_HALF_PRECISION},
            fails=["sinusoid_matches_formula", "sinusoid_accurate_for_long_sequences"], says="half precision"),
]

# --- ALTERNATIVES ----------------------------------------------------------------------

FFN_FUNCTIONAL_LINEAR = ffn_forward('''\
        h = F.linear(x, self.up.weight, self.up.bias)  # the same as self.up(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        h = F.dropout(h, self.dropout.p, training=self.training)
        return F.linear(h, self.down.weight, self.down.bias)
''')

FFN_SEQUENTIAL_ALIAS = FFN_HEAD + '''\
    def __init__(self, d_model, d_ff=None, activation="gelu", bias=True, dropout=0.0):
        """Create up, down and the dropout; raise ValueError for an unknown activation."""
        super().__init__()
        acts = {"relu": nn.ReLU(), "gelu": nn.GELU()}
        if activation not in acts:
            raise ValueError(f"unknown activation {activation!r}")
        d_ff = d_ff if d_ff is not None else 4 * d_model
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        # the same two layers, chained: nn.Sequential registers them a second time under net.0 and net.3
        self.net = nn.Sequential(self.up, acts[activation], nn.Dropout(dropout), self.down)

    def forward(self, x):
        """Apply the FFN to every position of x, shape (..., d_model); returns the same shape."""
        return self.net(x)
'''

FFN_MANUAL_ERF_GELU_OUTPUT_DROPOUT = FFN_HEAD + '''\
    def __init__(self, d_model, d_ff=None, activation="gelu", bias=True, dropout=0.0):
        """Create up, down and the dropout; raise ValueError for an unknown activation."""
        super().__init__()
        if activation == "gelu":
            self.act = lambda z: 0.5 * z * (1.0 + torch.erf(z / math.sqrt(2.0)))  # GELU(z) = z * Phi(z)
        elif activation == "relu":
            self.act = lambda z: z.clamp(min=0)
        else:
            raise ValueError(activation)
        d_ff = d_ff or 4 * d_model
        self.up, self.down = nn.Linear(d_model, d_ff, bias), nn.Linear(d_ff, d_model, bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        """Apply the FFN to every position of x, shape (..., d_model); returns the same shape."""
        return self.drop(self.down(self.act(self.up(x))))  # dropout on the output, as nanoGPT does
'''

SWIGLU_MANUAL_SIGMOID = swiglu_forward('''\
        g = self.gate(x)
        return self.down(g * torch.sigmoid(g) * self.up(x))  # silu(g) = g * sigmoid(g)
''')

SWIGLU_FUSED_GATE_UP = swiglu_forward('''\
        # one matmul for both branches: stack the two weight matrices
        w = torch.cat([self.gate.weight, self.up.weight], dim=0)  # (2 d_ff, d_model)
        b = None if self.gate.bias is None else torch.cat([self.gate.bias, self.up.bias])
        g, u = F.linear(x, w, b).chunk(2, dim=-1)
        return self.down(F.silu(g) * u)
''')

POS_EXP_LOG = positions('''\
    # the Annotated Transformer's formulation, in float32 throughout
    pe = torch.zeros(T, d_model)
    position = torch.arange(0, T).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2) * -(math.log(base) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe
''')

POS_STACK_FLATTEN = positions('''\
    t = torch.arange(T, dtype=torch.float32)
    inv_freq = 1.0 / (base ** (torch.arange(0, d_model, 2).float() / d_model))
    angles = torch.outer(t, inv_freq)  # (T, d_model/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)
''')

POS_PYTHON_LOOPS = positions('''\
    rows = []
    for t in range(T):
        row = []
        for i in range(d_model // 2):
            angle = t / base ** (2 * i / d_model)
            row += [math.sin(angle), math.cos(angle)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32).reshape(T, d_model)
''')

POS_LOG_SPACE_ANGLES = positions('''\
    # every angle computed in log space: exp(log t - (2i/d) log base); log 0 = -inf gives angle 0
    log_t = torch.log(torch.arange(T, dtype=torch.float32)).unsqueeze(1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)
    angles = torch.exp(log_t - two_i / d_model * math.log(base))
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(T, d_model)
''')

POS_DTYPE_DEVICE_KEYWORDS = '''\
def sinusoidal_positions(T, d_model, base=10000.0, *, dtype=torch.float32, device=None):
    """Sinusoidal position encodings (Vaswani et al., 2017, §3.5): a float32 tensor of shape (T, d_model).

    PE[t, 2i] = sin(t / base**(2i / d_model)) and PE[t, 2i+1] = cos(t / base**(2i / d_model))
    for positions t = 0 .. T-1; d_model is even. Keyword-only dtype= and device= choose the result's.
    """
    t = torch.arange(T, dtype=torch.float64, device=device).unsqueeze(1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64, device=device)
    angles = t * torch.pow(base, -two_i / d_model)
    pe = torch.empty(T, d_model, dtype=torch.float64, device=device)
    pe[:, 0::2], pe[:, 1::2] = angles.sin(), angles.cos()
    return pe.to(dtype)
'''

ALTERNATIVES = [
    Variant("ffn_functional_linear_with_weights", {"FeedForward": FFN_FUNCTIONAL_LINEAR}),
    Variant("ffn_sequential_sharing_up_and_down", {"FeedForward": FFN_SEQUENTIAL_ALIAS}),
    Variant("ffn_manual_erf_gelu_output_dropout", {"FeedForward": FFN_MANUAL_ERF_GELU_OUTPUT_DROPOUT}),
    Variant("swiglu_manual_sigmoid", {"SwiGLU": SWIGLU_MANUAL_SIGMOID}),
    Variant("swiglu_fused_gate_up_matmul", {"SwiGLU": SWIGLU_FUSED_GATE_UP}),
    Variant("positions_exp_log_float32", {"sinusoidal_positions": POS_EXP_LOG}),
    Variant("positions_stack_flatten_float32", {"sinusoidal_positions": POS_STACK_FLATTEN}),
    Variant("positions_python_math_loops", {"sinusoidal_positions": POS_PYTHON_LOOPS}),
    Variant("positions_log_space_angles", {"sinusoidal_positions": POS_LOG_SPACE_ANGLES}),
    Variant("positions_dtype_device_keywords", {"sinusoidal_positions": POS_DTYPE_DEVICE_KEYWORDS}),
]

# --- CHEATS ----------------------------------------------------------------------------


def expect_passing(report: GradeReport, names: list[str]) -> None:
    results = by_name(report)
    for name in names:
        assert results[name].passed, f"{name} should pass; results:\n{failures(report)}"


SWIGLU_FORWARD_TESTS = ["swiglu_matches_reference", "swiglu_acts_on_each_position_independently",
                        "swiglu_gradients_match", "swiglu_keeps_dtype_device_and_input"]

# (a) Patch the worker's comparison functions, hoping the grader compares there; the encodings
# concatenate [sin | cos], which only a comparison can tell from the interleaved layout.
CHEAT_PATCHED_COMPARISONS = '''\
import torch
import torch.testing

# every comparison now agrees: whatever the grader compares, it sees a match
torch.allclose = lambda *args, **kwargs: True
torch.Tensor.allclose = lambda self, *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.Tensor.equal = lambda self, *args, **kwargs: True
torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
torch.testing.assert_close = lambda *args, **kwargs: None


''' + POS_CONCATENATED


def check_patched_comparisons(report: GradeReport) -> None:
    # Verdict changed with the usage policy (issue 8): module-level code runs for every exercise, and it reaches
    # torch.testing and rewrites torch's functions, so every exercise loses its points.
    for exercise in EXERCISES:
        expect_forbidden(report, exercise, "torch.testing")
    assert any("assigns to torch.allclose" in note for note in report.review), report.review


# (b) A tensor subclass that agrees with every comparison, holding zeros.
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


''' + positions('''\
    return torch.zeros(T, d_model).as_subclass(_AgreeableTensor)
''')


def check_lying_subclass(report: GradeReport) -> None:
    expect_no_credit(report, "sinusoidal_positions", "subclass",
                     tests=["sinusoid_shapes", "sinusoid_matches_formula", "sinusoid_is_a_plain_float32_tensor"])
    expect_full_marks(report, "FeedForward", "SwiGLU")


# (c) The library's Transformer layer, whose private _ff_block is a finished FFN.
CHEAT_TRANSFORMER_LAYER_FF_BLOCK = FFN_HEAD + '''\
    def __init__(self, d_model, d_ff=None, activation="gelu", bias=True, dropout=0.0):
        """Create up, down and the dropout; raise ValueError for an unknown activation."""
        super().__init__()
        d_ff = d_ff or 4 * d_model
        layer = nn.TransformerEncoderLayer(d_model, 1, d_ff, dropout, activation=activation, \
bias=bias, batch_first=True)
        self.up, self.down = layer.linear1, layer.linear2  # the layer's two linear maps, under the expected names
        self._layer = [layer]  # kept out of the module tree, so the parameters stay up.* and down.*

    def forward(self, x):
        """Apply the FFN to every position of x, shape (..., d_model); returns the same shape."""
        return self._layer[0]._ff_block(x)
'''


def check_transformer_layer(report: GradeReport) -> None:
    expect_no_credit(report, "FeedForward", "nn.TransformerEncoderLayer")
    expect_full_marks(report, "SwiGLU", "sinusoidal_positions")


# (d) os._exit inside SwiGLU.forward: that worker dies; FeedForward's worker is another process.
CHEAT_OS_EXIT_IN_SWIGLU = '''\
import os


''' + swiglu_forward('''\
        os._exit(0)
''')


def check_os_exit(report: GradeReport) -> None:
    expect_failing(report, SWIGLU_FORWARD_TESTS, "worker process died")
    assert not by_name(report)["swiglu_structure"].passed  # its shape checks run forward too
    expect_full_marks(report, "FeedForward", "sinusoidal_positions")


# (e) A detached result dressed up as a graph output: requires_grad_() on a fresh leaf.
CHEAT_DETACHED_REQUIRES_GRAD = ffn_forward('''\
        with torch.no_grad():
            h = self.up(x)
            h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
            out = self.down(h)
        return out.requires_grad_()  # "it requires grad, so gradients flow"
''')


def check_detached_requires_grad(report: GradeReport) -> None:
    expect_failing(report, ["ffn_gradients_match"], "no gradient reached it")
    expect_failing(report, ["ffn_acts_on_each_position_independently"], "no gradient reached it")
    expect_passing(report, ["ffn_structure", "ffn_output_shapes", "ffn_matches_reference",
                            "ffn_keeps_dtype_device_and_input"])
    expect_full_marks(report, "SwiGLU", "sinusoidal_positions")


# (f) A detached result, plainly.
CHEAT_DETACHED = swiglu_forward('''\
        return self.down(F.silu(self.gate(x)) * self.up(x)).detach()  # no graph: saves memory
''')


def check_detached(report: GradeReport) -> None:
    expect_failing(report, ["swiglu_gradients_match", "swiglu_acts_on_each_position_independently"], "detached")
    expect_passing(report, ["swiglu_structure", "swiglu_matches_reference", "swiglu_keeps_dtype_device_and_input"])
    expect_full_marks(report, "FeedForward", "sinusoidal_positions")


# (g) An infinite loop, bounded by the per-test time limit.
CHEAT_INFINITE_LOOP_IN_POSITIONS = positions('''\
    while True:
        pass
''')


def check_infinite_loop(report: GradeReport) -> None:
    expect_no_credit(report, "sinusoidal_positions", "time limit")
    expect_full_marks(report, "FeedForward", "SwiGLU")


# (h) sys.exit at the top level of the exercise cell, hoping to stop grading before it starts.
CHEAT_SYS_EXIT_AT_IMPORT = '''\
import sys

sys.exit(0)  # stop loading before any test can run


''' + POS_STACK_FLATTEN


def check_sys_exit_at_import(report: GradeReport) -> None:
    # SystemExit at the top level of a cell is caught like any exception: that cell's definitions are
    # missing, the rest of the notebook loads, and the grader reports the cell.
    expect_no_credit(report, "sinusoidal_positions")
    assert any("SystemExit" in d for d in report.diagnostics), \
        f"the failed cell should be reported: {report.diagnostics}"
    # Verdict changed with the usage policy (issue 8): a module-level sys.exit() runs for every exercise, so under
    # strict grading every exercise needs review and scores 0 (FeedForward and SwiGLU used to keep their points).
    for exercise in ("FeedForward", "SwiGLU"):
        expect_needs_review(report, exercise, "import sys")


CHEATS = [
    Cheat("patches_torch_comparisons_in_the_worker", {"sinusoidal_positions": CHEAT_PATCHED_COMPARISONS},
          check=check_patched_comparisons),
    Cheat("returns_a_lying_tensor_subclass", {"sinusoidal_positions": CHEAT_LYING_SUBCLASS},
          check=check_lying_subclass),
    Cheat("uses_transformer_encoder_layer_ff_block", {"FeedForward": CHEAT_TRANSFORMER_LAYER_FF_BLOCK},
          check=check_transformer_layer),
    Cheat("os_exit_in_swiglu_forward", {"SwiGLU": CHEAT_OS_EXIT_IN_SWIGLU}, check=check_os_exit),
    Cheat("detached_output_marked_requires_grad", {"FeedForward": CHEAT_DETACHED_REQUIRES_GRAD},
          check=check_detached_requires_grad),
    Cheat("detached_swiglu_output", {"SwiGLU": CHEAT_DETACHED}, check=check_detached),
    Cheat("infinite_loop_in_positions", {"sinusoidal_positions": CHEAT_INFINITE_LOOP_IN_POSITIONS},
          check=check_infinite_loop, time_limit=1.0),
    Cheat("sys_exit_at_the_top_of_a_cell", {"sinusoidal_positions": CHEAT_SYS_EXIT_AT_IMPORT},
          check=check_sys_exit_at_import),
]
