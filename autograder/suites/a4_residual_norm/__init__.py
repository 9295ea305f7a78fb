"""Hidden suite for a4_residual_norm: LayerNorm, RMSNorm and the Pre-LN / Post-LN Transformer block.

Oracles are PyTorch built-ins evaluated in float64 in the grader's process: ``F.layer_norm``
(``nn.LayerNorm``), ``F.rms_norm``, and ``nn.TransformerEncoderLayer(batch_first=True,
dropout=0)`` with the student's weights copied in (``in_proj_weight = cat(q, k, v)``,
``linear1 = ffn.up``, ``linear2 = ffn.down``; its norms replaced by stand-alone ``nn.LayerNorm``
or ``nn.RMSNorm`` modules when ``bias=False`` or ``norm="rms"``). Its boolean ``src_mask`` means
"blocked" where ours means "may attend", so masks are inverted on the way in.
References: Ba, Kiros & Hinton (2016) for LayerNorm; Zhang & Sennrich (2019) for RMSNorm;
Vaswani et al. (2017) for Post-LN; Xiong et al. (2020) for Pre-LN and its gradients at initialisation.
"""

from autograder.hidden import Assignment

# Likely causes of errors raised inside the student's code: (function or None for any, message parts, hint).
ERROR_HINTS = [
    (None, ("must match the size of tensor",),
     "A mean or sum over the last dimension drops it unless keepdim=True, so it no longer broadcasts against x"),
    (None, ("same dtype", "expected scalar type", "expected both vectors to have same dtype"),
     "Tensors of different dtypes were mixed: is something cast with .float()/.double(), or created without dtype=x.dtype?"),
    (None, ("leaf Variable that requires grad is being used in an in-place operation",),
     "The code modifies its input in place (x -= mean); inputs must stay unchanged: write x = x - mean"),
    ("TransformerBlock", ("unexpected keyword argument 'mask'",),
     "Pass the mask to the given attention only: self.attn(h, mask=mask); norms and the FFN take one argument"),
]

ASSIGNMENT = Assignment('a4_residual_norm', notebook='residual_norm.ipynb', exercises=["LayerNorm", "RMSNorm", "TransformerBlock"], error_hints=ERROR_HINTS)
