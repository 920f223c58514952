"""The recovery fault tests run real clusters with clusterkit's helpers
(tests/integration/cluster/clusterkit.py) and the scenario of tests/support/recoverykit.py."""

from __future__ import annotations

import sys
from pathlib import Path

CLUSTER = str(Path(__file__).resolve().parents[1] / "cluster")
if CLUSTER not in sys.path:
    sys.path.insert(0, CLUSTER)
