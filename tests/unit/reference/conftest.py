"""The tests here import the helper beside this file, and the reference pages' blocks from
tests/support (shared with the tests that serve the pages through the adapter), as
top-level modules."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for helpers in (str(HERE), str(HERE.parents[1] / "support")):
    if helpers not in sys.path:
        sys.path.insert(0, helpers)
