"""Hidden suite for a3_ffn_positions: the position-wise feed-forward network, SwiGLU, sinusoidal positions.

Oracles are computed in float64 in the grader's process from the weights the test loads into
the student's module (``F.linear`` with ``F.gelu``, ``F.relu`` or ``F.silu``), and from the
formula of Vaswani et al., "Attention Is All You Need" (2017), §3.3 (FFN) and §3.5 (positions);
SwiGLU is from Shazeer, "GLU Variants Improve Transformer" (2020).
"""

from autograder.hidden import Assignment

# Likely causes of errors raised inside the student's code: (function or None for any, message parts, hint).
ERROR_HINTS = [
    (None, ("same dtype", "expected scalar type", "expected m1 and m2 to have the same dtype"),
     "float32 and float64 tensors were mixed: is something cast with .float()/.double(), or created without dtype=x.dtype?"),
    (None, ("values to unpack",),
     "x may have any number of leading dimensions, shape (..., d_model): nn.Linear and the activation act on the "
     "last dimension, so no reshape (and no B, T, D = x.shape) is needed"),
    (None, ("shapes cannot be multiplied",),
     "A layer received the wrong number of features: up (and gate) map d_model -> d_ff, down maps d_ff -> d_model"),
    (None, ("leaf Variable that requires grad is being used in an in-place operation",),
     "The code modifies its input in place; inputs must stay unchanged"),
]

ASSIGNMENT = Assignment('a3_ffn_positions', notebook='ffn_positions.ipynb', exercises=["FeedForward", "SwiGLU", "sinusoidal_positions"], error_hints=ERROR_HINTS)
