"""Grade the a1_attention catalog (tests/catalog/a1_attention.py) with the hidden suite: mutants must be caught,
with feedback naming the bug; other correct styles must get full marks; cheats must get the outcome
each one's ``check`` states."""

import pytest

from tests.catalog import a1_attention as catalog
from tests.catalog_tests import catalog_tests

pytestmark = pytest.mark.a1_attention

globals().update(catalog_tests("a1_attention", catalog, minimum=(18, 5, 8)))
