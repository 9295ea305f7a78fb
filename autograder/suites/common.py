"""What every hidden suite shares: constants, loading the test's weights, and the common checks.

Written once here so five suites cannot drift apart (a1 once loaded weights by parsing PyTorch's error text).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from autograder.checks import expect_equal, expect_tensor, expect_unchanged, fail, guess
from autograder.session import RemoteModule
from autograder.wire import WireTensor

FLOATS = (torch.float32, torch.float64)  # every exercise runs in both; float64 is compared at tight tolerance
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")  # MultiHeadAttention's nn.Linear submodules


def dtype_name(dtype: torch.dtype) -> str:
    """``float32``, not ``torch.float32``: how a student writes it."""
    return str(dtype).removeprefix("torch.")


def load_weights(module: RemoteModule, weights: dict[str, torch.Tensor], what: str | None = None) -> None:
    """Load the test's weights into a student's module by name, judged from the names that did not match.

    Allowed: a persistent buffer the module registered itself (a scale, a mask, sinusoids: the test never sends
    it, and it keeps its value), and a second name for a parameter that was loaded (``self.up`` and
    ``self.net[0]`` are one layer). Anything else is the student's naming bug, said in one sentence.
    """
    what = what or module.type_name.rpartition(".")[2]
    missing, unexpected = module.load_state_dict(weights)
    if unexpected:
        fail(f"{what} has no parameter named {', '.join(unexpected[:4])} (the test loads "
             f"{', '.join(sorted(weights)[:6])}{', ...' if len(weights) > 6 else ''})",
             "Name the submodules and parameters exactly as the notebook says")
    if not missing:
        return
    state = module.describe()
    own_buffers = set(state["buffers"])
    params = state["params"]
    # A name missing from the parameters too is a second name of a loaded one (named_parameters lists each once).
    unexplained = [name for name in missing if name not in own_buffers and name in params
                   and not _holds_a_sent_value(params[name], weights)]
    if unexplained:
        fail(f"{what} has parameters the test does not set: {', '.join(unexplained[:4])}",
             "The module should have exactly the parameters the notebook lists, no others")


def _holds_a_sent_value(value, weights: dict[str, torch.Tensor]) -> bool:
    tensor = value.tensor if isinstance(value, WireTensor) else None
    return tensor is not None and any(w.shape == tensor.shape and torch.equal(w.to(tensor.dtype).cpu(), tensor)
                                      for w in weights.values())


class ParameterMismatch(NamedTuple):
    message: str
    extra: list[str]
    missing: list[str]
    wrong: list[str]  # names whose shape differs


def parameter_mismatch(module: RemoteModule, expected: dict, what: str, *,
                       limit: bool = True) -> ParameterMismatch | None:
    """None when ``module``'s parameters have exactly the names and shapes of ``expected``; else what differs and a
    message naming it (with ``limit``: at most 4 missing, 4 extra and 3 misshapen names)."""
    got = {name: tuple(t.shape) for name, t in module.parameters.items()}
    if got == expected:
        return None
    extra, missing = sorted(set(got) - set(expected)), sorted(set(expected) - set(got))
    wrong = sorted(n for n in set(got) & set(expected) if got[n] != expected[n])
    shapes = [f"{n} {got[n]} (expected {expected[n]})" for n in wrong]
    if limit:
        missing_shown, extra_shown, shapes = missing[:4], extra[:4], shapes[:3]
    else:
        missing_shown, extra_shown = missing, extra
    message = (f"{what} has unexpected parameters: missing {missing_shown or 'none'}, extra {extra_shown or 'none'}, "
               f"wrong shape {shapes or 'none'}")
    return ParameterMismatch(message, extra, missing, wrong)


def expect_keeps_dtype_device_input(ctx, result, x: torch.Tensor, what: str, dtype: torch.dtype,
                                    input_name: str = "the input x", arg: int = 0) -> torch.Tensor:
    """The hygiene triple of every exercise: the result keeps the input's dtype and device, the input is unchanged."""
    out = expect_tensor(result.value, f"{what} for a {dtype_name(dtype)} input", dtype=dtype,
                        device=ctx.session.device)
    expect_unchanged(x, result.args_after[arg], input_name)
    return out


def expect_deterministic(again, first, what: str, eval_mode: bool = True) -> None:
    """A second call on the same input gives the same values (``again`` and ``first`` are call results)."""
    value = again.value if hasattr(again, "value") else again
    expect_equal(value, first.value.tensor if isinstance(first.value, WireTensor) else first.value,
                 f"a second {what} on the same input",
                 hint="In eval() mode the output must be deterministic" if eval_mode
                 else "The result should not depend on hidden state")


def torch_mha(state: dict, n_heads: int) -> nn.MultiheadAttention:
    """nn.MultiheadAttention in float64 and eval() mode, holding ``state`` (its q, k, v projections stacked in
    in_proj): PyTorch's own multi-head attention, which cross-checks the reference."""
    d_model, bias = state["q_proj.weight"].shape[0], "q_proj.bias" in state
    module = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True, dtype=torch.float64).eval()
    with torch.no_grad():
        module.in_proj_weight.copy_(torch.cat([state[f"{p}.weight"] for p in PROJECTIONS[:3]]))
        module.out_proj.weight.copy_(state["out_proj.weight"])
        if bias:
            module.in_proj_bias.copy_(torch.cat([state[f"{p}.bias"] for p in PROJECTIONS[:3]]))
            module.out_proj.bias.copy_(state["out_proj.bias"])
    return module


def torch_mha_grads(module: nn.MultiheadAttention) -> dict[str, torch.Tensor]:
    """The gradients of ``torch_mha``'s parameters (with biases) after a backward pass, named as the student's
    module names them."""
    stacked = {"weight": module.in_proj_weight.grad.chunk(3), "bias": module.in_proj_bias.grad.chunk(3)}
    grads = {f"{p}.{kind}": stacked[kind][i] for i, p in enumerate(PROJECTIONS[:3]) for kind in stacked}
    return {**grads, "out_proj.weight": module.out_proj.weight.grad, "out_proj.bias": module.out_proj.bias.grad}


def param_grads(result, names) -> dict:
    """The gradient of each parameter in ``names`` after a forward with ``grad=``; one that no gradient reached
    fails the test, naming it."""
    grads = {}
    for name in names:
        got = result.param_grads.get(name)
        if got is None:
            module = name.rpartition(".")[0] or name
            fail(f"{name} received no gradient", guess(f"Is {module} used in forward, on a path that is not detached?"))
        grads[name] = got
    return grads
