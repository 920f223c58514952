"""Settings shared by every test."""

from __future__ import annotations

import os

# Clusters started by tests (as subprocesses, which inherit this) pick a free metrics port
# instead of the default 9100, so that several can run at once and none collides with a
# metrics exporter already on the machine.
os.environ.setdefault("SOCKETSPEC_METRICS_PORT", "0")
