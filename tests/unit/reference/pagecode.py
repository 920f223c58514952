"""Run a documentation page's Python blocks the way a reader uses them.

A reader pastes a page's blocks, top to bottom, into one module: later blocks
use the names earlier ones defined (``socket``, the models, ``pytest``). The
blocks run here in that order, in one namespace that stands for that module,
and each keeps its own name in tracebacks (``<tutorial-rooms.md block 3>``).
What the page presumes without showing (an app from an earlier page, a
handler it names but never writes) is given by the test, as a prelude.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def run_blocks(
    page: str, blocks: Mapping[int | str, str], namespace: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Execute ``blocks`` in order and return the namespace they filled. A block is keyed
    by its number on the page, or by a label for code the test supplies (a prelude)."""
    names: dict[str, Any] = (
        namespace if namespace is not None else {"__name__": f"page_{page.replace('-', '_')}"}
    )
    for key, code in blocks.items():
        where = f"<{page}.md block {key}>" if isinstance(key, int) else f"<{page} test: {key}>"
        # dont_inherit: the blocks run as written, not under this module's
        # ``from __future__ import annotations`` (pydantic needs real annotations).
        exec(compile(code, where, "exec", dont_inherit=True), names)
    return names


@contextmanager
def importable_as(module_name: str, **attributes: Any) -> Iterator[None]:
    """Make ``import <module_name>`` (dotted, e.g. ``myapp.main``) find ``attributes``
    while the block that imports it runs; sys.modules is as before afterwards."""
    parts = module_name.split(".")
    created: list[str] = []
    parent: types.ModuleType | None = None
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        if name in sys.modules:
            raise RuntimeError(f"{name} is already imported; pick another stand-in name")
        module = types.ModuleType(name)
        sys.modules[name] = module
        created.append(name)
        if parent is not None:
            setattr(parent, parts[depth - 1], module)
        parent = module
    assert parent is not None
    for key, value in attributes.items():
        setattr(parent, key, value)
    try:
        yield
    finally:
        for name in reversed(created):
            del sys.modules[name]
