"""A minimal PEP 517 build backend for this test package: a pure-Python wheel made from
``[project]`` of pyproject.toml (name, version, description, entry points) and the package
directory. It needs nothing but the standard library, so ``pip install --no-build-isolation``
works without setuptools or wheel in the environment."""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
PACKAGE = "socketspec_test_handlers"


def _project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]


def _names() -> tuple[str, str]:
    project = _project()
    return re.sub(r"[-_.]+", "_", project["name"]).lower(), project["version"]


def _metadata_files() -> dict[str, str]:
    project = _project()
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {project['name']}\n"
        f"Version: {project['version']}\n"
        f"Summary: {project.get('description', '')}\n"
        f"Requires-Python: {project.get('requires-python', '>=3')}\n"
    )
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: handlers_backend\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
    entry_points = ""
    for group, entries in project.get("entry-points", {}).items():
        entry_points += f"[{group}]\n"
        entry_points += "".join(f"{name} = {value}\n" for name, value in entries.items())
        entry_points += "\n"
    return {"METADATA": metadata, "WHEEL": wheel, "entry_points.txt": entry_points}


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: Any = None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Any = None) -> str:
    name, version = _names()
    dist_info = Path(metadata_directory) / f"{name}-{version}.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    for filename, text in _metadata_files().items():
        (dist_info / filename).write_text(text)
    return dist_info.name


def build_wheel(
    wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None
) -> str:
    name, version = _names()
    wheel_name = f"{name}-{version}-py3-none-any.whl"
    dist_info = f"{name}-{version}.dist-info"
    record = ""
    with zipfile.ZipFile(Path(wheel_directory) / wheel_name, "w", zipfile.ZIP_DEFLATED) as wheel:
        for source in sorted((ROOT / PACKAGE).rglob("*.py")):
            arcname = source.relative_to(ROOT).as_posix()
            data = source.read_bytes()
            wheel.writestr(arcname, data)
            record += _record_line(arcname, data)
        for filename, text in _metadata_files().items():
            arcname = f"{dist_info}/{filename}"
            wheel.writestr(arcname, text)
            record += _record_line(arcname, text.encode())
        record += f"{dist_info}/RECORD,,\n"
        wheel.writestr(f"{dist_info}/RECORD", record)
    return wheel_name


def build_sdist(sdist_directory: str, config_settings: Any = None) -> str:
    import tarfile

    name, version = _names()
    sdist_name = f"{name}-{version}.tar.gz"
    with tarfile.open(Path(sdist_directory) / sdist_name, "w:gz") as sdist:
        for path in ("pyproject.toml", "handlers_backend.py", PACKAGE):
            sdist.add(ROOT / path, arcname=f"{name}-{version}/{path}")
    return sdist_name
