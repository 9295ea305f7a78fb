"""What each exercise may use, and a static scan of the student's whole program against it.

An ALLOWLIST per exercise: named categories of torch API a person can read ("exp/log",
"reductions (sum, mean, amax, ...)"), plus a few names. The scan judges every name of the
*torch API universe* (public and private attribute names of torch, torch.nn.functional,
torch.Tensor, torch.nn, nn.Module, torch.linalg, torch.special, torch.fft, torch.autograd,
torch.nn.init) that the student's code reaches as an attribute, an import or a literal
``getattr``: a name outside the exercise's allowlist is a FORBIDDEN use. Names outside the
universe (builtins, the student's own helpers) are not judged, except what the scan cannot
resolve (a computed attribute name, ``getattr`` under another name, an import outside a short
list of modules, ``exec``, ``torch.ops``, ``torch.jit``, private attributes, assignment to an
attribute of a module, ``match`` class patterns, format fields, ...): that "needs review".

The scan covers the whole program: an exercise's *closure* is every top-level def/class of the
student's cells that defines it, every top-level def/class they reference by name (helpers,
transitively), and all code that runs when a cell runs, for every exercise: top-level statements
other than an inert binding (``_k = F.softmax``: a constant, a name, an import-rooted attribute
chain), and the load-time parts of defs and classes (decorators, default values, annotations,
bases, class keywords, class-body statements, class-creation hooks) unless inert. A def or class
decorated with a name the student defines is judged whole, for every exercise.
The student's own attribute names exempt a torch name only on self/cls/super() or the student's
class (never parameters, private/dunder names, or a built-in's known name). Module aliases
(``_t = torch``) resolve like imports; any other rebinding of an imported name needs review.
Plain modules (math, tqdm, ...) are judged by a per-module allowlist; frame, code and generator
attributes (f_*, gi_*, co_*, tb_*, ...) need review wherever they are read.
Cells taken from the release (the given, read-only code and the setup
cell) are trusted: not scanned, and the closure stops at the names they define.

This module holds no hidden test: the release's "check your notebook" cell imports it, so a
student sees the grader's verdict before submitting (:func:`check_notebook`).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from pathlib import Path

from autograder import parsing, release

FORBIDDEN, REVIEW = "forbidden", "review"

# --- the torch API universe ----------------------------------------------------------------

UNIVERSE_MODULES = ("torch", "torch.nn.functional", "torch.Tensor", "torch.nn", "torch.nn.Module", "torch.linalg",
                    "torch.special", "torch.fft", "torch.autograd", "torch.nn.init")


@functools.lru_cache(maxsize=None)
def universe() -> frozenset[str]:
    """Every attribute name of the modules and classes above (computed once, from dir())."""
    import torch
    import torch.nn.functional  # noqa: F401  (the submodules are attributes once imported)
    import torch.nn.init  # noqa: F401

    names: set[str] = set()
    for dotted in UNIVERSE_MODULES:
        obj = torch
        for part in dotted.split(".")[1:]:
            obj = getattr(obj, part)
        names.update(dir(obj))
    return frozenset(names)


# --- categories of torch API a person can read --------------------------------------------

CATEGORIES: dict[str, frozenset[str]] = {name: frozenset(names.split()) for name, names in {
    "elementwise arithmetic (+, -, *, /, sqrt, rsqrt, pow, abs, clamp, ...)": """
        add sub mul div true_divide floor_divide neg negative reciprocal sqrt rsqrt pow square abs clamp clip
        clamp_min clamp_max maximum minimum sign fmod remainder round floor ceil trunc lerp addcmul addcdiv
        add_ sub_ mul_ div_ neg_ clamp_ pow_ sqrt_ square_ abs_ zero_ fill_ copy_ nan_to_num nan_to_num_ rsub
        isnan isinf isfinite isclose allclose equal float_power copysign""",
    "exp/log": "exp exp2 expm1 log log2 log10 log1p exp_ log_",
    "reductions (sum, mean, amax, max, logsumexp, ...)": """
        sum mean amax amin max min var std var_mean std_mean prod cumsum cumprod logsumexp norm argmax argmin
        count_nonzero any all median nansum nanmean aminmax values indices linalg vector_norm""",
    "shape ops (reshape, view, transpose, permute, unsqueeze, cat, ...)": """
        shape size dim ndim ndimension numel reshape view view_as reshape_as transpose transpose_ permute
        movedim moveaxis swapaxes swapdims unsqueeze squeeze flatten unflatten expand expand_as repeat
        repeat_interleave contiguous is_contiguous T mT chunk split unbind cat concat concatenate stack narrow
        broadcast_shapes select index_select gather flip roll tile broadcast_to broadcast_tensors unsqueeze_ t""",
    "tensor creation (tensor, zeros, ones, full, arange, *_like, ...)": """
        tensor as_tensor from_numpy zeros ones full empty arange linspace eye zeros_like ones_like full_like
        empty_like new_zeros new_ones new_full new_empty new_tensor clone detach inf nan pi""",
    "dtype and device (dtype, device, to, type_as, float32, ...)": """
        dtype device to type_as is_floating_point is_complex finfo iinfo float16 float32 float64 bfloat16 half
        float double bool int int32 int64 long uint8 cpu cuda get_default_dtype is_cuda requires_grad data
        requires_grad_ item tolist numpy Size Tensor FloatTensor BoolTensor LongTensor eps tiny type is_tensor""",
    "comparisons and masking (eq, lt, where, masked_fill, tril, triu, ~, &, ...)": """
        eq ne lt le gt ge logical_and logical_or logical_not logical_xor bitwise_and bitwise_or bitwise_not
        where masked_fill masked_fill_ tril triu tril_ triu_ masked_select""",
    "matrix products (@, matmul, bmm, einsum, ...)": "matmul mm bmm baddbmm addmm einsum mv outer dot",
    "nn.Module building blocks (nn.Module, nn.Linear, nn.Parameter, nn.Dropout, nn.ModuleList, ...)": """
        nn Module Linear Parameter Dropout dropout ModuleList ModuleDict Sequential Identity Embedding
        register_buffer register_parameter parameters named_parameters buffers named_buffers children
        modules named_modules state_dict load_state_dict training train eval forward weight bias
        reset_parameters zero_grad requires_grad_ linear init uniform_ normal_ zeros_ ones_ xavier_uniform_
        kaiming_uniform_ trunc_normal_ constant_ extra_repr apply""",
    "activations (relu, gelu, silu, tanh, sigmoid, erf, and their nn modules)": """
        relu gelu silu tanh sigmoid erf ReLU GELU SiLU Tanh Sigmoid""",
    "trigonometry (sin, cos, ...)": "sin cos tan atan atan2",
    "no-grad context (torch.no_grad, inference_mode)": "no_grad inference_mode enable_grad",
    "training (loss.backward(), optimizer steps, F.cross_entropy, grad norms)": """
        backward cross_entropy optim Optimizer step grad clip_grad_norm_ utils nll_loss""",
    "sampling (softmax, multinomial, topk, sort, argmax, Generator)": """
        multinomial topk sort argsort Generator manual_seed searchsorted categorical distributions rand
        randn randint randperm softmax log_softmax""",
}.items()}

# Categories most exercises need; each exercise adds what it is about.
BASICS = ("elementwise arithmetic (+, -, *, /, sqrt, rsqrt, pow, abs, clamp, ...)",
          "shape ops (reshape, view, transpose, permute, unsqueeze, cat, ...)",
          "tensor creation (tensor, zeros, ones, full, arange, *_like, ...)",
          "dtype and device (dtype, device, to, type_as, float32, ...)",
          "no-grad context (torch.no_grad, inference_mode)")
EXP, REDUCE, COMPARE, MATMUL, MODULES, ACT, TRIG, NOGRAD, TRAIN, SAMPLE = (
    "exp/log", "reductions (sum, mean, amax, max, logsumexp, ...)",
    "comparisons and masking (eq, lt, where, masked_fill, tril, triu, ~, &, ...)",
    "matrix products (@, matmul, bmm, einsum, ...)",
    "nn.Module building blocks (nn.Module, nn.Linear, nn.Parameter, nn.Dropout, nn.ModuleList, ...)",
    "activations (relu, gelu, silu, tanh, sigmoid, erf, and their nn modules)", "trigonometry (sin, cos, ...)",
    "no-grad context (torch.no_grad, inference_mode)",
    "training (loss.backward(), optimizer steps, F.cross_entropy, grad norms)",
    "sampling (softmax, multinomial, topk, sort, argmax, Generator)")

SOFTMAX = ("softmax", "log_softmax", "Softmax", "LogSoftmax", "_softmax", "_log_softmax", "special_softmax",
           "special_log_softmax", "softmin", "Softmin", "gumbel_softmax", "_softmax_backward_data")
SDPA = ("scaled_dot_product_attention", "_scaled_dot_product_attention_math", "_fused_sdp_choice",
        "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_efficient_attention")
MHA = ("MultiheadAttention", "multi_head_attention_forward", "_native_multi_head_attention")
TRANSFORMER_LAYERS = ("Transformer", "TransformerEncoder", "TransformerEncoderLayer", "TransformerDecoder",
                      "TransformerDecoderLayer", "_transformer_encoder_layer_fwd")
LAYER_NORMS = ("LayerNorm", "layer_norm", "native_layer_norm", "GroupNorm", "group_norm", "native_group_norm",
               "InstanceNorm1d", "instance_norm", "BatchNorm1d", "batch_norm", "native_batch_norm")
RMS_NORMS = ("RMSNorm", "rms_norm", "_fused_rms_norm")


@dataclass(frozen=True)
class Policy:
    """What one exercise may use: categories and extra names; ``traced`` are the built-ins the
    worker's run-time trace watches for it (a second, advisory signal: all outside the allowlist)."""

    categories: tuple[str, ...]
    extra: tuple[str, ...] = ()
    traced: tuple[str, ...] = ()

    @functools.cached_property
    def allowed(self) -> frozenset[str]:
        names = set(self.extra)
        for category in self.categories:
            names |= CATEGORIES[category]
        return frozenset(names)

    def describe(self) -> str:
        extra = f"; also {', '.join(self.extra)}" if self.extra else ""
        return f"{'; '.join(self.categories)}{extra}. Nothing else from torch (plain Python and math are fine)."


def _policy(*categories: str, extra: tuple[str, ...] = (), traced: tuple[str, ...] = ()) -> Policy:
    return Policy(tuple(dict.fromkeys(categories)), extra, traced)


# What a person calls these groups of built-ins, said next to the name a student used.
KNOWN_BUILTINS = {"a built-in softmax": SOFTMAX, "a built-in attention (F.scaled_dot_product_attention)": SDPA,
                  "a built-in attention layer (nn.MultiheadAttention)": MHA,
                  "PyTorch's Transformer layers": TRANSFORMER_LAYERS, "a built-in layer norm": LAYER_NORMS,
                  "a built-in RMS norm": RMS_NORMS}


def known_as(name: str) -> str | None:
    return next((label for label, names in KNOWN_BUILTINS.items() if name in names), None)


ATTENTION_TRACED = SOFTMAX + SDPA + MHA
POLICIES: dict[str, dict[str, Policy]] = {
    "a1_attention": {
        "softmax": _policy(*BASICS, EXP, REDUCE, traced=ATTENTION_TRACED),
        "scaled_dot_product_attention": _policy(*BASICS, MATMUL, traced=ATTENTION_TRACED),
        "split_heads": _policy(*BASICS, traced=ATTENTION_TRACED),
        "merge_heads": _policy(*BASICS, traced=ATTENTION_TRACED),
        "MultiHeadAttention": _policy(*BASICS, MATMUL, MODULES, traced=ATTENTION_TRACED),
    },
    "a2_masking": {
        "causal_mask": _policy(*BASICS, COMPARE, REDUCE),
        "padding_mask": _policy(*BASICS, COMPARE, REDUCE),
        "masked_softmax": _policy(*BASICS, EXP, REDUCE, COMPARE, traced=ATTENTION_TRACED),
        # reductions: torch.finfo(dtype).min is a common way to block scores
        "scaled_dot_product_attention": _policy(*BASICS, MATMUL, COMPARE, REDUCE, traced=SDPA + MHA),
        "MultiHeadAttention": _policy(*BASICS, MATMUL, COMPARE, REDUCE, MODULES, traced=SDPA + MHA),
    },
    "a3_ffn_positions": {
        "FeedForward": _policy(*BASICS, MODULES, ACT, REDUCE, traced=TRANSFORMER_LAYERS),
        "SwiGLU": _policy(*BASICS, MODULES, ACT, traced=TRANSFORMER_LAYERS),
        "sinusoidal_positions": _policy(*BASICS, EXP, TRIG, REDUCE, MATMUL),
    },
    "a4_residual_norm": {
        "LayerNorm": _policy(*BASICS, REDUCE, MODULES, traced=LAYER_NORMS + RMS_NORMS),
        "RMSNorm": _policy(*BASICS, REDUCE, MODULES, traced=LAYER_NORMS + RMS_NORMS),
        "TransformerBlock": _policy(*BASICS, MODULES, traced=LAYER_NORMS + RMS_NORMS + MHA + TRANSFORMER_LAYERS),
    },
    "a5_transformer_lm": {
        "TransformerLM": _policy(*BASICS, MODULES, COMPARE, TRIG, EXP, REDUCE, MATMUL, extra=("LayerNorm",),
                                 traced=SDPA + MHA + TRANSFORMER_LAYERS),
        "lm_loss": _policy(*BASICS, TRAIN, EXP, REDUCE, extra=("softmax", "log_softmax")),
        "train_step": _policy(*BASICS, TRAIN, MODULES, NOGRAD),
        "generate": _policy(*BASICS, SAMPLE, NOGRAD, COMPARE, REDUCE, MODULES),
    },
    "a6_training_stability": {
        "lr_schedule": _policy(*BASICS, TRIG),  # no torch.optim.lr_scheduler: the schedule is the exercise
        "ReZeroBlock": _policy(*BASICS, MODULES, traced=LAYER_NORMS + RMS_NORMS + SDPA + MHA + TRANSFORMER_LAYERS),
        "ResiDual": _policy(*BASICS, MODULES, extra=("LayerNorm",), traced=SDPA + MHA + TRANSFORMER_LAYERS),
        "gpt2_init_": _policy(*BASICS, MODULES, extra=("LayerNorm",)),
    },
    "a7_fast_weights": {
        # elu: the feature map elu(x) + 1; comparisons: a causal tril mask in the quadratic form
        "linear_attention": _policy(*BASICS, ACT, REDUCE, MATMUL, COMPARE, extra=("elu",), traced=ATTENTION_TRACED),
        "recurrent_linear_attention": _policy(*BASICS, ACT, REDUCE, MATMUL, extra=("elu",), traced=ATTENTION_TRACED),
        "delta_rule": _policy(*BASICS, ACT, REDUCE, MATMUL, extra=("elu",), traced=ATTENTION_TRACED),
        "forward_cached": _policy(*BASICS, MODULES, MATMUL, COMPARE, REDUCE, traced=SDPA + MHA + TRANSFORMER_LAYERS),
        "generate_cached": _policy(*BASICS, NOGRAD, REDUCE, COMPARE, MODULES),
    },
}


def policy_for(assignment: str, exercise: str) -> Policy:
    return POLICIES[assignment][exercise]


def describe(assignment: str, exercise: str) -> str:
    """The one line the notebook states for the exercise, and the grader quotes."""
    return f"{exercise} may use: {policy_for(assignment, exercise).describe()}"


def traced_names(assignment: str) -> list[str]:
    return sorted({name for p in POLICIES[assignment].values() for name in p.traced})


# --- what the scan cannot resolve -------------------------------------------------------------

# Modules a solution may import: what the notebooks' setup cells and a student's helpers need. Everything else
# (sys, builtins, importlib, pydoc, pickle, inspect, gc, types, ctypes, threading, operator, string, os,
# autograder, torch's private modules, ...) can reach the process or resolve names from strings. numpy is out
# too: no exercise needs it, and np.load(allow_pickle=True) resolves any global by name.
ALLOWED_MODULES = frozenset({
    "torch", "torch.nn", "torch.nn.functional", "math", "typing", "dataclasses", "functools", "itertools",
    "collections", "matplotlib", "matplotlib.pyplot", "tqdm", "tqdm.auto", "time", "random", "__future__"})
# Modules whose attributes are not torch API (math.sqrt is not torch.sqrt); their private names still need review.
PLAIN_MODULES = ALLOWED_MODULES - {"torch", "torch.nn", "torch.nn.functional"}
# Dunders that only read what the language itself offers (super().__init__(), f.__name__, torch.__version__).
SAFE_DUNDERS = frozenset({"__init__", "__name__", "__doc__", "__version__"})
# Builtins that look names up, run text as code or open doors the scan cannot follow.
DYNAMIC_BUILTINS = frozenset({"getattr", "setattr", "delattr", "hasattr", "vars", "globals", "locals", "exec",
                              "eval", "compile", "__import__", "breakpoint", "open", "input", "memoryview"})
# Attributes that reach names by string or leave the scan's view, whatever object they are read on.
DYNAMIC_ATTRIBUTES = frozenset(DYNAMIC_BUILTINS | {"attrgetter", "methodcaller", "import_module", "locate",
                                                   "Formatter", "ops", "jit", "compile", "library",
                                                   "fx", "overrides", "Thread", "CompilationUnit",
                                                   "script", "trace", "export", "func", "hub", "classes",
                                                   "get_type_hints", "ForwardRef"})
# What a solution may read on each allowed plain module: anything else (tqdm.utils.ObjectWrapper, whose
# wrapper_getattr IS getattr) reaches code the scan cannot follow. Public names only; private ones need review.
PLOTTING = frozenset("""figure subplots subplot plot show imshow matshow title suptitle xlabel ylabel legend colorbar
    tight_layout savefig close grid hist bar scatter xticks yticks xlim ylim semilogy semilogx loglog axhline
    axvline fill_between text annotate cm""".split())


def _public(module_name: str, *excluded: str) -> frozenset[str]:
    import importlib

    names = dir(importlib.import_module(module_name))
    return frozenset(n for n in names if not n.startswith("_") and n not in excluded)


@functools.lru_cache(maxsize=None)
def plain_attributes() -> dict[str, frozenset[str]]:
    """Allowed plain module (dotted) -> the attributes a solution may read on it."""
    return {
        "math": _public("math"), "itertools": _public("itertools"),
        "functools": frozenset({"partial", "reduce", "cache", "lru_cache", "wraps", "cached_property",
                                "total_ordering"}),
        "collections": frozenset({"namedtuple", "defaultdict", "OrderedDict", "Counter", "deque"}),
        # not asdict/astuple/replace: they read (and write) attributes by field name, as getattr does
        "dataclasses": frozenset({"dataclass", "field", "fields"}),
        # get_type_hints, ForwardRef and their kin evaluate strings as code
        "typing": _public("typing", "get_type_hints", "ForwardRef", "evaluate_forward_ref", "get_annotations"),
        "time": frozenset({"time", "perf_counter", "monotonic", "sleep"}),
        "random": frozenset({"seed", "random", "randint", "choice", "shuffle", "sample", "gauss", "uniform"}),
        "tqdm": frozenset({"tqdm", "trange", "auto"}), "tqdm.auto": frozenset({"tqdm", "trange"}),
        "matplotlib": frozenset({"pyplot"}), "matplotlib.pyplot": PLOTTING,
        "__future__": frozenset({"annotations"}),
    }


# Attribute prefixes of frames, code objects, tracebacks, generators and coroutines: f_builtins, f_globals, f_back,
# gi_frame, tb_frame, co_code... reach getattr, __import__ and every global without a dunder.
FRAME_PREFIXES = ("f_", "gi_", "cr_", "ag_", "tb_", "co_")
# Attributes whose rewriting hides what a function is.
IDENTITY_DUNDERS = frozenset({"__name__", "__qualname__", "__code__", "__module__", "__class__", "__dict__",
                              "__defaults__", "__kwdefaults__", "__globals__", "__wrapped__"})


# --- findings --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    kind: str       # FORBIDDEN or REVIEW
    what: str       # "torch.softmax", "getattr with a computed name"
    cell: int
    line: int
    code: str       # the line of code, stripped, at most 80 characters
    label: str = ""  # "your softmax cell", "code cell 4": where a student finds it

    def where(self) -> str:
        return f"{self.label or f'cell {self.cell}'}, line {self.line}: `{self.code}`"

    def message(self, assignment: str, exercise: str) -> str:
        if self.kind == FORBIDDEN:
            return (f"forbidden use: {self.what} ({self.where()}), which {exercise} may not use, "
                    f"helpers included. {describe(assignment, exercise)}")
        return (f"needs review: {self.what} ({self.where()}); the grader cannot tell what it reaches. "
                f"Write it with what {exercise} may use, directly")


@dataclass
class ScanResult:
    assignment: str
    forbidden: dict[str, list[Finding]] = field(default_factory=dict)
    review: dict[str, list[Finding]] = field(default_factory=dict)
    reaches: dict[str, list[str]] = field(default_factory=dict)  # exercise -> other exercises its code calls

    def forbidden_message(self, exercise: str) -> str | None:
        found = self.forbidden.get(exercise)
        return found[0].message(self.assignment, exercise) if found else None

    def review_notes(self, exercise: str) -> list[str]:
        return [f.message(self.assignment, exercise) for f in self.review.get(exercise, [])]


# --- the scan --------------------------------------------------------------------------------

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


@dataclass
class _Unit:
    index: int
    lines: list[str]
    tree: ast.Module
    label: str = ""  # where a student finds the cell (Submission.cell_labels)


def scan(assignment: str, program: list[dict], exercises: list[str] | None = None) -> ScanResult:
    """Judge ``program`` (Submission.program() units) against each exercise's policy."""
    exercises = list(exercises or POLICIES[assignment])
    student, trusted = _parse(assignment, program)
    context = _Context.build(student, trusted)
    definitions: dict[str, list[tuple[_Unit, ast.stmt]]] = {}
    module_level: list[tuple[_Unit, ast.stmt]] = []
    load_time: list[tuple[_Unit, ast.AST]] = []  # runs when the cell runs: judged for every exercise, like module code
    own_names = _top_level_names(student)
    for unit in student:
        for stmt in unit.tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                definitions.setdefault(stmt.name, []).append((unit, stmt))
                load_time += [(unit, part) for part in _load_time_parts(stmt, own_names, context)]
            elif _is_plain_binding(stmt, context):  # `_attn = F.scaled_dot_product_attention`: concerns who reads _attn
                for target in stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]:
                    if isinstance(target, ast.Name):  # a plain binding binds names only
                        definitions.setdefault(target.id, []).append((unit, stmt))
            else:
                module_level.append((unit, stmt))
    result = ScanResult(assignment)
    for exercise in exercises:
        # What another exercise's code breaks, this one pays for too when it relies on that code.
        closure = _closure(exercise, definitions, module_level + load_time, POLICIES[assignment])
        found = [f for unit, stmt, policy in closure for f in _judge(stmt, unit, policy, context)]
        found = _dedupe(found)
        judged_by = {id(policy) for _, _, policy in closure}
        result.reaches[exercise] = [e for e in exercises
                                    if e != exercise and id(POLICIES[assignment][e]) in judged_by]
        result.forbidden[exercise] = [f for f in found if f.kind == FORBIDDEN]
        result.review[exercise] = [f for f in found if f.kind == REVIEW]
    return result


def _top_level_names(student: list[_Unit]) -> set[str]:
    """The names the student's cells bind at top level (defs, classes, assignments), imports aside."""
    return {name for unit in student for stmt in unit.tree.body
            if not isinstance(stmt, (ast.Import, ast.ImportFrom)) for name in _bound_names(stmt)}


def _load_time_parts(definition: Definition, own_names: set[str], context: "_Context") -> list[ast.AST]:
    """What a def or class runs when its cell runs: decorators, default values, annotations, base classes and class
    keywords, and a class body's statements other than nested defs. A def or class decorated with something the
    student defines (a registry decorator may store it anywhere) is reached by no name: all of it counts.
    An inert part (``dim=-1``, ``_k=F.softmax``, a base ``nn.Module``, a class attribute ``scale = 1.0``) runs no
    code: like a plain binding, it concerns only whoever reads the definition (it is judged with it)."""
    if any(_names_read(d) & own_names for d in definition.decorator_list):
        return [definition]
    return [part for part in _every_load_time_part(definition, own_names, context) if not _is_inert_part(part, context)]


def _is_inert_part(part: ast.AST, context: "_Context") -> bool:
    if isinstance(part, ast.keyword):
        return _is_inert(part.value, context)
    if isinstance(part, ast.expr):
        return _is_inert(part, context)
    return isinstance(part, ast.Pass) or (isinstance(part, ast.Expr) and isinstance(part.value, ast.Constant)) or (
        isinstance(part, ast.stmt) and _is_plain_binding(part, context))


# Methods the language calls while a class statement runs (on the new class's bases, or on the objects its body
# binds), and every method of a metaclass: they run at load even though nothing calls them by name.
CLASS_CREATION_HOOKS = frozenset({"__init_subclass__", "__set_name__", "__class_getitem__", "__prepare__",
                                  "__mro_entries__", "__instancecheck__", "__subclasscheck__"})


def _every_load_time_part(definition: Definition, own_names: set[str], context: "_Context") -> list[ast.AST]:
    parts: list[ast.AST] = list(definition.decorator_list)
    if isinstance(definition, ast.ClassDef):
        parts += [*definition.bases, *definition.keywords]
        metaclass = any(isinstance(b, ast.Name) and b.id == "type" for b in definition.bases)
        for item in definition.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    metaclass or item.name in CLASS_CREATION_HOOKS):
                parts.append(item)  # not inert: judged whole, for every exercise
            elif isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                parts += _load_time_parts(item, own_names, context)
            else:
                parts.append(item)
    else:
        arguments = definition.args
        parts += [d for d in arguments.defaults + arguments.kw_defaults if d is not None]
        every_arg = arguments.posonlyargs + arguments.args + arguments.kwonlyargs + [arguments.vararg, arguments.kwarg]
        parts += [a.annotation for a in every_arg if a is not None and a.annotation is not None]
        parts += [definition.returns] if definition.returns is not None else []
    return parts


def _is_plain_binding(stmt: ast.stmt, context: "_Context") -> bool:
    """A module-level assignment to plain names of an inert value (a constant, a name, an attribute chain rooted at
    an import, or a tuple/list/dict of those): it only names a value, so its findings concern the exercises that
    read those names. Anything else (a subscript, a call, an operator...) may run code on import, for every
    exercise."""
    if isinstance(stmt, ast.Assign):
        targets, value = stmt.targets, stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets, value = [stmt.target], stmt.value
        if not _is_inert(stmt.annotation, context):
            return False
    else:
        return False
    return all(isinstance(t, ast.Name) for t in targets) and _is_inert(value, context)


def _is_inert(node: ast.expr, context: "_Context") -> bool:
    if isinstance(node, (ast.Constant, ast.Name)):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return isinstance(node.operand, ast.Constant)  # -1e9 is a constant, as far as anyone can tell
    if isinstance(node, ast.Attribute):
        return context.module_of(node) is not None
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_is_inert(e, context) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_inert(k, context) for k in node.keys) and all(
            _is_inert(v, context) for v in node.values)
    return False


def _parse(assignment: str, program: list[dict]) -> tuple[list[_Unit], list[_Unit]]:
    own = release.load_release(assignment)
    written_by_the_course = own.trusted_sources if own else frozenset()  # the setup cell, given cells
    student: list[_Unit] = []
    trusted: list[_Unit] = []
    for unit in program:
        source = unit.get("source") or ""
        try:
            tree = parsing.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # the worker reports it when loading
        parsed = _Unit(unit.get("index", 0), source.splitlines(), tree, str(unit.get("label") or ""))
        (trusted if unit.get("given") or source in written_by_the_course else student).append(parsed)
    return student, trusted


@dataclass
class _Context:
    modules: dict[str, str]          # name bound to a module by an import or an alias -> the module's dotted name
    student_attributes: set[str]     # attribute names the student's classes define (methods, self.x = ...)
    aliases: set[int] = field(default_factory=set)   # id() of the Name targets of module-level aliases (`_t = torch`)
    conflicting: set[str] = field(default_factory=set)  # names imported (or aliased) as two different things
    classes: dict[str, set[str]] = field(default_factory=dict)  # a student's class -> the attribute names it defines
    student_imports: set[str] = field(default_factory=set)  # names the student's own import statements bind
    module_objects: set[str] = field(default_factory=set)  # names bound to a module itself (import x, aliases of it)
    alias_values: set[int] = field(default_factory=set)    # id() of the values of module-level aliases

    @classmethod
    def build(cls, student: list[_Unit], trusted: list[_Unit]) -> "_Context":
        context = cls({"torch": "torch"}, set())
        bound: dict[str, set[str]] = {}
        for unit in student + trusted:
            for node in ast.walk(unit.tree):
                for name, dotted in _imported(node):
                    context.modules[name] = dotted
                    bound.setdefault(name, set()).add(dotted)
                    if isinstance(node, ast.Import) or dotted in plain_attributes():
                        context.module_objects.add(name)
        context._add_aliases(student + trusted, bound)
        context.conflicting = {name for name, values in bound.items() if len(values) > 1}
        for unit in student:
            context.student_imports |= {name for node in ast.walk(unit.tree) for name, _ in _imported(node)}
            context.student_attributes |= _student_attributes(unit.tree)
            for node in ast.walk(unit.tree):
                if isinstance(node, ast.ClassDef):
                    context.classes.setdefault(node.name, set()).update(_student_attributes(node))
        return context

    def owns(self, base: ast.expr, name: str) -> bool:
        """``self.X``/``cls.X``/``super().X``, or ``C.X``/``C(...).X`` for a class C of the student's: X is the
        student's own attribute when the student's classes (C's, for C) define it. Parameters never count."""
        if _is_self(base):
            return name in self.student_attributes
        if isinstance(base, ast.Call):
            base = base.func
        return isinstance(base, ast.Name) and name in self.classes.get(base.id, ())

    def _add_aliases(self, units: list[_Unit], bound: dict[str, set[str]]) -> None:
        """``_t = torch``, ``nn_ = torch.nn`` at top level: names for a module, tracked like imports."""
        pending = [stmt for unit in units for stmt in unit.tree.body
                   if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                   and isinstance(stmt.value, (ast.Name, ast.Attribute))]
        changed = True
        while changed:  # an alias of an alias
            changed = False
            for stmt in list(pending):
                dotted = self.module_of(stmt.value)
                if dotted is None:
                    continue
                target = stmt.targets[0]
                assert isinstance(target, ast.Name)  # pending holds `name = module.path` bindings only
                name = target.id
                self.aliases.add(id(target))
                self.alias_values.add(id(stmt.value))
                if isinstance(stmt.value, ast.Name) and stmt.value.id in self.module_objects:
                    self.module_objects.add(name)
                bound.setdefault(name, set()).add(dotted)
                self.modules.setdefault(name, dotted)
                pending.remove(stmt)
                changed = True

    def module_of(self, node: ast.expr) -> str | None:
        """The dotted module (or torch object) an expression names, when it is rooted in an import."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.modules:
            return ".".join([self.modules[node.id], *reversed(parts)])
        return None


def _imported(node: ast.AST) -> list[tuple[str, str]]:
    """(name bound, dotted module or object) for each name an import statement binds."""
    if isinstance(node, ast.Import):
        return [(alias.asname or alias.name.split(".")[0], alias.name if alias.asname else alias.name.split(".")[0])
                for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [(alias.asname or alias.name, f"{node.module}.{alias.name}")
                for alias in node.names if alias.name != "*"]
    return []


def _bound_names(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _student_attributes(tree: ast.AST) -> set[str]:
    """What the student's classes define: methods, class attributes, ``self.name = ...`` and register_buffer("name").
    Parameter names and attributes set on other objects are not the student's attribute names."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_self(node.value):
            names.add(node.attr)
        elif isinstance(node, ast.Call):  # register_buffer("scale", ...) / register_parameter: a name it defines
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr in ("register_buffer", "register_parameter", "add_module")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value)
    return names


def _closure(exercise: str, definitions, module_level,
             policies: dict[str, Policy]) -> list[tuple[_Unit, ast.stmt, Policy]]:
    """What runs when ``exercise`` is graded, each piece with the policy that judges it.

    The exercise's definitions, the student's definitions they reach by name (transitively), all module-level
    code, and the imports whose names any of these read (an unused ``import sys`` concerns no exercise). Code
    is judged by the policy of the exercise it belongs to: another exercise's definition reached from this one,
    and the helpers it reaches in turn, by that exercise's policy; everything else by this exercise's.
    """
    own = policies[exercise]
    imports = [(u, s) for u, s in module_level if isinstance(s, (ast.Import, ast.ImportFrom))]
    closure = [(u, s, own) for u, s in module_level if (u, s) not in imports]
    pending = [(exercise, own)] + [(name, own) for _, stmt, _ in closure for name in _names_read(stmt)]
    seen: set[tuple[str, int]] = set()
    while pending:
        name, policy = pending.pop()
        policy = policies.get(name, policy)
        if (name, id(policy)) in seen or name not in definitions:
            continue
        seen.add((name, id(policy)))
        for unit, stmt in definitions[name]:
            closure.append((unit, stmt, policy))
            pending += [(n, policy) for n in _names_read(stmt)]
    read = {name for _, stmt, _ in closure for name in _names_read(stmt)}
    return closure + [(u, s, own) for u, s in imports
                      if _bound_names(s) & read or any(a.name == "*" for a in s.names)]


def _names_read(stmt: ast.AST) -> set[str]:
    """Names the code reads (``x += 1`` reads x too); a name it only binds (``softmax: ...`` in a class body, a
    local ``softmax = ...``) does not reach the definition of that name."""
    augmented = {id(n.target) for n in ast.walk(stmt) if isinstance(n, ast.AugAssign)}
    return {n.id for n in ast.walk(stmt)
            if isinstance(n, ast.Name) and (not isinstance(n.ctx, ast.Store) or id(n) in augmented)}


def _dedupe(found: list[Finding]) -> list[Finding]:
    seen, kept = set(), []
    for f in found:
        key = (f.kind, f.what, f.cell, f.line)
        if key not in seen:
            seen.add(key)
            kept.append(f)
    return kept


def _judge(stmt: ast.stmt, unit: _Unit, policy: Policy, context: _Context) -> list[Finding]:
    found = []
    # getattr(obj, "name") is read like obj.name: the call is judged by its literal, not flagged as a lookup
    literal = {id(n.func) for n in ast.walk(stmt) if isinstance(n, ast.Call) and _literal_lookup(n)}
    attribute_bases = {id(n.value) for n in ast.walk(stmt) if isinstance(n, ast.Attribute)}
    for node in ast.walk(stmt):
        if id(node) in literal:
            continue
        verdicts = list(_judge_node(node, policy, context))
        if isinstance(node, ast.Name) and id(node) not in attribute_bases:
            verdicts += _judge_module_as_value(node, context)
        for kind, what in verdicts:
            line = getattr(node, "lineno", stmt.lineno)
            code = unit.lines[line - 1].strip()[:80] if 0 < line <= len(unit.lines) else ""
            found.append(Finding(kind, what, unit.index, line, code, unit.label))
    return found


def _judge_module_as_value(node: ast.Name, context: _Context):
    """A plain module (or one outside the allowed imports) handed around as a value: what is read on it later
    (``m.utils``, ``m.sys.modules``) is read on a name the scan cannot tie to the module and its allowlist."""
    dotted = context.modules.get(node.id)
    if (isinstance(node.ctx, ast.Load) and node.id in context.module_objects and id(node) not in context.alias_values
            and dotted is not None and dotted.split(".")[0] != "torch"):
        yield REVIEW, f"uses the module {node.id} as a value (read what you need on it directly: {node.id}.<name>)"


def _judge_node(node: ast.AST, policy: Policy, context: _Context):
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                yield REVIEW, f"import {alias.name}"
        yield from _judge_rebinding(node, context)
    elif isinstance(node, ast.ImportFrom):
        yield from _judge_import_from(node, policy, context)
        yield from _judge_rebinding(node, context)
    elif isinstance(node, ast.Attribute):
        yield from _judge_attribute(node, policy, context)
    elif isinstance(node, ast.Name):
        yield from _judge_name(node)
        yield from _judge_rebinding(node, context)
    elif isinstance(node, ast.Call):
        yield from _judge_call(node, policy, context)
    elif isinstance(node, ast.MatchClass):
        yield REVIEW, "a `match` class pattern (it reads attributes by name)"
    elif isinstance(node, ast.Global):
        yield REVIEW, "a `global` statement (it rebinds names other cells use)"
    elif isinstance(node, ast.ClassDef):
        yield from _judge_tensor_subclass(node, context)
        yield from _judge_rebinding(node, context)
    else:
        yield from _judge_rebinding(node, context)


TORCH_HOOKS = frozenset({"__torch_function__", "__torch_dispatch__"})


def _judge_tensor_subclass(node: ast.ClassDef, context: _Context):
    """torch runs a Tensor subclass's ``__torch_function__`` with the run-time trace switched off, and torch calls
    on such tensors can be rerouted anywhere: what that code reaches is out of the grader's view."""
    bases = [context.module_of(b) or ast.unparse(b) for b in node.bases]
    if any(b.rpartition(".")[2] in ("Tensor", "TensorBase") for b in bases):
        yield REVIEW, (f"class {node.name} subclasses torch.Tensor "
                       "(torch calls on it can run code the grader cannot see)")
    hooks = [item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
             and item.name in TORCH_HOOKS]
    if hooks:
        yield REVIEW, f"class {node.name} defines {hooks[0]} (it reroutes torch calls out of the grader's view)"


def _judge_rebinding(node: ast.AST, context: _Context):
    """A name an import binds, bound again to something else (`math = torch`, a parameter `math=torch`, a loop
    variable, a def): the scan would take it for the module, so it needs review."""
    for name in _names_bound_by(node, context):
        if name in context.modules:
            yield REVIEW, f"rebinds {name}, a module name (name it something else)"


def _names_bound_by(node: ast.AST, context: _Context) -> list[str]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):  # imported as two different things
        return [name for name, _ in _imported(node) if name in context.conflicting]
    if isinstance(node, ast.Name):
        if not isinstance(node.ctx, (ast.Store, ast.Del)):
            return []
        alias_ok = id(node) in context.aliases and node.id not in context.conflicting
        return [] if alias_ok else [node.id]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)):
        return [node.name] if node.name else []
    if isinstance(node, ast.MatchMapping):
        return [node.rest] if node.rest else []
    if isinstance(node, (ast.Nonlocal,)):
        return list(node.names)
    return []


def _judge_import_from(node: ast.ImportFrom, policy: Policy, context: _Context):
    module = ("." * node.level) + (node.module or "")
    if module not in ALLOWED_MODULES:
        yield REVIEW, f"from {module} import ..."
        return
    for alias in node.names:
        if alias.name == "*":
            yield REVIEW, f"from {module} import * (the names it binds are unknown to the grader)"
        elif alias.name in DYNAMIC_ATTRIBUTES or alias.name.startswith("_") and module != "__future__":
            yield REVIEW, f"from {module} import {alias.name} (it reaches code or names the scan cannot follow)"
        elif module in PLAIN_MODULES:
            if alias.name not in plain_attributes().get(module, ()):
                yield REVIEW, (f"from {module} import {alias.name} (a solution may use only "
                               f"{_allowed_on(module)} from {module})")
        else:
            verdict = _judge_torch_name(alias.name, _display(f"{module}.{alias.name}"), policy, context, exempt=False)
            if verdict:
                yield verdict


def _allowed_on(module: str) -> str:
    names = sorted(plain_attributes().get(module, ()))
    return ", ".join(names) if len(names) <= 20 else "its public names"


def _judge_attribute(node: ast.Attribute, policy: Policy, context: _Context):
    name, base = node.attr, context.module_of(node.value)
    label = _label(node, base)
    if isinstance(node.ctx, (ast.Store, ast.Del)):
        if base is not None or name in IDENTITY_DUNDERS:
            yield REVIEW, f"assigns to {label} (a module's or a function's identity)"
        return
    if name.startswith(FRAME_PREFIXES) and not context.owns(node.value, name):
        yield REVIEW, f"{label} (a frame, code or generator internal: it reaches globals and builtins by name)"
        return
    if base is not None and base.split(".")[0] != "torch":  # math.sqrt is not torch.sqrt: not torch API
        yield from _judge_plain_module_attribute(name, base, label, _root_name(node) in context.student_imports)
        return
    if name in DYNAMIC_ATTRIBUTES and not context.owns(node.value, name):
        yield REVIEW, f"{label} (reaches code or names the scan cannot follow)"
        return
    if base is not None and f"{base}.{name}" in UNIVERSE_MODULES:
        return  # torch.nn, torch.nn.functional: a path to a name, judged at its end
    # Only self.X / cls.X / super().X (or C.X, C(...).X for a class C of the student's) where the student's classes
    # define X is the student's own name; a private or dunder name never is (self._C, self.__dict__), nor one a
    # built-in is known by or the exercise's trace watches (_judge_torch_name).
    own = context.owns(node.value, name) and not name.startswith("_")
    verdict = _judge_torch_name(name, label, policy, context, exempt=own)
    if verdict:
        yield verdict
    elif name.startswith("_") and name not in SAFE_DUNDERS and not _own_private(node, name, context):
        yield REVIEW, f"reads the private or special attribute {label}"


def _own_private(node: ast.Attribute, name: str, context: _Context) -> bool:
    """``self._cache`` a student's class defines, when torch has no attribute by that name (self._C is torch's), and
    ``super().__X__`` inside an override of __X__: the parent's version of the method the student writes."""
    if not context.owns(node.value, name):
        return False
    if name.startswith("__") and name.endswith("__"):
        return _is_super(node.value)
    return name not in universe()


def _is_super(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _judge_plain_module_attribute(name: str, base: str, label: str, imported_by_student: bool):
    """An attribute read on a plain module (math, tqdm, or os bound by a release cell): only its allowlist. A module
    outside the allowed imports that the student imports is flagged at the import, once."""
    allowed = plain_attributes()
    if name.startswith("_") and name not in SAFE_DUNDERS:
        yield REVIEW, f"reads the private {label}"
    elif name in DYNAMIC_ATTRIBUTES or name == "modules":
        yield REVIEW, f"{label} (reaches code or names the scan cannot follow)"
    elif base.split(".")[0] not in ALLOWED_MODULES:
        if imported_by_student:
            return
        yield REVIEW, f"{label} (a module outside the allowed imports: it reaches the process or names by string)"
    elif base in allowed and name not in allowed[base] and name not in SAFE_DUNDERS:
        yield REVIEW, f"{label} (a solution may use only {_allowed_on(base)} from {base})"


def _label(node: ast.Attribute, base: str | None) -> str:
    """``F.softmax (torch.nn.functional.softmax)``: as written, and what it names; ``.softmax`` on other objects."""
    if base is None:
        return f".{node.attr}"
    written = f"{ast.unparse(node.value)}.{node.attr}"
    resolved = f"{base}.{node.attr}"
    return _display(resolved) if written == resolved else f"{written} ({resolved})"


def _display(dotted: str) -> str:
    """``F.softmax (torch.nn.functional.softmax)``: the short spelling notebooks use, then the full name."""
    for prefix, short in (("torch.nn.functional.", "F."), ("torch.nn.", "nn.")):
        if dotted.startswith(prefix):
            return f"{short}{dotted[len(prefix):]} ({dotted})"
    return dotted


def _judge_torch_name(name: str, label: str, policy: Policy, context: _Context, exempt: bool):
    """FORBIDDEN when ``name`` is torch API this exercise may not use; None when fine or not torch's."""
    if name not in universe() or name in policy.allowed or (name.startswith("__") and name.endswith("__")):
        return None  # a dunder (__getattribute__, __dict__) is the language's, not torch's: it needs review instead
    if exempt and name in context.student_attributes and name not in policy.traced and not known_as(name):
        return None  # self.q_proj, a student's method named split: the student's own name
    shown = label if not label.startswith(".") else f"{label} (torch API)"
    group = known_as(name)
    return FORBIDDEN, f"{shown}, {group}" if group else shown


def _is_self(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id in ("self", "cls")) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super")


def _judge_name(node: ast.Name):
    if node.id in DYNAMIC_BUILTINS or node.id in ("attrgetter", "methodcaller", "__builtins__", "__builtin__"):
        yield REVIEW, f"{node.id} (it reaches names or code the scan cannot read)"


def _literal_lookup(call: ast.Call) -> bool:
    """``getattr(obj, "name")`` or ``hasattr(obj, "name")``: a lookup the scan can read."""
    return (isinstance(call.func, ast.Name) and call.func.id in ("getattr", "hasattr") and len(call.args) >= 2
            and isinstance(call.args[1], ast.Constant) and isinstance(call.args[1].value, str))


def _judge_call(node: ast.Call, policy: Policy, context: _Context):
    func = node.func
    if _literal_lookup(node):  # any other getattr, setattr, delattr or hasattr: _judge_name flags the name
        name = node.args[1]
        assert isinstance(name, ast.Constant)  # _literal_lookup: the name is a string literal
        yield from _judge_attribute(ast.Attribute(value=node.args[0], attr=str(name.value), ctx=ast.Load()),
                                    policy, context)
    if isinstance(func, ast.Attribute) and func.attr in ("format", "format_map"):
        text = func.value.value if isinstance(func.value, ast.Constant) else None
        if not isinstance(text, str) or _has_lookup_fields(text):
            yield REVIEW, f".{func.attr}() with a format string that may read attributes or items"


def _has_lookup_fields(text: str) -> bool:
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f]
    except ValueError:
        return True
    return any("." in f or "[" in f for f in fields)


# --- the release's "check your notebook" cell ------------------------------------------------------

def check_notebook(path: str | Path, assignment: str | None = None) -> ScanResult | None:
    """Print, per exercise, OK / forbidden use / needs review, in the grader's own words."""
    from autograder.notebook import read_submission

    path = Path(path)
    assignment = assignment or next((r.assignment for r in release.releases() if r.notebook == path.name), None)
    if assignment is None:
        print(f"cannot tell which assignment {path.name} belongs to; pass assignment=, e.g. 'a1_attention'")
        return None
    if not path.is_file():
        print(f"cannot find {path}: run this cell from the notebook's folder, after saving the notebook")
        return None
    submission = read_submission(path)
    result = scan(assignment, submission.program())
    print(f"The grader's usage policy, applied to the saved {path.name} (save first: it reads the file):")
    for exercise in POLICIES[assignment]:
        print(_verdict_lines(result, exercise))
    if any(result.forbidden.values()) or any(result.review.values()):
        print("A forbidden use scores that exercise 0; code that needs review scores 0 until a person has checked it.")
    return result


def _verdict_lines(result: ScanResult, exercise: str) -> str:
    forbidden = result.forbidden_message(exercise)
    notes = result.review_notes(exercise)
    if not forbidden and not notes:
        return f"{exercise}: OK"
    lines = [f"{exercise}: {forbidden}"] if forbidden else []
    lines += [f"{exercise}: {note}" for note in notes]
    return "\n".join(lines)
