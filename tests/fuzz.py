"""How many examples the property tests (Hypothesis) try.

Each test names the number the suite runs; FRAUDSCREEN_FUZZ_SCALE multiplies every
one of them for a deeper search (``FRAUDSCREEN_FUZZ_SCALE=10 pytest tests/test_oracle.py
tests/test_kinds_reference.py tests/test_compiler.py tests/test_ingest.py``), e.g.
after a change to the compiler or to a rule's boundaries. See README, "Tests".
"""

import os

SCALE = float(os.environ.get("FRAUDSCREEN_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    """``n`` examples times FRAUDSCREEN_FUZZ_SCALE, at least one."""
    return max(1, round(n * SCALE))
