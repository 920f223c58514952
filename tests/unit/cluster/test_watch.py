"""--reload's source snapshots: which files belong to the app, and what changed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from socketspec.cluster.watch import SourceWatcher, changes, snapshot, source_roots


def touch(path: Path, text: str, stamp: float) -> None:
    path.write_text(text)
    os.utime(path, (stamp, stamp))


def test_a_package_is_watched_whole_and_only_its_python_files(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    touch(package / "__init__.py", "", 1000)
    touch(package / "sub" / "handlers.py", "x = 1\n", 1000)
    touch(package / "notes.txt", "", 1000)
    touch(package / "__pycache__" / "cached.py", "", 1000)
    assert set(snapshot([package])) == {package / "__init__.py", package / "sub" / "handlers.py"}


def test_changes_are_additions_removals_and_edits(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    touch(a, "1", 1000)
    touch(b, "1", 1000)
    before = snapshot([tmp_path])
    touch(a, "22", 1000)  # same time, other size
    b.unlink()
    touch(c, "1", 1000)
    assert changes(before, snapshot([tmp_path])) == [a, b, c]
    assert changes(before, before) == []


def test_the_watcher_reports_each_change_once(tmp_path: Path) -> None:
    handler = tmp_path / "handler.py"
    touch(handler, "v = 1\n", 1000)
    watcher = SourceWatcher([tmp_path])
    assert len(watcher) == 1
    assert watcher.poll() == []
    touch(handler, "v = 2\n", 1005)  # same size, later time
    assert watcher.poll() == [handler]
    assert watcher.poll() == []


def test_roots_of_an_app_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mypkg").mkdir()
    touch(tmp_path / "mypkg" / "__init__.py", "", 1000)
    touch(tmp_path / "mypkg" / "main.py", "", 1000)
    touch(tmp_path / "single.py", "", 1000)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("mypkg", "single"):
        sys.modules.pop(name, None)
    assert source_roots("mypkg.main:app") == [tmp_path / "mypkg"]
    assert source_roots("single:app") == [tmp_path / "single.py"]
    assert source_roots("not_a_module_anywhere:app") == []
