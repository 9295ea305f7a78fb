"""The wire format between the grader and a worker: JSON plus raw tensor bytes, never pickle.

A message is one frame:

    [u64 total length][u32 header length][header JSON][buffer 0][buffer 1]...

The header is a JSON object in which a tensor appears as
``{"__tensor__": i, "dtype": "float32", "shape": [..], ...}`` naming buffer ``i``.
Decoding builds tensors with ``torch.frombuffer``: nothing in a message can run code
in the process that reads it, whatever the sender was.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import time

import torch

MAX_MESSAGE_BYTES = 512 * 1024 * 1024  # a result bigger than this is refused, not read

DTYPES = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16,
        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
        torch.complex64, torch.complex128,
    )
}


class WireError(Exception):
    """The peer sent something that is not a valid message (or nothing at all)."""


class PeerClosed(WireError):
    """The peer closed the connection: for a worker, it exited or was killed."""


class MessageTimeout(WireError):
    """No complete message arrived before the deadline."""


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
    handle = value if isinstance(value, Handle) else getattr(value, "wire_handle", None) or (register and register(value))
    if isinstance(handle, Handle):
        return {"__handle__": handle.id, "type": handle.type_name, "module": handle.is_module}
    return {"__object__": _type_name(value), "repr": _safe_repr(value)}


def _encode_tensor(t: torch.Tensor, buffers: list[bytes]) -> dict:
    meta = {
        "type": _type_name(t),
        "requires_grad": bool(t.requires_grad),
        "has_grad_fn": t.grad_fn is not None,
        "device": str(t.device),
    }
    # A subclass may override every method; read its storage as a plain tensor.
    plain = torch.Tensor._make_subclass(torch.Tensor, t.detach()) if type(t) is not torch.Tensor else t.detach()
    dtype = str(plain.dtype).removeprefix("torch.")
    if dtype not in DTYPES or plain.device.type == "meta" or plain.is_sparse:
        return {"__tensor__": None, "dtype": dtype, "shape": list(plain.shape), **meta}
    data = plain.cpu().contiguous().reshape(-1)
    raw = data.view(torch.uint8).numpy().tobytes() if data.numel() else b""
    buffers.append(raw)
    return {"__tensor__": len(buffers) - 1, "dtype": dtype, "shape": list(plain.shape), **meta}


def decode(data, buffers: list[bytes], handle_factory=None):
    """Inverse of :func:`encode`. Tensors come back as :class:`WireTensor` metadata + tensor.

    Whatever the sender wrote, the only exception that escapes is :class:`WireError`.
    """
    try:
        return _decode(data, buffers, handle_factory)
    except WireError:
        raise
    except (RecursionError, ValueError, TypeError, KeyError, IndexError, OverflowError, RuntimeError) as exc:
        raise WireError(f"malformed value in message ({type(exc).__name__})") from None


def _decode(data, buffers: list[bytes], handle_factory=None):
    decode = _decode
    if isinstance(data, list):
        return [decode(v, buffers, handle_factory) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tensor__" in data:
        return _decode_tensor(data, buffers)
    if "__tuple__" in data:
        return tuple(decode(v, buffers, handle_factory) for v in data["__tuple__"])
    if "__dict__" in data:
        return {k: decode(v, buffers, handle_factory) for k, v in data["__dict__"].items()}
    if "__int__" in data:
        return int(data["__int__"])
    if "__float__" in data:
        return float(data["__float__"])
    if "__dtype__" in data:
        return DTYPES.get(data["__dtype__"], data["__dtype__"])
    if "__handle__" in data:
        handle = Handle(int(data["__handle__"]), str(data.get("type", "?")), bool(data.get("module", True)))
        return handle_factory(handle) if handle_factory else handle
    if "__object__" in data:
        return Foreign(str(data["__object__"]), str(data.get("repr", ""))[:300])
    raise WireError(f"unknown value in message: keys {sorted(data)[:5]}")


def _decode_tensor(data: dict, buffers: list[bytes]):
    dtype = DTYPES.get(data.get("dtype"))
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
        dtype=str(data.get("dtype")),
        shape=tuple(shape),
        type_name=str(data.get("type", "torch.Tensor")),
        requires_grad=bool(data.get("requires_grad")),
        has_grad_fn=bool(data.get("has_grad_fn")),
        device=str(data.get("device", "cpu")),
    )


class WireTensor:
    """A tensor as a worker reported it: the values plus what the grader checks about them."""

    def __init__(self, tensor, dtype, shape, type_name, requires_grad, has_grad_fn, device):
        self.tensor = tensor
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


def unpack(payload: bytes) -> tuple[dict, list[bytes]]:
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


def send(sock: socket.socket, header: dict, buffers: list[bytes] = ()) -> None:
    sock.sendall(pack(header, list(buffers)))


def recv(sock: socket.socket, deadline: float | None = None,
         max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[dict, list[bytes]]:
    """Read one message; ``deadline`` is a ``time.monotonic()`` value."""
    (length,) = struct.unpack("<Q", _recv_exact(sock, 8, deadline))
    if length > max_bytes:
        raise WireError(f"message of {length / 2**20:.0f} MiB exceeds the {max_bytes / 2**20:.0f} MiB limit")
    return unpack(_recv_exact(sock, length, deadline))


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MessageTimeout("no reply before the deadline")
            sock.settimeout(remaining)
        else:
            sock.settimeout(None)
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except socket.timeout:
            raise MessageTimeout("no reply before the deadline") from None
        except OSError as exc:
            raise PeerClosed(str(exc)) from None
        if not chunk:
            raise PeerClosed("connection closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
