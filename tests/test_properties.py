"""Property tests (hypothesis) of what must hold for every input, not just the ones we thought of:
the wire carries any nest of tensors and plain values exactly, a notebook's exercise cells reach the worker
as written (line numbers kept), and messages are shortened at word boundaries."""

from __future__ import annotations

import json

import nbformat
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autograder import wire
from autograder.notebook import definitions_only, read_submission

pytestmark = pytest.mark.engine

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool]


@st.composite
def tensors(draw):
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    values = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed)) * 100
    return values.to(dtype)


plain = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), st.text(max_size=20),
                  st.floats(allow_nan=False, width=64))
values = st.recursive(st.one_of(plain, tensors()),
                      lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                                              st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)),
                      max_leaves=12)


def same(sent, got) -> bool:
    if isinstance(sent, torch.Tensor):
        return (isinstance(got, wire.WireTensor) and got.tensor is not None and got.tensor.dtype == sent.dtype
                and got.tensor.shape == sent.shape and torch.equal(got.tensor, sent))
    if isinstance(sent, (list, tuple)):
        return type(got) is type(sent) and len(got) == len(sent) and all(map(same, sent, got))
    if isinstance(sent, dict):
        return isinstance(got, dict) and got.keys() == sent.keys() and all(same(v, got[k]) for k, v in sent.items())
    return got == sent and type(got) is type(sent)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_the_wire_carries_any_nest_of_values_exactly(value):
    buffers: list[bytes] = []
    header = {"v": wire.encode(value, buffers)}
    got_header, got_buffers = wire.unpack(wire.pack(header, buffers)[8:])
    assert same(value, wire.decode(got_header["v"], got_buffers))


@settings(max_examples=200, deadline=None)
@given(tensors(), st.sampled_from(["as is", "transposed", "strided", "expanded", "parameter", "requires grad"]))
def test_the_fast_tensor_encoding_is_the_general_one(tensor, view):
    """wire._encode_dense_cpu (dense CPU tensors and parameters, fewer torch calls) writes what _encode_any would."""
    if view == "transposed":
        tensor = tensor.t() if tensor.dim() == 2 else tensor
    elif view == "strided":
        tensor = tensor[..., ::2] if tensor.dim() else tensor
    elif view == "expanded":
        tensor = tensor.expand(3, *tensor.shape)
    elif view == "parameter" and tensor.is_floating_point():
        tensor = torch.nn.Parameter(tensor)
    elif view == "requires grad" and tensor.is_floating_point():
        tensor = tensor.clone().requires_grad_(True) * 2
    fast: list[bytes] = []
    general: list[bytes] = []
    encoded = wire._encode_dense_cpu(tensor, fast)
    assert encoded is not None or tensor.dtype == torch.bfloat16
    if encoded is not None:
        assert encoded == wire._encode_any(tensor, general) and fast == general


def _depth_and_values(value) -> tuple[int, int]:
    """What check_header bounds, counted on the parsed value: nesting depth, and the values after the first."""
    if isinstance(value, list):
        inner = [_depth_and_values(v) for v in value]
        return 1 + max((d for d, _ in inner), default=0), len(value) + sum(n for _, n in inner)
    if isinstance(value, dict):
        inner = [_depth_and_values(v) for v in value.values()]
        return 1 + max((d for d, _ in inner), default=0), 2 * len(value) + sum(n for _, n in inner)
    return 0, 0


# Strings full of what the header check must not count: brackets, quotes, backslashes, escapes, non-ASCII.
tricky_text = st.text(alphabet='[]{}",:\\\n\té\u202e ab', max_size=8)
json_values = st.recursive(st.one_of(st.none(), st.integers(), tricky_text),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(tricky_text, inner, max_size=3)),
                           max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(0, 40), st.booleans(), st.booleans())
def test_the_header_check_refuses_exactly_the_headers_too_deep(value, spine, ascii_only, lists):
    """check_header blanks strings and measures depth on the raw bytes, before parsing; it must agree with the
    depth of the parsed value, whatever the strings hold."""
    for _ in range(spine):
        value = [value] if lists else {"[\\\"": value}
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    depth, _ = _depth_and_values(value)
    try:
        wire.check_header(len(raw), raw)
        refused = False
    except wire.WireError as exc:
        assert "nested" in str(exc)
        refused = True
    assert refused == (depth > wire.MAX_DEPTH), (depth, raw[:200])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400), st.integers(10, 300))
def test_shorten_cuts_at_a_word_boundary(text, limit):
    short = wire.shorten(text, limit)
    assert len(short) <= limit
    if len(text) <= limit:
        assert short == text
    else:
        kept = short.removesuffix("…")
        assert short.endswith("…") and text.startswith(kept)
        cut_inside_a_word = kept and text[len(kept)] not in " ,;:." and kept[-1].strip()
        # shorten's rule: a word is cut only when the text has no space in the second half of what is kept
        assert not cut_inside_a_word or " " not in text[limit // 2 + 1 : limit - 1]


statement = st.sampled_from(["x = 1", "print(x)", "def f(a):\n    return a + 1", "import math", "y = f(2)",
                             "class C:\n    pass", "plt.plot([1, 2])", "z = [1, 2, 3]", "for i in range(3):\n    pass"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(statement, min_size=1, max_size=5), min_size=1, max_size=5), st.data())
def test_exercise_cells_reach_the_worker_as_written_and_other_cells_keep_their_lines(tmp_path, cells, data):
    nb = nbformat.v4.new_notebook()
    exercises = {}
    for i, statements in enumerate(cells):
        source = "\n".join(statements)
        cell = nbformat.v4.new_code_cell(source)
        if data.draw(st.booleans()):
            cell.metadata["nbgrader"] = {"grade_id": f"ex{i}", "solution": True, "grade": False, "locked": False,
                                         "schema_version": 3}
            exercises[f"ex{i}"] = source
        nb.cells.append(cell)
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    program = read_submission(path).program()
    by_id = {unit["grade_id"]: unit["source"].rstrip("\n") for unit in program if unit["grade_id"]}
    assert by_id == {k: v for k, v in exercises.items() if v.strip()}
    for unit in program:
        original = nb.cells[unit["index"] - 1].source
        assert len(unit["source"].splitlines()) == len(original.splitlines())  # tracebacks name the cell's lines
        if not unit["grade_id"]:
            assert unit["source"].rstrip("\n") == definitions_only(original).rstrip("\n")
