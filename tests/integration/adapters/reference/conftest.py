"""The reference pages' code served through the adapter: the helpers beside this file, and
the pages' blocks from tests/support (shared with the in-process tests of the pages), are
imported as top-level modules."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for helpers in (str(HERE), str(HERE.parents[2] / "support")):
    if helpers not in sys.path:
        sys.path.insert(0, helpers)
