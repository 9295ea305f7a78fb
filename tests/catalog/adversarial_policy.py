"""Routes around the usage policy (issue 8, point 1): each reached a forbidden kernel or hid a lookup from the
old denylist scan and scored full marks with no review note. Each case states its outcome: a FORBIDDEN use
scores the exercise 0 and names the use; code the scan cannot resolve NEEDS REVIEW: 0 under strict grading
(the default), and with ``strict=False`` (``--lenient``) the points stay and the note is still reported.

Graded by tests/test_adversarial_policy.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autograder.runner import GradeReport
from tests.policy_checks import expect_forbidden, expect_needs_review, expect_no_policy_finding
from tests.variants import Cheat, expect_full_marks, expect_no_credit


@dataclass
class PolicyCase(Cheat):
    assignment: str = "a1_attention"
    options: dict = field(default_factory=dict)  # passed to grade(): strict=False for a lenient run


SOFTMAX_DEF = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along dimension `dim`."""
'''
SDPA_DEF = '''\
def scaled_dot_product_attention(q, k, v):
    """Scaled dot-product attention: softmax(q @ k^T / sqrt(d_k)) @ v."""
'''
MASKED_SOFTMAX_DEF = '''\
def masked_softmax(scores, mask, dim=-1):
    """Softmax of `scores` along `dim` over the positions where `mask` is True."""
'''
REFERENCE_SOFTMAX_BODY = '''\
    x = x - x.amax(dim=dim, keepdim=True)
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)
'''
A1_OTHERS = ("scaled_dot_product_attention", "split_heads", "merge_heads")


def a1_softmax(body: str, prelude: str = "") -> dict[str, str]:
    return {"softmax": prelude + SOFTMAX_DEF + body}


def softmax_forbidden(*phrases: str):
    """softmax scores 0 naming the use; exercises that do not reach it keep their points."""
    def check(report: GradeReport) -> None:
        expect_forbidden(report, "softmax", *phrases)
        expect_full_marks(report, "split_heads", "merge_heads")
    return check


def softmax_needs_review(*phrases: str, lenient: bool = False):
    """softmax needs review: 0 under strict grading; with --lenient its points stay (the route works) and the
    note is still in the report."""
    def check(report: GradeReport) -> None:
        if lenient:
            expect_full_marks(report, "softmax")
            notes = " ".join(report.review_by_exercise.get("softmax", []))
            assert all(p.lower() in notes.lower() for p in phrases), report.review_by_exercise
        else:
            expect_needs_review(report, "softmax", *phrases)
        expect_full_marks(report, "split_heads", "merge_heads")
    return check


# --- kernels by another route ----------------------------------------------------------------------

# The math SDPA kernel through the dispatcher's operator namespace: the attention and its weights in one call.
SDPA_BY_TORCH_OPS = SDPA_DEF + '''\
    out, weights = torch.ops.aten._scaled_dot_product_attention_math(q, k, v)
    return out, weights
'''

# A computed operator name on torch.ops: no attribute the old scan knew.
SOFTMAX_BY_COMPUTED_OP = '''\
    return torch.ops.aten.__getattr__("_soft" + "max").default(x, dim, False)
'''

# TorchScript compiles a string: the call to torch.softmax is invisible to an AST scan.
SOFTMAX_BY_TORCHSCRIPT = '''\
    unit = torch.jit.CompilationUnit("def f(x: torch.Tensor, d: int):\\n    return torch.softmax(x, d)\\n")
    return unit.f(x, dim)
'''

# torch.compile around an innocent-looking helper.
SOFTMAX_BY_TORCH_COMPILE = '''\
    return torch.compile(lambda t: t.exp() / t.exp().sum(dim, keepdim=True), backend="eager")(
        x - x.amax(dim, keepdim=True))
'''

# The softmax as the gradient of cross-entropy: d/dz CE(z, y) = softmax(z) - onehot(y).
SOFTMAX_BY_GRAD_OF_CROSS_ENTROPY = '''\
    z = x.movedim(dim, -1).reshape(-1, x.shape[dim]).detach().requires_grad_(True)
    target = torch.zeros(z.shape[0], dtype=torch.long, device=x.device)
    (g,) = torch.autograd.grad(F.cross_entropy(z, target, reduction="sum"), z)
    g[:, 0] += 1
    return g.reshape(x.movedim(dim, -1).shape).movedim(-1, dim)
'''

# gumbel_softmax with its noise switched off by patching the RNG it draws from: exactly softmax(x / tau).
SOFTMAX_BY_PATCHED_RNG = '''\
torch.Tensor.exponential_ = lambda self, *args, **kwargs: self.mul_(0.0).add_(1.0)


''' + SOFTMAX_DEF + '''\
    return F.gumbel_softmax(x, tau=1.0, dim=dim)
'''

# PyTorch's own Python reference implementation, and a decomposition module.
SOFTMAX_BY_TORCH_REFS = '''\
    import torch._refs
    return torch._refs.softmax(x, dim)
'''
SOFTMAX_BY_DECOMP_IMPORT = '''\
    from torch._decomp import decompositions
    return decompositions._softmax(x, dim, False)
'''

# Callbacks run Python per element, outside any trace of torch functions.
SOFTMAX_BY_APPLY = '''\
    m = x.amax(dim=dim, keepdim=True)
    e = (x - m).clone().cpu()
    e.apply_(math.exp)
    e = e.to(x.device)
    return e / e.sum(dim=dim, keepdim=True)
'''

# A custom operator: a library registers torch.softmax under an unrelated name.
SOFTMAX_BY_TORCH_LIBRARY = '''\
_lib = torch.library.Library("coursework", "DEF")
_lib.define("norm_exp(Tensor x, int d) -> Tensor")
_lib.impl("norm_exp", lambda x, d: x.softmax(d), "CompositeImplicitAutograd")


''' + SOFTMAX_DEF + '''\
    return torch.ops.coursework.norm_exp(x, dim)
'''

# --- lookups the old scan could not see ----------------------------------------------------------

# The forbidden call sits in a helper the exercise calls: the old scan filed it under the helper.
SOFTMAX_IN_A_HELPER = '''\
def _normalise(t, d):
    return F.softmax(t, dim=d)


''' + SOFTMAX_DEF + '''\
    return _normalise(x, dim)
'''

# A wrapper renamed so the run-time trace would report an innocent name.
SOFTMAX_RENAMED = '''\
def _exp_normalise(t, d):
    return t.softmax(d)


_exp_normalise.__name__ = "exp"


''' + SOFTMAX_DEF + '''\
    return _exp_normalise(x, dim)
'''

# A match class pattern reads an attribute by keyword: `case object(softmax=fn)` binds torch.softmax.
SOFTMAX_BY_MATCH = '''\
    match torch:
        case object(softmax=fn):
            return fn(x, dim)
'''

# getattr under another name, and through builtins.
SOFTMAX_BY_RENAMED_GETATTR = '''\
    look_up = getattr
    return look_up(torch, "soft" + "max")(x, dim)
'''
SOFTMAX_BY_BUILTINS_GETATTR = '''\
    import builtins
    return builtins.getattr(torch, "soft" + "max")(x, dim)
'''

# pickle resolves a module global by name when it loads.
SOFTMAX_BY_PICKLE = '''\
    import pickle
    fn = pickle.loads(b"ctorch\\nsoftmax\\n.")
    return fn(x, dim)
'''

# string.Formatter resolves "0.softmax" as an attribute of its argument.
SOFTMAX_BY_FORMATTER = '''\
    import string
    fn, _ = string.Formatter().get_field("0.soft" + "max", (torch,), {})
    return fn(x, dim)
'''

# pydoc.locate after emptying the worker's tracer through sys.modules.
SOFTMAX_BY_PYDOC_AND_TRACER_TAMPERING = '''\
    import pydoc
    import sys
    runtime = sys.modules.get("autograder.worker.runtime")
    if runtime is not None:
        runtime.Tracer.__torch_function__ = lambda self, func, types, args=(), kwargs=None: func(*args,
                                                                                                 **(kwargs or {}))
    return pydoc.locate("torch.softmax")(x, dim)
'''

# Another thread computes the result.
SOFTMAX_IN_A_THREAD = '''\
    import threading
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("y", torch.softmax(x, dim)))
    worker.start()
    worker.join()
    return box["y"]
'''

# A star import brings F's names in unseen: `softmax` below is no longer the student's.
MASKED_SOFTMAX_BY_STAR_IMPORT = '''\
from torch.nn.functional import *


''' + MASKED_SOFTMAX_DEF + '''\
    s = scores.masked_fill(~mask, float("-inf"))
    return softmax(s, dim).nan_to_num(0.0)
'''

# The weights output of the math SDPA kernel is a masked softmax.
MASKED_SOFTMAX_FROM_SDPA_WEIGHTS = MASKED_SOFTMAX_DEF + '''\
    s = scores.movedim(dim, -1)
    eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)
    m = mask.expand(scores.shape).movedim(dim, -1)
    _, w = torch.ops.aten._scaled_dot_product_attention_math(s, eye, eye, attn_mask=m, scale=1.0)
    return w.nan_to_num(0.0).movedim(-1, dim)
'''

LAYER_NORM_HEAD = '''\
class LayerNorm(nn.Module):
    """Layer normalisation over the last dimension, as nn.LayerNorm."""

    def __init__(self, d_model, eps=1e-5, elementwise_affine=True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(d_model)) if elementwise_affine else None

'''
LAYER_NORM_BY_NATIVE_OP = LAYER_NORM_HEAD + '''\
    def forward(self, x):
        return torch.ops.aten.native_layer_norm(x, [x.shape[-1]], self.weight, self.bias, self.eps)[0]
'''
LAYER_NORM_BY_NATIVE_FUNCTION = LAYER_NORM_HEAD + '''\
    def forward(self, x):
        return torch.native_layer_norm(x, [x.shape[-1]], self.weight, self.bias, self.eps)[0]
'''
RMS_NORM_BY_TORCHSCRIPT = '''\
_unit = torch.jit.CompilationUnit(
    "def rms(x: torch.Tensor, w: torch.Tensor, eps: float):\\n"
    "    return torch.rms_norm(x, [x.shape[-1]], w, eps)\\n")


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension."""

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return _unit.rms(x, self.weight, self.eps)
'''

# --- allowed: the student's own names are not torch's ---------------------------------------------

# A method named like torch API (F.normalize) and an attribute named like it (Tensor.dim): both the student's.
SOFTMAX_WITH_OWN_NAMES = '''\
class _Stable:
    def __init__(self, dim):
        self.dim = dim

    def normalize(self, x):
        return x - x.amax(dim=self.dim, keepdim=True), self.dim


''' + SOFTMAX_DEF + '''\
    shifted, d = _Stable(dim).normalize(x)
    e = shifted.exp()
    return e / e.sum(dim=d, keepdim=True)
'''


def check_own_names(report: GradeReport) -> None:
    expect_full_marks(report, "softmax", *A1_OTHERS)
    expect_no_policy_finding(report, "softmax")


def check_sdpa_by_torch_ops(report: GradeReport) -> None:
    expect_forbidden(report, "scaled_dot_product_attention", "_scaled_dot_product_attention_math")
    expect_forbidden(report, "MultiHeadAttention", "_scaled_dot_product_attention_math")  # it calls the attention
    expect_full_marks(report, "softmax", "split_heads", "merge_heads")
    assert any("torch.ops" in n for n in report.review), report.review


def check_patched_rng(report: GradeReport) -> None:
    # The module-level patch of torch.Tensor runs for every exercise: each needs review; softmax is forbidden.
    expect_forbidden(report, "softmax", "gumbel_softmax", "a built-in softmax")
    for exercise in ("split_heads", "merge_heads"):
        expect_needs_review(report, exercise, "assigns to torch.Tensor.exponential_")


def check_torch_library(report: GradeReport) -> None:
    # The operator is registered at module level, so its code concerns every exercise: x.softmax inside it is a
    # forbidden use for all of them, and the custom library needs review besides.
    for exercise in ("softmax", "split_heads", "merge_heads"):
        expect_forbidden(report, exercise, ".softmax")
        assert any("torch.library" in n for n in report.review_by_exercise[exercise]), report.review_by_exercise


def check_renamed(report: GradeReport) -> None:
    # The renaming runs at module level and reads the wrapper, so the wrapper's code concerns every exercise.
    for exercise in ("softmax", "split_heads", "merge_heads"):
        expect_forbidden(report, exercise, ".softmax", "a built-in softmax")
        assert any("__name__" in n for n in report.review_by_exercise[exercise]), report.review_by_exercise


def check_match_lenient(report: GradeReport) -> None:
    # Lenient grading keeps the points of code that needs review; here the worker's run-time trace, the second
    # signal, still sees torch.softmax being called, and the note stays in the report.
    expect_no_credit(report, "softmax", "torch.softmax at run time")
    assert any("match" in n for n in report.review_by_exercise["softmax"]), report.review_by_exercise
    expect_full_marks(report, "split_heads", "merge_heads")


def check_pydoc_and_tracer_tampering(report: GradeReport) -> None:
    expect_needs_review(report, "softmax", "import pydoc")
    notes = " ".join(report.review_by_exercise["softmax"])
    assert "import sys" in notes and "sys.modules" in notes, notes
    expect_full_marks(report, "split_heads", "merge_heads")


def check_star_import(report: GradeReport) -> None:
    expect_needs_review(report, "masked_softmax", "import *")
    for exercise in ("causal_mask", "padding_mask"):  # the names a star import binds are unknown: every exercise
        expect_needs_review(report, exercise, "import *")


def check_masked_softmax_from_sdpa_weights(report: GradeReport) -> None:
    expect_forbidden(report, "masked_softmax", "_scaled_dot_product_attention_math")
    expect_full_marks(report, "causal_mask", "padding_mask")


def check_native_layer_norm_op(report: GradeReport) -> None:
    expect_forbidden(report, "LayerNorm", "native_layer_norm", "a built-in layer norm")
    expect_forbidden(report, "TransformerBlock", "native_layer_norm")  # the block uses the student's LayerNorm
    expect_full_marks(report, "RMSNorm")
    assert any("torch.ops" in n for n in report.review), report.review


def check_native_layer_norm_function(report: GradeReport) -> None:
    expect_forbidden(report, "LayerNorm", "torch.native_layer_norm", "a built-in layer norm")
    expect_full_marks(report, "RMSNorm")


def check_torchscript_rms_norm(report: GradeReport) -> None:
    # The kernel's name is inside a string: not a forbidden use the scan can see, but TorchScript needs review;
    # the unit is compiled by module-level code, which runs for every exercise.
    for exercise in ("LayerNorm", "RMSNorm", "TransformerBlock"):
        expect_needs_review(report, exercise, "torch.jit")


def check_decomp(report: GradeReport) -> None:
    expect_forbidden(report, "softmax", "._softmax")
    assert any("torch._decomp" in n for n in report.review_by_exercise["softmax"]), report.review_by_exercise
    expect_full_marks(report, "split_heads", "merge_heads")


CASES = [
    # a1: kernels by another route
    PolicyCase("sdpa_math_kernel_via_torch_ops", {"scaled_dot_product_attention": SDPA_BY_TORCH_OPS},
               check=check_sdpa_by_torch_ops),
    PolicyCase("softmax_via_computed_torch_ops_name", a1_softmax(SOFTMAX_BY_COMPUTED_OP),
               check=softmax_needs_review("torch.ops")),
    PolicyCase("softmax_via_computed_torch_ops_name_lenient", a1_softmax(SOFTMAX_BY_COMPUTED_OP),
               check=softmax_needs_review("torch.ops", lenient=True), options={"strict": False}),
    PolicyCase("softmax_via_torchscript_string", a1_softmax(SOFTMAX_BY_TORCHSCRIPT),
               check=softmax_needs_review("torch.jit")),
    PolicyCase("softmax_via_torch_compile", a1_softmax(SOFTMAX_BY_TORCH_COMPILE),
               check=softmax_needs_review("torch.compile")),
    PolicyCase("softmax_as_grad_of_cross_entropy", a1_softmax(SOFTMAX_BY_GRAD_OF_CROSS_ENTROPY),
               check=softmax_forbidden("torch.autograd")),
    PolicyCase("gumbel_softmax_with_patched_rng", {"softmax": SOFTMAX_BY_PATCHED_RNG}, check=check_patched_rng),
    PolicyCase("softmax_from_torch_refs", a1_softmax(SOFTMAX_BY_TORCH_REFS), check=softmax_forbidden("torch._refs")),
    PolicyCase("softmax_from_torch_decomp", a1_softmax(SOFTMAX_BY_DECOMP_IMPORT),
               check=check_decomp),
    PolicyCase("softmax_by_tensor_apply_callback", a1_softmax(SOFTMAX_BY_APPLY), check=softmax_forbidden(".apply_")),
    PolicyCase("softmax_by_custom_torch_library_op", {"softmax": SOFTMAX_BY_TORCH_LIBRARY}, check=check_torch_library),
    # a1: lookups the old scan could not see
    PolicyCase("softmax_in_a_helper_function", {"softmax": SOFTMAX_IN_A_HELPER},
               check=softmax_forbidden("F.softmax", "a built-in softmax")),
    PolicyCase("softmax_wrapper_with_rewritten_name", {"softmax": SOFTMAX_RENAMED}, check=check_renamed),
    PolicyCase("softmax_by_match_class_pattern", a1_softmax(SOFTMAX_BY_MATCH),
               check=softmax_needs_review("match")),
    PolicyCase("softmax_by_match_class_pattern_lenient", a1_softmax(SOFTMAX_BY_MATCH),
               check=check_match_lenient, options={"strict": False}),
    PolicyCase("softmax_by_getattr_under_another_name", a1_softmax(SOFTMAX_BY_RENAMED_GETATTR),
               check=softmax_needs_review("getattr")),
    PolicyCase("softmax_by_builtins_getattr", a1_softmax(SOFTMAX_BY_BUILTINS_GETATTR),
               check=softmax_needs_review("import builtins")),
    PolicyCase("softmax_by_pickle_global", a1_softmax(SOFTMAX_BY_PICKLE), check=softmax_needs_review("import pickle")),
    PolicyCase("softmax_by_string_formatter_field", a1_softmax(SOFTMAX_BY_FORMATTER),
               check=softmax_needs_review("import string")),
    PolicyCase("softmax_by_pydoc_after_tracer_tampering", a1_softmax(SOFTMAX_BY_PYDOC_AND_TRACER_TAMPERING),
               check=check_pydoc_and_tracer_tampering),
    PolicyCase("softmax_in_another_thread", a1_softmax(SOFTMAX_IN_A_THREAD), check=softmax_forbidden("torch.softmax")),
    PolicyCase("own_names_that_look_like_torch_api", {"softmax": SOFTMAX_WITH_OWN_NAMES},
               check=check_own_names),
    # a2
    PolicyCase("masked_softmax_by_star_import", {"masked_softmax": MASKED_SOFTMAX_BY_STAR_IMPORT},
               check=check_star_import, assignment="a2_masking"),
    PolicyCase("masked_softmax_from_sdpa_math_weights", {"masked_softmax": MASKED_SOFTMAX_FROM_SDPA_WEIGHTS},
               check=check_masked_softmax_from_sdpa_weights, assignment="a2_masking"),
    # a4
    PolicyCase("layer_norm_by_native_layer_norm_op", {"LayerNorm": LAYER_NORM_BY_NATIVE_OP},
               check=check_native_layer_norm_op, assignment="a4_residual_norm"),
    PolicyCase("layer_norm_by_torch_native_layer_norm", {"LayerNorm": LAYER_NORM_BY_NATIVE_FUNCTION},
               check=check_native_layer_norm_function, assignment="a4_residual_norm"),
    PolicyCase("rms_norm_by_torchscript", {"RMSNorm": RMS_NORM_BY_TORCHSCRIPT},
               check=check_torchscript_rms_norm, assignment="a4_residual_norm"),
]
