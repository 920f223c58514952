"""The OpenAPI 3.1 document of the publish API: every route, its schemas resolvable."""

from __future__ import annotations

from typing import Any

import orjson

from socketspec.push import openapi


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def test_document_is_openapi_31_with_every_route() -> None:
    document = openapi.document(4096)
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {
        "/api/publish",
        "/api/batch",
        "/api/presence",
        "/api/disconnect",
        "/api/rooms/{room}/members",
        "/api/openapi.json",
    }
    schemas = document["components"]["schemas"]
    for ref in refs(document):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
    assert "4096 bytes" in schemas["Message"]["description"]
    publish = document["paths"]["/api/publish"]["post"]
    assert {"200", "400", "401", "413", "422", "503"} <= set(publish["responses"])
    assert document["paths"]["/api/openapi.json"]["get"]["security"] == []
    orjson.dumps(document)  # JSON all the way down
