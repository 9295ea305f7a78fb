"""What runs inside a worker: the student's code, and a small server that calls it.

The worker holds the student's definitions in a namespace and answers requests from
the grader over one socket (see ``autograder.wire``). It judges nothing: it sends back
plain tensors, and every comparison happens in the grader's own process, where
student code cannot reach the functions that compare.
"""

from __future__ import annotations

import builtins
import io
import linecache
import os
import random
import sys
import traceback

import numpy
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from autograder import autodiff, wire
from autograder.worker import builtins_for_grader, sandbox

STUDENT_FILE_PREFIX = "<cell "
HANDLED_TYPES = (nn.Module, torch.optim.Optimizer, torch.Generator)
OUTPUT_TAIL_CHARS = 800


class CappedOutput(io.TextIOBase):
    """A stdout that keeps only the tail of what the student prints."""

    def __init__(self, limit: int = 64 * 1024):
        self.limit = limit
        self.text = ""

    def writable(self):
        return True

    def write(self, s):
        s = str(s)
        self.text = (self.text + s)[-self.limit:]
        return len(s)

    def tail(self) -> str:
        return self.text[-OUTPUT_TAIL_CHARS:]


class Tracer(TorchFunctionMode):
    """Records calls to watched torch functions, however they were reached.

    A torch function mode sees ``torch.softmax``, ``Tensor.softmax``, ``F.softmax``,
    ``torch._C._VariableFunctions.softmax`` and ``nn.Softmax`` alike, because they all
    dispatch through ``__torch_function__``; nothing is replaced, so there is no
    untraced original to fish out. Code that pops the mode reaches into torch
    internals, which the static scan flags for review.
    """

    def __init__(self, names=()):
        super().__init__()
        self.names = set(names)
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.names:
            module = getattr(func, "__module__", None)
            label = f"{MODULE_LABELS.get(module, module or 'torch.Tensor')}.{name}"
            if label not in self.seen:
                self.seen.append(label)
        return func(*args, **(kwargs or {}))

    def take(self) -> list[str]:
        seen = list(self.seen)
        self.seen.clear()
        return seen


MODULE_LABELS = {"torch._C._nn": "torch.nn.functional", "torch._C._special": "torch.special",
                 "torch._C._VariableFunctions": "torch"}


class Runtime:
    def __init__(self, sock):
        self.sock = sock
        self.namespace: dict = {"__name__": "submission", "__builtins__": builtins}
        self.handles: dict[int, object] = {}
        self.handle_ids: dict[int, int] = {}  # id(obj) -> handle, so an object keeps one handle
        self.device = torch.device("cpu")
        self.tracer = Tracer()
        self.output = CappedOutput()
        self.after_load: GlobalState | None = None

    # --- the request loop ------------------------------------------------------------

    def serve(self) -> None:
        sys.stdout = sys.stderr = self.output
        while True:
            try:
                header, buffers = wire.recv(self.sock, bounded=False)
            except wire.WireError:
                return
            op = header.get("op")
            if op == "exit":
                return
            handler = getattr(self, f"op_{op}", None)
            try:
                reply_buffers: list[bytes] = []
                unknown = {"ok": False, "error": {"type": "ProtocolError", "message": f"unknown op {op!r}"}}
                reply = handler(header, buffers, reply_buffers) if handler else unknown
            except BaseException as exc:  # the student may raise SystemExit, KeyboardInterrupt, ...
                reply_buffers = []
                reply = {"ok": False, "error": self.describe(exc)}
                if device_lost(self.device):
                    reply["device_lost"] = True
            reply["traced"] = self.tracer.take()
            self.send(reply, reply_buffers)

    def send(self, reply: dict, buffers: list[bytes]) -> None:
        try:
            wire.send(self.sock, reply, buffers)
        except (ValueError, TypeError) as exc:  # e.g. a value JSON cannot hold
            wire.send(self.sock, {"ok": False, "error": {"type": "ProtocolError", "message": str(exc)}, "traced": []})

    # --- ops -------------------------------------------------------------------------

    def op_load(self, header, buffers, out):
        """Install the tracer, then run each cell on its own so one broken cell spares the rest."""
        self.device = torch.device(header.get("device", "cpu"))
        if sandbox.UNSAFE:
            return {"ok": False, "error": {"type": "SandboxError", "message": sandbox.UNSAFE}}
        try:
            prepare_device(self.device)
        except Exception as exc:  # noqa: BLE001  (any failure means no usable device: said once, not in every test)
            return {"ok": False, "error": {"type": "DeviceError", "message": f"{type(exc).__name__}: {exc}"[:1000]}}
        self.tracer.names = frozenset(header.get("trace", []))
        # Stays on for the worker's life. (A TorchDispatchMode would see kernels reached from inside
        # other torch functions too, but it makes grading ten times slower.)
        self.tracer.__enter__()
        seed = int(header.get("seed", 0))
        # On the CPU its generator is all there is: torch.manual_seed would also queue a seeding of every accelerator
        # torch knows, formatting the call stack for each (about 5 ms a worker).
        if self.device.type == "cpu":
            torch.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)
        random.seed(seed)  # a forked worker's Python generator is reseeded from the OS: every load would differ
        numpy.random.seed(seed % 2**32)
        cells = []
        for cell in header["cells"]:
            filename = f"{STUDENT_FILE_PREFIX}{cell['index']}>"
            source = cell["source"]
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            try:
                exec(compile(source, filename, "exec"), self.namespace)
                cells.append({"index": cell["index"], "ok": True})
            except BaseException as exc:
                cells.append({"index": cell["index"], "ok": False, "error": self.describe(exc)})
        names = sorted(k for k in self.namespace if not k.startswith("_"))
        self.after_load = GlobalState(self.device)
        return {"ok": True, "cells": cells, "names": names}  # the sandbox layers went out before any student code ran

    def op_reset(self, header, buffers, out):
        """Before a worker serves its next exercise: the random generators, grad mode and default dtype as the
        load left them, so the exercise sees what a freshly loaded worker would."""
        if self.after_load is None:
            raise RuntimeError("reset before a successful load")
        self.after_load.restore()
        return {"ok": True}

    def op_call(self, header, buffers, out):
        """Call a student function or a method of a student object, optionally backpropagate."""
        target = self.lookup(header["target"])
        method = header.get("method")
        fn = getattr(target, method) if method else target
        args = self.to_device(wire.decode(header.get("args", []), buffers, self.handle_of))
        kwargs = self.to_device(wire.decode(header.get("kwargs", {"__dict__": {}}), buffers, self.handle_of))
        grad = header.get("grad")
        if grad is not None:
            args = [a.detach().clone().requires_grad_(True) if i in grad["wrt"] else a for i, a in enumerate(args)]
        inputs = list(args)
        self.output.text = ""
        result = fn(*args, **kwargs)
        size = wire.tensor_bytes(result)
        if size > wire.MAX_MESSAGE_BYTES // 2:  # refuse before building a message the grader would refuse
            raise ValueError(f"the result holds {size / 2**20:.0f} MiB of tensors, more than the grader accepts")
        reply = {"ok": True, "result": self.encode(result, out), "args_after": self.encode(tuple(inputs), out)}
        if grad is not None:
            reply["grads"] = self.encode(self.backward(result, inputs, target, grad, buffers), out)
        return reply

    def backward(self, result, inputs, target, grad, buffers):
        grad_outputs = self.to_device(wire.decode(grad["grad_outputs"], buffers))
        outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None]
        params = dict(target.named_parameters()) if isinstance(target, nn.Module) else {}
        for p in params.values():
            p.grad = None
        try:
            tensors = [o for o, _ in pairs]
            if not all(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors):
                raise RuntimeError("an output does not require grad: it is detached from the inputs")
            autodiff.backward(tensors, [g.to(t.dtype) for t, g in pairs])
        except BaseException as exc:
            return {"error": self.describe(exc)}
        return {"inputs": [inputs[i].grad for i in grad["wrt"]], "params": {name: p.grad for name, p in params.items()}}

    def op_get(self, header, buffers, out):
        """Describe a student module: its parameters and submodules."""
        module = self.lookup(header["target"])
        if not isinstance(module, nn.Module):
            raise TypeError(f"{type(module).__name__} is not an nn.Module")
        params = {name: p for name, p in module.named_parameters()}
        submodules = [
            {"name": name, "type": wire._type_name(m), "repr": repr(m)[:200]}
            for name, m in module.named_modules() if name
        ]
        buffers_ = {name: b for name, b in module.named_buffers()}
        return {"ok": True, "params": self.encode(params, out), "buffers": self.encode(buffers_, out),
                "submodules": submodules, "training": module.training}

    def op_set(self, header, buffers, out):
        """Load parameter values into a student module; the names that did not match go back as lists, and the
        grader decides (a buffer the module made itself may be missing, an unknown name may not)."""
        module = self.lookup(header["target"])
        state = self.to_device(wire.decode(header["state"], buffers))
        with torch.no_grad():
            result = module.load_state_dict(state, strict=False)
        return {"ok": True, "missing": [str(k) for k in getattr(result, "missing_keys", [])],
                "unexpected": [str(k) for k in getattr(result, "unexpected_keys", [])]}

    def op_mode(self, header, buffers, out):
        module = self.lookup(header["target"])
        module.train(bool(header.get("train")))
        if header.get("dtype"):
            module.to(dtype=wire.DTYPES[header["dtype"]])
        self.on_device(module)
        return {"ok": True}

    # --- helpers ---------------------------------------------------------------------

    def lookup(self, target):
        if isinstance(target, dict) and "handle" in target:
            return self.handles[int(target["handle"])]
        if isinstance(target, dict) and "builtin" in target:
            return getattr(builtins_for_grader, target["builtin"])
        if target not in self.namespace:
            raise NameError(f"name {target!r} is not defined in the notebook")
        return self.namespace[target]

    def handle_of(self, handle):
        return self.handles[handle.id]

    def encode(self, value, out):
        return wire.encode(value, out, self.register)

    def register(self, obj):
        """Objects that stay in the worker and are reached by handle: modules, optimizers, generators."""
        if not isinstance(obj, HANDLED_TYPES):
            return None
        if id(obj) not in self.handle_ids:
            handle_id = len(self.handles) + 1
            self.handles[handle_id] = obj
            self.handle_ids[id(obj)] = handle_id
            if isinstance(obj, nn.Module):
                self.on_device(obj)
                obj.eval()  # graded behaviour is checked in eval() mode
        return wire.Handle(self.handle_ids[id(obj)], wire._type_name(obj), isinstance(obj, nn.Module))

    def on_device(self, module: nn.Module) -> None:
        """The module moved to the session's device; on the CPU, where a module is made, nothing is moved (``to``
        walks every parameter even then: 13% of the workers' busy time over 25 notebooks, measured under cProfile)."""
        if self.device.type != "cpu":
            module.to(device=self.device)

    def to_device(self, value):
        if isinstance(value, wire.WireTensor):
            return value.tensor.to(self.device)
        if isinstance(value, list):
            return [self.to_device(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.to_device(v) for v in value)
        if isinstance(value, dict):
            return {k: self.to_device(v) for k, v in value.items()}
        return value

    def describe(self, exc: BaseException) -> dict:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(STUDENT_FILE_PREFIX)]
        where = [
            {"cell": f.filename[len(STUDENT_FILE_PREFIX):-1], "line": f.lineno, "function": f.name,
             "code": (f.line or "").strip()[:160]}
            for f in frames[-4:]
        ]
        if isinstance(exc, SyntaxError) and str(exc.filename).startswith(STUDENT_FILE_PREFIX):
            where.append({"cell": str(exc.filename)[len(STUDENT_FILE_PREFIX):-1], "line": exc.lineno,
                          "function": "<module>", "code": (exc.text or "").strip()[:160]})
        try:
            message = str(exc)[:1000]
        except BaseException:
            message = "<unprintable message>"
        return {"type": type(exc).__name__, "message": message, "where": where, "output": self.output.tail()}


class GlobalState:
    """What a test's outcome may depend on beyond the student's definitions: the random generators (torch's, the
    session's GPU's, Python's, numpy's), grad mode and the default dtype; taken after the load, put back by
    ``op_reset``."""

    def __init__(self, device: torch.device):
        self.device = device
        self.torch_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.python_rng = random.getstate()
        self.numpy_rng = numpy.random.get_state()
        self.grad_enabled = torch.is_grad_enabled()
        self.default_dtype = torch.get_default_dtype()

    def restore(self) -> None:
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.device)
        random.setstate(self.python_rng)
        numpy.random.set_state(self.numpy_rng)
        torch.set_grad_enabled(self.grad_enabled)
        torch.set_default_dtype(self.default_dtype)


def prepare_device(device: torch.device) -> None:
    """Make the session's device the one student code gets by default; nothing changes on the CPU."""
    # float32 tolerances assume IEEE float32 matrix products;
    # TF32 (opt-in on recent GPUs) keeps 10 mantissa bits, not 23.
    torch.set_float32_matmul_precision("highest")
    if device.type == "cpu":
        sandbox.limit_address_space()
    if device.type != "cuda":
        return
    if device.index is not None:
        torch.cuda.set_device(device)  # "cuda" and .cuda() in student code mean the session's GPU, not GPU 0
    torch.empty(0, device=device)  # create the CUDA context now, under the load time limit, not a test's


def device_lost(device: torch.device) -> bool:
    """Whether the GPU context is broken: a CUDA device-side assert (an index out of range, multinomial on NaN)
    is sticky, so every later call in this process would fail. On the CPU an error leaves nothing behind."""
    if device.type != "cuda":
        return False
    try:
        torch.cuda.synchronize(device)
    except Exception:  # noqa: BLE001  (whatever CUDA raises, the context is unusable)
        return True
    return False


def run_worker(sock) -> None:
    """Entry point in the freshly forked worker process."""
    Runtime(sock).serve()
    os._exit(0)
