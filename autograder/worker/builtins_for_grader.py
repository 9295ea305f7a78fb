"""Helpers a hidden test may call inside the worker, next to the student's objects.

They build what only makes sense where the student's modules live (an optimizer over their
parameters, a stack of their blocks, a seeded generator) and observe them (the sequence
lengths a model was fed). Results still cross the wire as plain values or handles and are
judged in the grader. Called as ``ctx.builtin("optimizer", model, lr=1e-2)``.
"""

from __future__ import annotations

import os
import sys
from types import CodeType, FrameType

import torch
from torch import nn

from autograder import wire


def optimizer(module: nn.Module, name: str = "AdamW", **options):
    return getattr(torch.optim, name)(module.parameters(), **options)


def generator(seed: int, device: str = "cpu") -> torch.Generator:
    """A seeded generator on ``device``: ``torch.multinomial`` needs one on its probabilities' device,
    and CPU and CUDA generators seeded alike give different streams, so the grader replays on the same one."""
    return torch.Generator(device=device).manual_seed(seed)


def sequential(*modules: nn.Module) -> nn.Sequential:
    """A stack of the student's blocks; parameter names become ``0.attn.q_proj.weight``, ..."""
    return nn.Sequential(*modules)


def record_lengths(module: nn.Module) -> None:
    """From now on, remember the sequence length (dim 1) of every input ``module.forward`` gets."""
    lengths: list[int] = []

    def hook(mod, args):
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() >= 2:
            lengths.append(int(args[0].shape[1]))

    module.register_forward_pre_hook(hook)
    setattr(module, "_grader_lengths", lengths)  # noqa: B010  (nn.Module's __setattr__ types only tensors and modules)


def recorded_lengths(module: nn.Module) -> list[int]:
    return list(getattr(module, "_grader_lengths", []))


def shares_parameter(module: nn.Module, name_a: str, name_b: str) -> bool:
    """Whether two parameter names of ``module`` are one tensor (weight tying)."""
    return module.get_parameter(name_a) is module.get_parameter(name_b)


class ContextLM(nn.Module):
    """A language model of the grader's whose prediction depends on the whole context it is fed: after the context
    c the next token is (sum_i (i + 1) * c[i]) mod V, as a one-hot of logits, so greedy decoding is exact. Every
    wrong crop of the context (the first max_len tokens, one token short, the last token only) continues
    differently, and the grader replays it with this same class. It owns no student code, so nothing the student's
    TransformerLM does can hide a crop bug in generate."""

    def __init__(self, vocab_size: int, max_len: int):
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        # generate may read the model's device or dtype from a parameter: give it one (never used in the forward)
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        positions = torch.arange(1, tokens.shape[-1] + 1, device=tokens.device)  # (T,): 1 .. T
        following = torch.cumsum(tokens * positions, dim=-1) % self.vocab_size  # (B, T): the token after each prefix
        return nn.functional.one_hot(following, self.vocab_size).to(self.anchor.dtype) * 10.0


def context_lm(vocab_size: int, max_len: int, device: str = "cpu") -> ContextLM:
    return ContextLM(vocab_size, max_len).to(device)


# --- a7: how much memory a call allocates, counted in elements (never in seconds) -------------------

class _Allocations:
    """A TorchDispatchMode that records, for every aten op run while it is on, the storage of each tensor the op
    returns: the largest one (in elements of its dtype), the sum over all of them, and the number of ops. The
    uint8 views the worker's wire encoder makes of arguments and results are left out (``_for_the_wire``). It sees
    the kernels reached from inside composite functions too (a built-in attention's T x T scores). ``fresh`` sums
    only new storages (none of the op's arguments holds them: not views, not in-place results), so it grows
    like the work done, not like the inputs every slice views. A TorchFunctionMode beside it counts the values
    of any dtype (bits and bytes too) read out of torch (numpy(), tolist(), item(), float(t), ...) by anyone but
    the worker's wire encoder: memory there is out of the recorder's sight. Built lazily: importing torch's
    dispatch machinery costs nothing for the suites that never measure."""

    mode = None
    exits = None
    # Tensor methods that hand values to numpy or Python, where no aten op sees what is built from them.
    EXITS = frozenset({"numpy", "tolist", "item", "__float__", "__int__", "__index__", "__complex__", "__array__",
                       "__repr__", "__str__", "__format__", "__reduce_ex__", "__getstate__", "__round__", "__floor__",
                       "__ceil__", "__trunc__", "__bool__", "__contains__"})

    @classmethod
    def start(cls) -> None:
        from torch.overrides import TorchFunctionMode
        from torch.utils._python_dispatch import TorchDispatchMode

        cls.stop()

        class Recorder(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.largest, self.total, self.ops, self.fresh = 0, 0, 0, 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                self.ops += 1
                # a view, an in-place result or an _unsafe_view shares the storage of an argument: not new memory
                shared = {t.untyped_storage().data_ptr() for t in _tensors(args, kwargs)}
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(t, torch.Tensor) and not (t.dtype == torch.uint8 and _for_the_wire()):
                        elements = t.untyped_storage().nbytes() // max(t.element_size(), 1)
                        self.largest, self.total = max(self.largest, elements), self.total + elements
                        if t.untyped_storage().data_ptr() not in shared:
                            self.fresh += elements
                return out

        class Exits(TorchFunctionMode):
            def __init__(self):
                super().__init__()
                self.exported = 0

            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = getattr(func, "__name__", "")
                if name in _Allocations.EXITS and args and isinstance(args[0], torch.Tensor) \
                        and not _for_the_wire():
                    self.exported += args[0].numel()
                return func(*args, **(kwargs or {}))

        cls.mode, cls.exits = Recorder(), Exits()
        cls.mode.__enter__()
        cls.exits.__enter__()

    @classmethod
    def stop(cls) -> dict:
        mode, cls.mode = cls.mode, None
        exits, cls.exits = cls.exits, None
        if exits is not None:
            exits.__exit__(None, None, None)
        if mode is None or exits is None:
            return {"largest": -1, "total": -1, "ops": -1, "fresh": -1, "exported": -1}
        mode.__exit__(None, None, None)
        return {"largest": mode.largest, "total": mode.total, "ops": mode.ops, "fresh": mode.fresh,
                "exported": exits.exported}


def _for_the_wire() -> bool:
    """Whether the op now recorded runs for the worker's wire encoder or decoder (raw uint8 bytes, numpy() of
    them), not for the student: the first caller outside this file, torch and the worker's trace mode
    (runtime.Trace.__torch_function__) is autograder/wire.py."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _passes_on(frame.f_code):
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename == wire.__file__


TORCH_DIR = os.path.dirname(torch.__file__)
RUNTIME_FILE = os.path.join(os.path.dirname(__file__), "runtime.py")


def _passes_on(code: CodeType) -> bool:
    return code.co_filename == __file__ or code.co_filename.startswith(TORCH_DIR) or (
        code.co_filename == RUNTIME_FILE and code.co_name == "__torch_function__")


def _tensors(args: tuple, kwargs: dict | None):
    """The tensors among an aten op's arguments (a list argument's too: cat, stack)."""
    for a in (*args, *(kwargs or {}).values()):
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (t for t in a if isinstance(t, torch.Tensor))


def record_allocations() -> None:
    """From now on (until ``recorded_allocations``), record the tensors every op creates."""
    _Allocations.start()


def recorded_allocations() -> dict:
    """Stop recording: the largest tensor storage created (elements), all of them together, the new storages alone
    (``fresh``), the number of ops and the values read out of torch (``exported``); -1 everywhere when
    nothing was recording (the recorder was switched off)."""
    return _Allocations.stop()


# --- a6: gpt2_init_ initialises in place -------------------------------------------------------------------------

def parameter_ids(module: nn.Module) -> dict[str, int]:
    """The identity of the tensor behind each parameter name of ``module``: an in-place initialisation keeps every
    one, while assigning a new nn.Parameter (even one tied again by hand) changes it."""
    return {name: id(p) for name, p in module.named_parameters(remove_duplicate=False)}
