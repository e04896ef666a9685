"""Golden results files (tests/golden/): a change that moves numbers is seen in review."""

import pytest

from dualpath_jax.results import SIM_SEMANTICS
from tests.golden import CELLS, path_of, render


@pytest.mark.parametrize("name", sorted(CELLS))
def test_golden_results_file_is_reproduced_byte_for_byte(name):
    want = path_of(name).read_text()
    got = render(CELLS[name])
    assert got == want, (
        f"{path_of(name)} changed. If the numbers are meant to move, bump "
        f"SIM_SEMANTICS (now {SIM_SEMANTICS}) in dualpath_jax/results/provenance.py "
        f"and run `python -m tests.golden.regenerate`."
    )
