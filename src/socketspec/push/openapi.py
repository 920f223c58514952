"""The OpenAPI 3.1 document of the HTTP publish API, served at ``/api/openapi.json``.

Owns the description of every ``/api/`` route, its request and answer schemas
and its error answers, built as plain data (pure). Does not own the routes'
behaviour (``push.api`` and ``push.service``).
"""

from __future__ import annotations

from typing import Any

from socketspec.push.api import MAX_BATCH, MAX_PRESENCE

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Malformed request: the reason says what",
        401: "No valid API key",
        411: "No Content-Length",
        413: "A message (or the body) is over the limit; nothing was sent",
        422: "A payload does not match the model the app declares for its event",
        503: "Redis is configured and unreachable, or the room's home shard is down",
    }
    return {
        str(status): {
            "description": reasons[status],
            "content": {"application/json": {"schema": _ERROR}},
        }
        for status in statuses
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _post(summary: str, request: str, answer: str, *, operation: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "security": [{"bearer": []}, {"apiKey": []}],
            "requestBody": {"required": True, **_json({"$ref": f"#/components/schemas/{request}"})},
            "responses": {
                "200": {"description": "Done", **_json({"$ref": f"#/components/schemas/{answer}"})},
                **_errors(400, 401, 411, 413, 422, 503),
            },
        }
    }


def document(max_payload_size: int) -> dict[str, Any]:
    """The whole document; ``max_payload_size`` is the app's limit of one message."""
    message_limit = (
        f"The serialised message (event and payload) must fit the app's max_payload_size, "
        f"{max_payload_size} bytes; a larger one is refused with 413 before anything is sent."
    )
    schemas: dict[str, Any] = {
        "Message": {
            "type": "object",
            "description": "One message to push. Name exactly one target: room, user, "
            "connection, or all. " + message_limit,
            "properties": {
                "room": {"type": "string", "description": "Every member of this room"},
                "user": {"type": "string", "description": "Every connection of this user id"},
                "connection": {"type": "string", "description": "One connection id"},
                "all": {"const": True, "description": "Every connection (broadcast_except)"},
                "namespace": {"type": "string", "description": "With all: only this namespace"},
                "exclude": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Connection ids that do not receive it",
                },
                "event": {"type": "string", "description": "Not a system event (__x__)"},
                "payload": {"type": "object", "default": {}},
            },
            "required": ["event"],
            "oneOf": [{"required": [name]} for name in ("room", "user", "connection", "all")],
        },
        "Delivered": {
            "type": "object",
            "properties": {
                "delivered": {
                    "type": "integer",
                    "description": "Connections it was fanned out to, counted as "
                    "socket.rooms.broadcast counts (0 for an unknown room; across nodes a "
                    "lower bound); for a connection 1 or 0",
                }
            },
            "required": ["delivered"],
        },
        "Batch": {
            "type": "object",
            "properties": {
                "messages": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Message"},
                    "minItems": 1,
                    "maxItems": MAX_BATCH,
                }
            },
            "required": ["messages"],
        },
        "BatchResults": {
            "type": "object",
            "properties": {
                "results": {
                    "type": "array",
                    "description": "One per message, in order: delivered, or an error",
                    "items": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/Delivered"},
                            {
                                "type": "object",
                                "properties": {
                                    "error": {"type": "string"},
                                    "reason": {"type": "string"},
                                },
                                "required": ["error", "reason"],
                            },
                        ]
                    },
                }
            },
            "required": ["results"],
        },
        "Presence": {
            "type": "object",
            "properties": {
                "rooms": {"type": "array", "items": {"type": "string"}},
                "users": {"type": "array", "items": {"type": "string"}},
            },
            "description": f"At most {MAX_PRESENCE} rooms and users in all",
        },
        "PresenceCounts": {
            "type": "object",
            "properties": {
                "rooms": {"type": "object", "additionalProperties": {"type": "integer"}},
                "users": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
            "required": ["rooms", "users"],
        },
        "Disconnect": {
            "type": "object",
            "properties": {
                "connection": {"type": "string"},
                "user": {"type": "string"},
                "reason": {"type": "string", "default": "server_close"},
            },
            "oneOf": [{"required": ["connection"]}, {"required": ["user"]}],
        },
        "Disconnected": {
            "type": "object",
            "properties": {"disconnected": {"type": "integer"}},
            "required": ["disconnected"],
        },
        "Member": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "user_id": {"type": ["string", "null"]},
                "namespace": {"type": "string"},
                "shard": {"type": "integer"},
                "node": {"type": "string"},
            },
            "required": ["id", "user_id", "namespace"],
        },
        "Members": {
            "type": "object",
            "properties": {
                "room": {"type": "string"},
                "count": {"type": "integer"},
                "members": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
            },
            "required": ["room", "count", "members"],
        },
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "reason": {"type": "string"},
                "details": {},
            },
            "required": ["error", "reason"],
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "socketspec publish API",
            "version": "1",
            "description": "Push to rooms, users and connections of a running socketspec-cluster "
            "from any process. Enabled by --api-key; every route but this document wants "
            "'Authorization: Bearer KEY' or 'X-API-Key: KEY'.",
        },
        "paths": {
            "/api/publish": _post(
                "Push one message to a room, a user, a connection or everyone",
                "Message",
                "Delivered",
                operation="publish",
            ),
            "/api/batch": _post(
                "Push several messages in one request, in order, each with its own result",
                "Batch",
                "BatchResults",
                operation="batch",
            ),
            "/api/presence": _post(
                "Count the members of rooms and the connections of users",
                "Presence",
                "PresenceCounts",
                operation="presence",
            ),
            "/api/disconnect": _post(
                "Close one connection, or every connection of a user",
                "Disconnect",
                "Disconnected",
                operation="disconnect",
            ),
            "/api/rooms/{room}/members": {
                "get": {
                    "operationId": "members",
                    "summary": "The members of a room (percent-encode the name)",
                    "security": [{"bearer": []}, {"apiKey": []}],
                    "parameters": [
                        {
                            "name": "room",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The members, on every shard and node",
                            **_json({"$ref": "#/components/schemas/Members"}),
                        },
                        **_errors(400, 401, 503),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document (no key needed)",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
