"""Hidden suite for a6_training_stability: a warm-up + cosine schedule, ReZero, ResiDual and GPT-2's initialisation.

    test_lr_schedule.py   lr_schedule: every step against the reference and PyTorch's schedulers, the warm-up's ends,
                          min_lr at and after total_steps, purity
    test_rezero.py        ReZeroBlock: structure (one alpha, no norm), the identity at initialisation, numerics
                          (in eval() and train(), and in float32), gradients (only alpha learns at first)
    test_residual.py      ResiDual and ResiDualBlock: structure, the pair of streams, numerics (in eval() and train(),
                          and in float32), causality, gradients
    test_gpt2_init.py     gpt2_init_: parameters kept in place, norms and biases, the standard deviations of the
                          weights, which must be normal draws (kurtosis) that differ from layer to layer
    inputs.py             seeded inputs, random weights, builders that check the structure first

Every expected value is computed in float64 in the grader's process by ``autograder/reference.py`` from the very
weights loaded into the student's module; the schedule is also cross-checked against ``torch.optim.lr_scheduler``.
Known-wrong answers, named in feedback, are in ``autograder/known_bugs/a6_training_stability.py``.

References: Loshchilov & Hutter, "SGDR" (2017); Goyal et al., "Accurate, Large Minibatch SGD" (2017); Bachlechner et
al., "ReZero is All You Need" (2020); Xie et al., "ResiDual: Transformer with Dual Residual Connections" (2023);
Radford et al., "Language Models are Unsupervised Multitask Learners" (2019) and nanoGPT's ``_init_weights``.
"""

from autograder.hidden import Assignment

# Likely causes of errors raised inside the student's code: (exercise or None for any, message parts, hint).
ERROR_HINTS = [
    ("lr_schedule", ("division by zero",),
     "warmup_steps may be 0 and may equal total_steps: check step >= total_steps first, then step < warmup_steps, "
     "and divide by total_steps - warmup_steps only in between"),
    ("lr_schedule", ("must be real number, not Tensor", "only one element tensors"),
     "lr_schedule works on Python numbers: use math.cos and math.pi, not torch"),
    ("ResiDual", ("too many values to unpack", "not enough values to unpack", "cannot unpack"),
     "ResiDualBlock.forward(x, dual, mask) returns the pair (x, dual): x, dual = block(x, dual, mask)"),
    ("ResiDual", ("missing 1 required positional argument: 'dual'",),
     "ResiDualBlock.forward takes both streams: block(x, dual, mask)"),
    ("gpt2_init_", ("has no attribute 'weight'",),
     "Only nn.Linear, nn.Embedding and LayerNorm modules have the weights to initialise: check isinstance first"),
    (None, ("same dtype", "expected scalar type", "expected m1 and m2 to have the same dtype"),
     "float32 and float64 tensors were mixed: is something cast with .float(), or created without dtype=?"),
]

ASSIGNMENT = Assignment("a6_training_stability", notebook="training_stability.ipynb",
                        exercises=["lr_schedule", "ReZeroBlock", "ResiDual", "gpt2_init_"], error_hints=ERROR_HINTS)
