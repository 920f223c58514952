"""``--reload``: which source files make up the application, and whether one changed.

Owns finding the application's package directories (from the module an ``APP`` names, or
from every handler library of the entry-point group) and comparing snapshots of their
``.py`` files' modification times and sizes. Polled from the supervisor's loop, so it needs
no file-notification library; a snapshot of a package of a few hundred files costs well
under a millisecond. Does not own reloading (the supervisor's rolling restart does).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from socketspec.loader import ENTRY_POINT_GROUP

logger = logging.getLogger("socketspec.supervisor")

# Directories that hold no application source of their own.
SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".venv", "node_modules", ".mypy_cache"})

Snapshot = dict[Path, tuple[int, int]]  # path -> (mtime_ns, size)


def source_roots(app_spec: str | None) -> list[Path]:
    """The directories (a package) or files (a plain module) whose ``.py`` files are the
    application's code: the top-level package of ``app_spec``'s module, or of every entry
    point of the handler group when there is no ``APP``."""
    if app_spec:
        tops = [app_spec.partition(":")[0].split(".")[0]]
    else:
        tops = sorted(
            {entry.module.split(".")[0] for entry in entry_points(group=ENTRY_POINT_GROUP)}
        )
    roots: list[Path] = []
    for top in tops:
        spec = importlib.util.find_spec(top)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            roots.extend(Path(location) for location in spec.submodule_search_locations)
        elif spec.origin and spec.origin.endswith(".py"):
            roots.append(Path(spec.origin))
    return roots


def snapshot(roots: Iterable[Path]) -> Snapshot:
    """Every ``.py`` file under ``roots`` with its modification time and size."""
    found: Snapshot = {}
    for root in roots:
        if root.is_file():
            _stat_into(found, root)
            continue
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS]
            for name in files:
                if name.endswith(".py"):
                    _stat_into(found, Path(directory) / name)
    return found


def _stat_into(found: Snapshot, path: Path) -> None:
    try:
        stat = path.stat()
    except OSError:  # removed between the listing and the stat: absent from this snapshot
        return
    found[path] = (stat.st_mtime_ns, stat.st_size)


def changes(before: Snapshot, after: Snapshot) -> list[Path]:
    """Files added, removed or modified between two snapshots, sorted."""
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


class SourceWatcher:
    """The application's sources and their last snapshot; ``poll()`` says what changed."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self._last = snapshot(roots)

    def poll(self) -> list[Path]:
        """Files changed since the previous poll (or since construction)."""
        current = snapshot(self.roots)
        changed = changes(self._last, current)
        self._last = current
        return changed

    def __len__(self) -> int:
        return len(self._last)
