"""Grade the a4_residual_norm catalog (tests/catalog/a4_residual_norm.py) with the hidden suite: mutants must be caught,
with feedback naming the bug; other correct styles must get full marks; cheats must get the outcome
each one's ``check`` states."""

import pytest

from tests.catalog import a4_residual_norm as catalog
from tests.catalog_tests import catalog_tests

pytestmark = pytest.mark.a4_residual_norm

globals().update(catalog_tests("a4_residual_norm", catalog, minimum=(12, 3, 4)))
