"""Hidden suite for a3_ffn_positions: the position-wise feed-forward network, SwiGLU, sinusoidal positions.

    inputs.py                      the student's FeedForward and SwiGLU, built and loaded with seeded weights
    module_checks.py               the checks both networks share: position-wise, gradients, dtype and device
    test_feed_forward.py           FeedForward (Vaswani et al., "Attention Is All You Need" (2017), §3.3)
    test_swiglu.py                 SwiGLU (Shazeer, "GLU Variants Improve Transformer" (2020))
    test_sinusoidal_positions.py   sinusoidal_positions (Vaswani et al., §3.5)

Expected values come from ``autograder/reference.py`` in float64, with the weights the test loads into the
student's module; known-wrong variants from ``autograder/known_bugs/a3_ffn_positions.py``.
"""

from autograder.hidden import Assignment

# Likely causes of errors raised inside the student's code: (function or None for any, message parts, hint).
ERROR_HINTS = [
    (None, ("same dtype", "expected scalar type", "expected m1 and m2 to have the same dtype"),
     "float32 and float64 tensors were mixed: is something cast with .float()/.double(), or created without "
     "dtype=x.dtype?"),
    (None, ("values to unpack",),
     "x may have any number of leading dimensions, shape (..., d_model): nn.Linear and the activation act on the "
     "last dimension, so no reshape (and no B, T, D = x.shape) is needed"),
    (None, ("shapes cannot be multiplied",),
     "A layer received the wrong number of features: up (and gate) map d_model -> d_ff, down maps d_ff -> d_model"),
    (None, ("leaf Variable that requires grad is being used in an in-place operation",),
     "The code modifies its input in place; inputs must stay unchanged"),
]

ASSIGNMENT = Assignment("a3_ffn_positions", notebook="ffn_positions.ipynb",
                        exercises=["FeedForward", "SwiGLU", "sinusoidal_positions"], error_hints=ERROR_HINTS)
