"""The reference pages' code served through the adapter: the helpers beside this file, and
the page runner of the in-process reference tests (tests/unit/reference/pagecode.py), are
imported as top-level modules."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for helpers in (HERE, HERE.parents[2] / "unit" / "reference"):
    if str(helpers) not in sys.path:
        sys.path.insert(0, str(helpers))
