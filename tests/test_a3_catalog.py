"""Grade the a3_ffn_positions catalog (tests/catalog/a3_ffn_positions.py) with the hidden suite: mutants must be caught,
with feedback naming the bug; other correct styles must get full marks; cheats must get the outcome
each one's ``check`` states."""

import pytest

from tests.catalog import a3_ffn_positions as catalog
from tests.catalog_tests import catalog_tests

pytestmark = pytest.mark.a3_ffn_positions

globals().update(catalog_tests("a3_ffn_positions", catalog, minimum=(12, 3, 4)))
