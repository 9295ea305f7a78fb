"""Hidden suite for a4_residual_norm: LayerNorm, RMSNorm and the Pre-LN / Post-LN Transformer block.

    test_layernorm.py   Exercise 1 (Ba, Kiros & Hinton, 2016)
    test_rmsnorm.py     Exercise 2 (Zhang & Sennrich, 2019)
    test_block.py       Exercise 3 (Vaswani et al., 2017, Post-LN; Xiong et al., 2020, Pre-LN and its gradients)
    inputs.py           the seeded modules and weights the tests build, and their parameter checks
    oracles.py          the expected values: autograder/reference.py, cross-checked against nn.LayerNorm,
                        nn.RMSNorm and nn.TransformerEncoderLayer with the same weights

Known-wrong implementations, named in failures: ``autograder/known_bugs/a4_residual_norm.py``.
"""

from autograder.hidden import Assignment

# Likely causes of errors raised inside the student's code: (function or None for any, message parts, hint).
ERROR_HINTS = [
    (None, ("must match the size of tensor",),
     "A mean or sum over the last dimension drops it unless keepdim=True, so it no longer broadcasts against x"),
    (None, ("same dtype", "expected scalar type", "expected both vectors to have same dtype"),
     "Tensors of different dtypes were mixed: is something cast with .float()/.double(), or created without "
     "dtype=x.dtype?"),
    (None, ("leaf Variable that requires grad is being used in an in-place operation",),
     "The code modifies its input in place (x -= mean); inputs must stay unchanged: write x = x - mean"),
    ("TransformerBlock", ("unexpected keyword argument 'mask'",),
     "Pass the mask to the given attention only: self.attn(h, mask=mask); norms and the FFN take one argument"),
]

ASSIGNMENT = Assignment("a4_residual_norm", notebook="residual_norm.ipynb",
                        exercises=["LayerNorm", "RMSNorm", "TransformerBlock"], error_hints=ERROR_HINTS)
