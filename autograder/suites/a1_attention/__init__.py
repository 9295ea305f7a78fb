"""Hidden suite for a1_attention: softmax, scaled dot-product attention, heads, multi-head attention.

One module per exercise (split_heads and merge_heads together in ``test_heads.py``); ``inputs.py`` draws the
inputs and holds the comparison they share. Expected values come from the course's float64 reference
(``autograder/reference.py``), cross-checked against PyTorch's own ``torch.softmax``,
``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` (with the same weights) where a test's title
names them; known-wrong results, which name a bug, from ``autograder/known_bugs/a1_attention.py``.
Reference: Vaswani et al., "Attention Is All You Need" (2017), §3.2.
"""

from autograder.hidden import Assignment

# Likely causes of errors raised inside the student's code: (function or None for any, message parts, hint).
# The function is the test's exercise or any student function on the traceback.
ERROR_HINTS = [
    ("softmax", ("must match the size of tensor",),
     "A max or sum along dim drops that dimension unless keepdim=True, so it no longer broadcasts against x"),
    (None, ("same dtype", "expected scalar type"),
     "float32 and float64 tensors were mixed: is something cast with .float()/.double(), "
     "or created without dtype=x.dtype?"),
    (None, ("leaf Variable that requires grad is being used in an in-place operation",),
     "The code modifies its input in place (x -= m, q.div_(s)); inputs must stay unchanged: write x = x - m"),
    ("scaled_dot_product_attention", ("Dimension out of range",),
     "q, k and v may have 0, 1 or 2 batch dimensions: "
     "index dimensions from the end (k.transpose(-2, -1), q.shape[-1])"),
]

ASSIGNMENT = Assignment("a1_attention", notebook="attention.ipynb",
                        exercises=["softmax", "scaled_dot_product_attention", "split_heads", "merge_heads",
                                   "MultiHeadAttention"],
                        error_hints=ERROR_HINTS)
