"""Hidden suite for a2_masking: causal and padding masks, the masked softmax, masked attention.

One module per exercise (``test_<exercise>.py``); ``inputs.py`` builds the seeded inputs and the expected values,
``expectations.py`` holds the checks the modules share. Every expected value is ``autograder/reference.py``'s, in
float64, cross-checked against PyTorch where it has the same computation; known-wrong variants, named in failures,
are ``autograder/known_bugs/a2_masking.py``'s, which the release's visible checks use too. A query with no visible
key follows the course convention: zero weights, zero output, finite gradients. The masks the tests pass to
attention are the reference's, never the student's ``causal_mask``/``padding_mask``, so one bug does not cascade.
Reference: Vaswani et al., "Attention Is All You Need" (2017), §3.2.3.
"""

from autograder.hidden import Assignment

# Likely causes of errors raised inside the student's code: (function or None for any, message parts, hint).
ERROR_HINTS = [
    (None, ("bad operand type for unary ~: 'NoneType'",),
     "mask=None must mean no masking: check `if mask is None` before using the mask"),
    (None, ("'NoneType' object has no attribute",),
     "Something is None there; if it is the mask, mask=None must mean no masking: check `if mask is None` first"),
    ("masked_softmax", ("must match the size of tensor",),
     "An amax or sum along dim drops that dimension unless keepdim=True; and the mask must broadcast against the "
     "scores"),
    # Only said once the student's own attention was found to work with the same mask (expectations.forward_mha).
    ("MultiHeadAttention", ("must match the size of tensor", "must be broadcastable"),
     "Pass the mask to the attention as it is: (T, T), (B, 1, 1, T) and (B, 1, T, T) masks already broadcast "
     "against the scores (B, H, T, T); adding or moving dimensions breaks that"),
    ("scaled_dot_product_attention", ("must match the size of tensor", "must be broadcastable"),
     "Raised in your attention cell? The mask must broadcast against the scores (..., T_q, T_k) as it is: do not "
     "reshape or index it. Raised in masked_softmax? Then the bug is there, and its own tests fail too"),
    (None, ("only supports boolean masks", "expected BoolTensor", "result type Float can't be cast"),
     "Masks are bool tensors (True = may attend): create them with comparisons, or convert with .bool()"),
    (None, ("same dtype", "expected scalar type"),
     "float32 and float64 tensors were mixed: is something cast with .float()/.double(), or created without dtype=?"),
    (None, ("leaf Variable that requires grad is being used in an in-place operation",),
     "The code modifies an input in place (masked_fill_, x -= m); inputs must stay unchanged: use masked_fill"),
    (None, ("Dimension out of range",),
     "Inputs may have 0, 1 or 2 batch dimensions: index dimensions from the end (k.transpose(-2, -1), q.shape[-1])"),
    (None, ("Expected all tensors to be on the same device",),
     "Create new tensors on the inputs' device (device=lengths.device, device=device)"),
]

ASSIGNMENT = Assignment("a2_masking", notebook="masking.ipynb",
                        exercises=["causal_mask", "padding_mask", "masked_softmax", "scaled_dot_product_attention",
                                   "MultiHeadAttention"],
                        error_hints=ERROR_HINTS, judges=["scaled_dot_product_attention"])
