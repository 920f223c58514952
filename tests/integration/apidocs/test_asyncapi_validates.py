"""The AsyncAPI documents pass the official parser (``@asyncapi/parser``, run by node).

``make node-deps`` installs the parser into ``.cache/node/node_modules``;
``validate_asyncapi.mjs`` beside this file parses one document and prints the
diagnostics as JSON. A diagnostic of severity 0 is an error: there must be none.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from socketspec import APIKeyAuth, Broadcasts, Connection, Emits, SocketApp
from socketspec.apidocs.asyncapi import asyncapi_document

ROOT = Path(__file__).resolve().parents[3]
NODE_MODULES = ROOT / ".cache" / "node" / "node_modules"
SCRIPT = Path(__file__).with_name("validate_asyncapi.mjs")
SEVERITY_ERROR = 0
SECRET = "asyncapi-validation-secret-0123456789abcdef"


def _parser_ready() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: install Node.js, then run `make node-deps`")
    if not (NODE_MODULES / "@asyncapi" / "parser" / "package.json").is_file():
        pytest.fail(f"@asyncapi/parser is not installed in {NODE_MODULES}: run `make node-deps`")
    return node


def validate(document: dict[str, Any], tmp_path: Path, name: str) -> list[dict[str, Any]]:
    """The parser's diagnostics for ``document``."""
    node = _parser_ready()
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    done = subprocess.run(
        [node, str(SCRIPT), str(path), str(NODE_MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"the validator failed:\n{done.stderr}"
    diagnostics: list[dict[str, Any]] = json.loads(done.stdout)
    return diagnostics


def assert_no_errors(diagnostics: list[dict[str, Any]]) -> None:
    errors = [d for d in diagnostics if d["severity"] == SEVERITY_ERROR]
    assert not errors, "the AsyncAPI parser reported errors:\n" + json.dumps(diagnostics, indent=2)


def _load_chat() -> ModuleType:
    name = "socketspec_example_chat_for_asyncapi"
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "chat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chat() -> ModuleType:
    return _load_chat()


@pytest.mark.parametrize("secret", [None, SECRET], ids=["no-auth", "jwt"])
def test_the_chat_example_is_valid_asyncapi(
    chat: ModuleType, tmp_path: Path, secret: str | None
) -> None:
    document = asyncapi_document(chat.create_app(secret))
    assert ("security" in document["servers"]["websocket"]) == (secret is not None)
    diagnostics = validate(document, tmp_path, "chat")
    assert_no_errors(diagnostics)
    # Only advice remains (the parser recommends the newest AsyncAPI version): no warnings.
    warnings = [d for d in diagnostics if d["severity"] == 1]
    assert not warnings, json.dumps(warnings, indent=2)


# A second app exercising what the chat example does not: namespaces, deprecated events,
# API keys, discriminated unions, models sharing a name, odd event names, untyped handlers.


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool = True


class Adopt(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    note: str | None = None


class Status(BaseModel):
    state: Literal["open", "closed"]


def _another_status() -> type[BaseModel]:
    class Status(BaseModel):
        code: int

    return Status


def kitchen_sink() -> SocketApp:
    app = SocketApp(auth=APIKeyAuth({"k": "bot"}))

    @app.on(
        "adopt",
        namespace="/pets",
        tags=["pets"],
        emits=[Emits("adopted", model=Status)],
        broadcasts=[Broadcasts("news", room="pets:{kind}", model=_another_status())],
        ordered=True,
    )
    async def adopt(conn: Connection, payload: Adopt) -> Status:
        return Status(state="open")

    @app.on("pets:old", namespace="/pets", deprecated=True, broadcasts=[Broadcasts("news")])
    async def old(conn: Connection, payload: dict[str, Any]) -> None: ...

    @app.on("list", namespace="/pets")
    async def untyped(conn, payload):  # type: ignore[no-untyped-def]
        return []

    @app.on("root")
    async def root(conn: Connection) -> list[int]:
        return [1]

    return app


def test_namespaces_api_keys_and_unusual_payloads_are_valid_asyncapi(tmp_path: Path) -> None:
    assert_no_errors(validate(asyncapi_document(kitchen_sink()), tmp_path, "kitchen-sink"))


def test_the_validator_does_report_errors(chat: ModuleType, tmp_path: Path) -> None:
    """The harness is not vacuous: a broken document is refused."""
    document = asyncapi_document(chat.create_app(None))
    operation = document["operations"]["receive.join_room"]
    operation["deprecated"] = True  # no such field on an AsyncAPI 3.0 operation
    operation["messages"] = [{"$ref": "#/channels/nowhere/messages/join_room"}]
    codes = {
        d["code"] for d in validate(document, tmp_path, "broken") if d["severity"] == SEVERITY_ERROR
    }
    assert "asyncapi3-operation-messages-from-referred-channel" in codes
    assert "asyncapi-document-resolved" in codes
