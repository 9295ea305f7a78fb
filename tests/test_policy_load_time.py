"""Routes next to the red team's (tests/catalog/adversarial_attack.py), closed by the same general rules of
autograder/policy.py: each is a realistic cheat the static scan must flag, next to the honest code it must not."""

from __future__ import annotations

import pytest

from autograder import policy

pytestmark = pytest.mark.engine

SETUP = {"index": 1, "grade_id": None, "given": True,
         "source": "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"}
SOFTMAX_BODY = "    e = (x - x.amax(dim, keepdim=True)).exp()\n    return e / e.sum(dim, keepdim=True)\n"
HONEST_SOFTMAX = "def softmax(x, dim=-1):\n" + SOFTMAX_BODY


def findings(source: str, exercise: str = "softmax") -> list[str]:
    result = policy.scan("a1_attention", [SETUP, {"index": 2, "grade_id": "softmax", "source": source}])
    return [f.what for f in result.forbidden[exercise] + result.review[exercise]]


CHEATS = {
    # a base class's __init_subclass__ runs when the subclass is created: at load, for every exercise
    "init_subclass_hook": ("class _Base:\n    def __init_subclass__(cls, **kw):\n"
                           "        torch.Tensor.nansum = F.softmax\n\n\nclass _Child(_Base):\n    pass\n\n\n"
                           "def softmax(x, dim=-1):\n    return x.nansum(dim)\n"),
    # a method decorated by the student's own decorator may be stored anywhere
    "student_decorated_method": ("def _keep(fn):\n    return fn\n\n\nclass _K:\n    @_keep\n    def m(self, x):\n"
                                 "        return F.softmax(x, -1)\n\n\n" + HONEST_SOFTMAX),
    # an import name rebound by a loop target, a walrus or an import of another module
    "loop_target_named_math": ("def softmax(x, dim=-1):\n    for math in (torch,):\n"
                               "        return math.softmax(x, dim)\n"),
    "walrus_named_math": "def softmax(x, dim=-1):\n    if (math := torch):\n        return math.softmax(x, dim)\n",
    "torch_imported_as_math": "import torch as math\n\n\ndef softmax(x, dim=-1):\n    return math.softmax(x, dim)\n",
    # a plain module handed to a helper: what the helper reads on it (pyplot's cbook, outside pyplot's allowlist:
    # `plt.cbook` is flagged) is not tied to the module's allowlist
    "module_passed_as_a_value": ("import matplotlib.pyplot as plt\n\n\ndef _helpers(m):\n    return m.cbook\n\n\n"
                                 "def softmax(x, dim=-1):\n    _helpers(plt)\n" + SOFTMAX_BODY),
    # a generator's code object, reached without a dunder
    "code_object_attribute": "def softmax(x, dim=-1):\n    n = (_ for _ in ()).gi_code.co_names\n" + SOFTMAX_BODY,
}


@pytest.mark.parametrize("name", CHEATS)
def test_cheat_is_flagged(name):
    assert findings(CHEATS[name]), f"{name} went unseen"


@pytest.mark.parametrize("name", ["init_subclass_hook", "student_decorated_method"])
def test_load_time_code_concerns_every_exercise(name):
    assert findings(CHEATS[name], "split_heads"), f"{name} runs at load, yet split_heads was not judged by it"


HONEST = {
    "annotations_and_defaults": ("def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:\n" + SOFTMAX_BODY),
    "own_class_used_by_name": ("class _Stable:\n    def __init__(self, dim):\n        self.dim = dim\n\n"
                               "    def normalize(self, x):\n"
                               "        return x - x.amax(dim=self.dim, keepdim=True)\n\n\n"
                               "def softmax(x, dim=-1):\n    e = _Stable(dim).normalize(x).exp()\n"
                               "    return e / e.sum(dim, keepdim=True)\n"),
    "module_alias": "_m = math\n\n\n" + HONEST_SOFTMAX.replace("exp()", "exp() * _m.exp(0.0)"),
    "library_decorator": "import functools\n\n\n@functools.lru_cache(maxsize=None)\n"
                         "def _scale(d):\n    return 1.0\n\n\n"
                         + HONEST_SOFTMAX,
}


@pytest.mark.parametrize("name", HONEST)
def test_honest_code_is_not_flagged(name):
    assert not findings(HONEST[name]), findings(HONEST[name])


def test_an_inert_default_concerns_only_its_readers():
    """`_k=F.softmax` runs nothing at load: softmax, which reads it, is forbidden; split_heads is not judged by it."""
    source = "def softmax(x, dim=-1, _k=F.softmax):\n    return _k(x, dim)\n"
    assert findings(source) and not findings(source, "split_heads")
