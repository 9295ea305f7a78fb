"""The wire format between the grader and a worker: JSON plus raw tensor bytes, never pickle.

A message is one frame:

    [u64 total length][u32 header length][header JSON][buffer 0][buffer 1]...

The header is a JSON object in which a tensor appears as
``{"__tensor__": i, "dtype": "float32", "shape": [..], ...}`` naming buffer ``i``.
Decoding builds tensors with ``torch.frombuffer``: nothing in a message can run code
in the process that reads it, whatever the sender was. Nor can its size: what the grader reads
from a worker is bounded (``MAX_*`` below), and each bound is checked before the bytes it guards
are read or parsed.
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import time
from collections.abc import Sequence

import torch

# What the grader reads from a worker, at most. The largest reply of the five reference solutions
# (a4/a5's module description) is 0.64 MiB with a 32 KiB JSON header, 195 buffers, 1843 JSON values
# nested 7 deep: each bound below leaves a margin of 20x or more. A message past one of them costs the
# worker its life, and the grader at most the bytes it had read (the header is refused before parsing).
MAX_MESSAGE_BYTES = 64 * 2**20
MAX_HEADER_BYTES = 2**20
MAX_BUFFERS = 4096
MAX_JSON_VALUES = 100_000
MAX_DEPTH = 32

DTYPES = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16,
        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
        torch.complex64, torch.complex128,
    )
}


_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_PLAIN_TYPES = {torch.Tensor: "torch.Tensor", torch.nn.Parameter: "torch.nn.parameter.Parameter"}  # torch's own classes


class WireError(Exception):
    """The peer sent something that is not a valid message (or nothing at all)."""


class PeerClosed(WireError):
    """The peer closed the connection: for a worker, it exited or was killed."""


class MessageTimeout(WireError):
    """No complete message arrived before the deadline."""


# --- text a person will read ---------------------------------------------------------

# Terminal escape sequences (CSI, OSC), then every control character but newline and tab (C0, DEL, C1),
# and the bidirectional overrides that make text display in another order than it reads.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\\\)?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with an ellipsis when cut: a message
    never ends mid-word."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:.") + "…"


def printable(text) -> str:
    """``text`` without terminal escapes or control characters: what student-derived text becomes before
    it is printed or written (an error message, a line of code, a repr, a type name, a file name)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", str(text)))


# --- values <-> JSON + buffers -------------------------------------------------------

def encode(value, buffers: list[bytes], register=None):
    """Turn a value into JSON-able data, appending tensor bytes to ``buffers``.

    ``register(obj)`` may turn an object that cannot cross (a module, an optimizer) into a
    :class:`Handle`; without it, or when it returns None, the object crosses as :class:`Foreign`.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else {"__int__": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, torch.Tensor):
        return _encode_tensor(value, buffers)
    if isinstance(value, (list, tuple)):
        items = [encode(v, buffers, register) for v in value]
        return items if isinstance(value, list) else {"__tuple__": items}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: encode(v, buffers, register) for k, v in value.items()}}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    handle = value if isinstance(value, Handle) else (
        getattr(value, "wire_handle", None) or (register and register(value)))
    if isinstance(handle, Handle):
        return {"__handle__": handle.id, "type": handle.type_name, "module": handle.is_module}
    return {"__object__": _type_name(value), "repr": _safe_repr(value)}


def _encode_tensor(t: torch.Tensor, buffers: list[bytes]) -> dict:
    if type(t) in _PLAIN_TYPES:
        encoded = _encode_dense_cpu(t, buffers)
        if encoded is not None:
            return encoded
    return _encode_any(t, buffers)


def _encode_any(t: torch.Tensor, buffers: list[bytes]) -> dict:
    meta = {
        "type": _type_name(t),
        "requires_grad": bool(t.requires_grad),
        "has_grad_fn": t.grad_fn is not None,
        "device": str(t.device),
    }
    kind = _exotic_kind(t)
    if kind:  # values that do not fit a flat buffer: the grader says what came back and what to return instead
        return {"__tensor__": None, "dtype": str(t.dtype).removeprefix("torch."), "shape": _shape_or_empty(t),
                "layout": kind, **meta}
    # A subclass may override every method; read its storage as a plain tensor.
    plain = torch.Tensor._make_subclass(torch.Tensor, t.detach()) if type(t) is not torch.Tensor else t.detach()
    dtype = str(plain.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        return {"__tensor__": None, "dtype": dtype, "shape": list(plain.shape), **meta}
    buffers.append(_raw_bytes(plain.cpu().resolve_neg()))  # a negative view (``z.conj().imag``): numpy() refuses it
    return {"__tensor__": len(buffers) - 1, "dtype": dtype, "shape": list(plain.shape), **meta}


def _encode_dense_cpu(t: torch.Tensor, buffers: list[bytes]) -> dict | None:
    """What ``_encode_any`` makes of a dense real tensor or parameter on the CPU (None for any other), in 11 torch
    calls instead of 17: in a worker each goes through the tracer's Python (``runtime.Tracer``), and a reply may hold
    hundreds of tensors."""
    device = t.device
    if device.type != "cpu" or t.is_nested or t.is_quantized or t.layout != torch.strided:
        return None
    dtype = t.dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None or dtype.is_complex:
        return None
    try:
        raw = _raw_bytes(t.detach())
    except (RuntimeError, TypeError):  # a negative view, which numpy() refuses: the general path resolves it
        return None
    buffers.append(raw)
    return {"__tensor__": len(buffers) - 1, "dtype": name, "shape": list(t.shape), "type": _PLAIN_TYPES[type(t)],
            "requires_grad": bool(t.requires_grad), "has_grad_fn": t.grad_fn is not None, "device": str(device)}


def _raw_bytes(t: torch.Tensor) -> bytes:
    """The values of a plain CPU tensor in row-major order, whatever its strides (numpy's ``tobytes`` reads them so;
    ``contiguous().view(torch.uint8)`` fails on a one-element tensor with a stride of 2, which counts as contiguous)."""
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()  # numpy has no bfloat16


def _exotic_kind(t: torch.Tensor) -> str | None:
    """"nested", "quantized", a sparse layout, "meta" or "complex" for a tensor that is not a dense real one."""
    try:
        if t.is_nested:
            return "nested"
        if t.is_quantized:
            return "quantized"
        if t.layout != torch.strided:
            return str(t.layout).removeprefix("torch.")
        if t.device.type == "meta":
            return "meta"
        if t.is_complex():
            return "complex"
    except Exception:  # noqa: BLE001  (a tensor whose properties raise cannot be read either)
        return "unreadable"
    return None


def _shape_or_empty(t: torch.Tensor) -> list[int]:
    try:
        return [int(n) for n in t.shape]
    except Exception:  # noqa: BLE001  (a nested tensor has no single shape)
        return []


def decode(data, buffers: list[bytes], handle_factory=None):
    """Inverse of :func:`encode`. Tensors come back as :class:`WireTensor` metadata + tensor.

    Whatever the sender wrote, the only exception that escapes is :class:`WireError`.
    """
    try:
        return _decode(data, buffers, handle_factory, 0)
    except WireError:
        raise
    except (RecursionError, ValueError, TypeError, KeyError, IndexError, OverflowError, RuntimeError) as exc:
        raise WireError(f"malformed value in message ({type(exc).__name__})") from None


def _decode(data, buffers: list[bytes], handle_factory, depth: int):
    if depth > MAX_DEPTH:
        raise WireError(f"value nested more than {MAX_DEPTH} deep")
    decode, depth = _decode, depth + 1
    if isinstance(data, list):
        return [decode(v, buffers, handle_factory, depth) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tensor__" in data:
        return _decode_tensor(data, buffers)
    if "__tuple__" in data:
        return tuple(decode(v, buffers, handle_factory, depth) for v in data["__tuple__"])
    if "__dict__" in data:
        return {k: decode(v, buffers, handle_factory, depth) for k, v in data["__dict__"].items()}
    if "__int__" in data:
        return int(data["__int__"])
    if "__float__" in data:
        return float(data["__float__"])
    if "__dtype__" in data:
        return DTYPES.get(data["__dtype__"], data["__dtype__"])
    if "__handle__" in data:
        handle = Handle(int(data["__handle__"]), printable(data.get("type", "?"))[:200], bool(data.get("module", True)))
        return handle_factory(handle) if handle_factory else handle
    if "__object__" in data:
        return Foreign(printable(data["__object__"])[:200], printable(data.get("repr", ""))[:300])
    raise WireError(f"unknown value in message: keys {sorted(data)[:5]}")


def _decode_tensor(data: dict, buffers: list[bytes]):
    dtype = DTYPES.get(str(data.get("dtype")))
    shape = [int(s) for s in data.get("shape", [])]
    if any(n < 0 for n in shape) or len(shape) > 16:
        raise WireError(f"impossible tensor shape {shape[:17]}")
    index = data["__tensor__"]
    if dtype is None or index is None:
        tensor = None
    else:
        raw = buffers[int(index)]
        numel = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if len(raw) != numel * itemsize:
            raise WireError(f"tensor of shape {shape} and dtype {dtype} sent {len(raw)} bytes")
        flat = torch.frombuffer(bytearray(raw), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
        tensor = flat.reshape(shape)
    return WireTensor(
        tensor=tensor,
        dtype=printable(data.get("dtype"))[:40],
        shape=tuple(shape),
        type_name=printable(data.get("type", "torch.Tensor"))[:200],
        requires_grad=bool(data.get("requires_grad")),
        has_grad_fn=bool(data.get("has_grad_fn")),
        device=printable(data.get("device", "cpu"))[:40],
        layout=printable(data.get("layout", "strided"))[:40],
    )


class WireTensor:
    """A tensor as a worker reported it: the values plus what the grader checks about them."""

    def __init__(self, tensor, dtype, shape, type_name, requires_grad, has_grad_fn, device, layout="strided"):
        self.tensor = tensor
        self.layout = layout  # "strided", or what made the values unreadable (see ``_exotic_kind``)
        self.dtype = dtype
        self.shape = shape
        self.type_name = type_name
        self.requires_grad = requires_grad
        self.has_grad_fn = has_grad_fn
        self.device = device

    def __repr__(self):
        return f"WireTensor({self.type_name}, shape={list(self.shape)}, dtype={self.dtype}, device={self.device})"


class Foreign:
    """A value of a type that does not cross the wire (a numpy array, a module, ...)."""

    def __init__(self, type_name: str, text: str):
        self.type_name = type_name
        self.text = text

    def __repr__(self):
        return f"<{self.type_name}>"


class Handle:
    """A reference to an object that lives in the worker (a student's module, an optimizer)."""

    def __init__(self, id: int, type_name: str, is_module: bool = True):
        self.id = id
        self.type_name = type_name
        self.is_module = is_module


def _type_name(value) -> str:
    cls = type(value)
    module = getattr(cls, "__module__", "") or ""
    return f"{module}.{cls.__qualname__}" if module not in ("builtins", "") else cls.__qualname__


def _safe_repr(value) -> str:
    try:
        return repr(value)[:200]
    except BaseException:  # a student's __repr__ may raise anything
        return "<unprintable>"


# --- framing over a socket -----------------------------------------------------------

def tensor_bytes(value) -> int:
    """Bytes the tensors in ``value`` would take on the wire (to refuse a huge result before building it)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    return 0


def pack(header: dict, buffers: list[bytes]) -> bytes:
    head = json.dumps(header, allow_nan=False).encode()
    body = [struct.pack("<I", len(head)), head]
    for raw in buffers:
        body += [struct.pack("<Q", len(raw)), raw]
    payload = b"".join(body)
    return struct.pack("<Q", len(payload)) + payload


def unpack(payload) -> tuple[dict, list]:
    """Split a frame (without its length prefix) into the header and the buffers, within the bounds above."""
    view = memoryview(payload)
    try:
        (head_len,) = struct.unpack_from("<I", view, 0)
    except struct.error:
        raise WireError("malformed message: too short") from None
    return _parse(view[4:4 + head_len], view[4 + head_len:])


def _parse(head, body) -> tuple[dict, list]:
    """The header (checked, then parsed) and the buffers, as views into ``body``: nothing is copied."""
    check_header(len(head), head)
    try:
        # Decoded as UTF-8, what the check read: json.loads(bytes) would also take UTF-16 and UTF-32, whose non-ASCII
        # characters may hold the bytes of quotes and brackets (U+225B is [ and " in UTF-16-LE), so that a header of
        # 900 nested lists and 150 000 values passed a check that counted neither.
        header = json.loads(bytes(head).decode("utf-8"))
        buffers, pos = [], 0
        while pos < len(body):
            (n,) = struct.unpack_from("<Q", body, pos)
            buffers.append(body[pos + 8:pos + 8 + n])
            pos += 8 + n
            if len(buffers) > MAX_BUFFERS:
                raise WireError(f"message with more than {MAX_BUFFERS} buffers")
    except (struct.error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WireError(f"malformed message: {type(exc).__name__}") from None
    if not isinstance(header, dict) or pos != len(body):
        raise WireError("malformed message")
    return header, buffers


def _unpack_trusted(payload: bytes) -> tuple[dict, list]:
    """A message from the grader: only its framing is checked."""
    try:
        (head_len,) = struct.unpack_from("<I", payload, 0)
        header = json.loads(payload[4:4 + head_len])
        buffers, pos = [], 4 + head_len
        while pos < len(payload):
            (n,) = struct.unpack_from("<Q", payload, pos)
            buffers.append(payload[pos + 8:pos + 8 + n])
            pos += 8 + n
    except (struct.error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WireError(f"malformed message: {type(exc).__name__}") from None
    if not isinstance(header, dict) or pos != len(payload):
        raise WireError("malformed message")
    return header, buffers


def check_header(head_len: int, head) -> None:
    """Refuse a JSON header before parsing it: too long, too many values, or nested too deep.

    Strings are blanked first (one regex pass, in C), so what they hold counts for nothing; then every
    JSON value but the first follows a ``,``, ``[`` or ``:``, which bounds the number of values, and a
    header cannot nest deeper than its count of ``[`` and ``{``, so only one with many of them pays for
    an exact depth scan. A bomb costs milliseconds.
    """
    if head_len > MAX_HEADER_BYTES:
        raise WireError(f"message header of {head_len / 2**20:.1f} MiB exceeds the "
                        f"{MAX_HEADER_BYTES / 2**20:.0f} MiB limit")
    skeleton = _without_strings(bytes(head))
    openers = skeleton.count(b"[") + skeleton.count(b"{")
    if openers + skeleton.count(b",") + skeleton.count(b":") > MAX_JSON_VALUES:
        raise WireError(f"message header with more than {MAX_JSON_VALUES} values")
    if openers > MAX_DEPTH and _nesting(skeleton) > MAX_DEPTH:
        raise WireError(f"message header nested more than {MAX_DEPTH} deep")


_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_INNERMOST = re.compile(rb"\[\]|\{\}")


def _without_strings(head: bytes) -> bytes:
    """``head`` with what its JSON strings hold blanked, in C. Backslashes stand only in strings, each starting an
    escape of two characters: with escaped backslashes gone, a backslash before a quote escapes it; with escaped
    quotes gone, every quote opens or closes a string, and splitting at them leaves what lies outside."""
    if b"\\" in head:
        head = head.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b'""'.join(head.split(b'"')[::2])


def _nesting(skeleton: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in a header whose strings are blanked, counted up to ``MAX_DEPTH + 1``.
    Each round removes the pairs that are innermost before it (one left-to-right pass: a pair it uncovers waits for
    the next), so brackets ``d`` deep are gone after ``d`` rounds; unbalanced ones never are, and count as too deep."""
    brackets = skeleton.translate(None, _NOT_BRACKETS)
    depth = 0
    while brackets and depth <= MAX_DEPTH:
        brackets = _INNERMOST.sub(b"", brackets)
        depth += 1
    return MAX_DEPTH + 1 if brackets else depth


def send(sock: socket.socket, header: dict, buffers: Sequence[bytes] = ()) -> None:
    sock.sendall(pack(header, list(buffers)))


def recv(sock: socket.socket, deadline: float | None = None,
         max_bytes: int = MAX_MESSAGE_BYTES, bounded: bool = True) -> tuple[dict, list]:
    """Read one message; ``deadline`` is a ``time.monotonic()`` value.

    The length and the header length are checked before anything else is read, the header before
    the buffers are: a bomb is refused after a few bytes (or at most the 1 MiB header). A worker
    reads the grader's messages with ``bounded=False``: they are trusted, and a notebook's source
    may hold more than the bounds allow a reply.
    """
    if not bounded:
        (length,) = struct.unpack("<Q", _recv_exact(sock, 8, deadline))
        return _unpack_trusted(_recv_exact(sock, length, deadline))
    (length,) = struct.unpack("<Q", _recv_exact(sock, 8, deadline))
    if length > max_bytes:
        raise WireError(f"message of {length / 2**20:.0f} MiB exceeds the {max_bytes / 2**20:.0f} MiB limit")
    if length < 4:
        raise WireError("malformed message: too short")
    (head_len,) = struct.unpack("<I", _recv_exact(sock, 4, deadline))
    if head_len > length - 4:
        raise WireError("malformed message: header longer than the message")
    if head_len > MAX_HEADER_BYTES:
        raise WireError(f"message header of {head_len / 2**20:.1f} MiB exceeds the "
                        f"{MAX_HEADER_BYTES / 2**20:.0f} MiB limit")
    head = _recv_exact(sock, head_len, deadline)
    check_header(head_len, head)  # before the buffers are even read
    body = bytearray(length - 4 - head_len)
    _recv_into(sock, memoryview(body), deadline)
    return _parse(head, memoryview(body))


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    buffer = bytearray(n)
    _recv_into(sock, memoryview(buffer), deadline)
    return bytes(buffer)


def _recv_into(sock: socket.socket, view: memoryview, deadline: float | None) -> None:
    """Fill ``view`` from the socket: no chunk list, no join, so a message costs its own size once."""
    got, n = 0, len(view)
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MessageTimeout("no reply before the deadline")
            sock.settimeout(remaining)
        else:
            sock.settimeout(None)
        try:
            count = sock.recv_into(view[got:], min(n - got, 1 << 20))
        except socket.timeout:
            raise MessageTimeout("no reply before the deadline") from None
        except OSError as exc:
            raise PeerClosed(str(exc)) from None
        if not count:
            raise PeerClosed("connection closed")
        got += count
