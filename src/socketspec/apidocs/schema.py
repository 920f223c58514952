"""The SocketSpec JSON document of an app: its events with their payload, emits and broadcasts.

Owns the reference's shape (``version``, ``events``) with the superset fields the
docs page shows (namespace, tags, ordered, deprecated, the system events and the
error envelope). Built from the registry; pure (no I/O).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from socketspec import __version__
from socketspec.app import SocketApp
from socketspec.errors import CLIENT_SYSTEM_EVENTS, ERROR_CODES, RESERVED_EVENTS
from socketspec.registry import Broadcasts, Emits, EventDefinition

# Kept under its earlier name; the table is ``errors.SystemEvent``.
SYSTEM_EVENTS_CLIENT_SENDS = CLIENT_SYSTEM_EVENTS


def _model_schema(model: type[BaseModel] | None) -> dict[str, Any] | None:
    return model.model_json_schema() if model is not None else None


def _emits(item: Emits) -> dict[str, Any]:
    return {
        "event": item.event,
        "description": item.description,
        "payload": _model_schema(item.model),
    }


def _broadcasts(item: Broadcasts) -> dict[str, Any]:
    return {
        "event": item.event,
        "room": item.room,
        "description": item.description,
        "payload": _model_schema(item.model),
    }


def event_document(definition: EventDefinition) -> dict[str, Any]:
    return {
        "name": definition.name,
        "namespace": definition.namespace,
        "description": definition.description,
        "tags": list(definition.tags),
        "payload": definition.payload_schema(),
        "emits": [_emits(e) for e in definition.emits],
        "broadcasts": [_broadcasts(b) for b in definition.broadcasts],
        "ordered": definition.ordered,
        "deprecated": definition.deprecated,
    }


def socketspec_schema(app: SocketApp) -> dict[str, Any]:
    """The ``/socket-docs/schema`` document."""
    events = sorted(app.event_definitions(), key=lambda d: (d.namespace, d.name))
    return {
        "version": __version__,
        "namespaces": sorted(app.registry.namespaces()),
        "events": [event_document(d) for d in events],
        "system_events": sorted(RESERVED_EVENTS),
        "client_system_events": list(SYSTEM_EVENTS_CLIENT_SENDS),
        "error_codes": sorted(ERROR_CODES),
        "auth": type(app.auth).__name__ if app.auth is not None else None,
    }
