"""Grade the a2_masking catalog (tests/catalog/a2_masking.py) with the hidden suite: mutants must be caught,
with feedback naming the bug; other correct styles must get full marks; cheats must get the outcome
each one's ``check`` states."""

import pytest

from tests.catalog import a2_masking as catalog
from tests.catalog_tests import catalog_tests

pytestmark = pytest.mark.a2_masking

globals().update(catalog_tests("a2_masking", catalog, minimum=(20, 7, 8)))
