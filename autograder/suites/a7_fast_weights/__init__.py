"""Hidden suite for a7_fast_weights: linear attention, its recurrent fast-weight form, the delta rule, a KV cache.

    test_linear_attention.py   linear_attention: the parallel causal form with phi = elu + 1
    test_recurrent.py          recurrent_linear_attention and delta_rule: one step at a time, from a state
    test_kv_cache.py           forward_cached and generate_cached on the notebook's given TransformerLM
    inputs.py                  seeded inputs, the given model with random weights, the allocation measurement

Every expected value is computed in float64 in the grader's process by ``autograder/reference.py``
(``linear_attention`` in its T x T form, ``recurrent_linear_attention``, ``delta_rule``, ``transformer_lm``,
``lm_keys_values``). Known-wrong answers, named in feedback, are in ``autograder/known_bugs/a7_fast_weights.py``.
How much memory a call takes is measured inside the worker by the grader's own recorder
(``record_allocations`` in ``autograder/worker/builtins_for_grader.py``): the largest tensor any aten op creates,
in elements. Nothing here reads a clock.

References: Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention"
(2020); Schlag, Irie & Schmidhuber, "Linear Transformers Are Secretly Fast Weight Programmers" (2021), section 4.2;
Schmidhuber, "Learning to Control Fast-Weight Memories" (1992); Radford et al. (2019) for the model.
"""

from autograder.hidden import Assignment

# Likely causes of errors raised inside the student's code: (exercise or None for any, message parts, hint).
ERROR_HINTS = [
    (None, ("cannot unpack non-iterable NoneType",),
     "state=None means a fresh memory: start from zeros instead of unpacking the state"),
    ("recurrent_linear_attention", ("too many values to unpack", "not enough values to unpack"),
     "The state is a pair (S, z): S of shape (..., d_k, d_v), z of shape (..., d_k)"),
    ("forward_cached", ("index out of range in self",),
     "Positions continue after the cached tokens: torch.arange(T_past, T_past + T_new), all below model.max_len"),
    ("forward_cached", ("'NoneType' object is not subscriptable",),
     "cache is None on the first call: T_past = 0 and there is nothing to concatenate"),
    ("generate_cached", ("index out of range in self",),
     "The cache has no sliding window: T0 + max_new_tokens must not exceed model.max_len"),
    (None, ("same dtype", "expected scalar type", "expected m1 and m2 to have the same dtype"),
     "float32 and float64 tensors were mixed: is something created without dtype= (use q.new_zeros(...))?"),
]

ASSIGNMENT = Assignment("a7_fast_weights", notebook="fast_weights.ipynb",
                        exercises=["linear_attention", "recurrent_linear_attention", "delta_rule", "forward_cached",
                                   "generate_cached"], error_hints=ERROR_HINTS)
