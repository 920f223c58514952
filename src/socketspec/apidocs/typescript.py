"""The TypeScript module of an app: its payload models as types, and its events as type maps.

Owns the translation of the app's JSON Schemas (pydantic's, every model described in one
pass) into TypeScript declarations, and the shape of the generated module: an ``interface``
(or a ``type`` for enums and unions) per model, then per namespace a ``ClientEvents`` map
(event -> ``{payload, ack}``), a ``ServerEvents`` map (emitted or broadcast event ->
payload), and a ``Namespaces`` map naming both per namespace. The browser client
(clients/js) takes a namespace's two maps as its type arguments, ``connect<ClientEvents,
ServerEvents>(url)``, which each ``ClientEvents`` comment spells out for its namespace.
The maps are ``type`` aliases, not interfaces, so that they satisfy the client's
``C extends Record<string, {payload: unknown; ack: unknown}>`` constraint.
Does not own what an app's events are (the registry) nor writing files (the CLI); pure.

An event whose handler returns nothing has ``ack: never``: the server sends no ``__ack__``
for it, so awaiting one can only time out (the typed client's ``call`` refuses it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterable
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from socketspec import __version__
from socketspec.apidocs.asyncapi import (
    _acks_nothing,
    _outbound_events,
    _return_annotation,
    _unknown,
)
from socketspec.app import SocketApp
from socketspec.registry import EventDefinition

Schema = dict[str, Any]
DEFS_REF = "#/$defs/{model}"
UNKNOWN = "unknown"
ANY_OBJECT = "Record<string, unknown>"
DEFAULT_NAMESPACE = "/"

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_$]+")
# Names the module itself declares; a model of the same name gets a suffix.
_MAP_SUFFIXES = ("ClientEvents", "ServerEvents")
_RESERVED_NAMES = frozenset({"Namespaces", "ClientEvents", "ServerEvents"})
_PRIMITIVES = {
    "string": "string",
    "integer": "number",
    "number": "number",
    "boolean": "boolean",
    "null": "null",
}


class TypeScriptError(ValueError):
    """A schema this generator cannot express (a ``$ref`` outside the module's definitions)."""


def type_name(preferred: str) -> str:
    """A TypeScript identifier from a schema name (``Page[Item]`` -> ``Page_Item``)."""
    name = _NOT_IDENTIFIER.sub("_", preferred).strip("_") or "Model"
    return f"_{name}" if name[0].isdigit() else name


def property_key(name: str) -> str:
    return name if _IDENTIFIER.match(name) else json.dumps(name)


def doc_comment(text: str | None, indent: str = "") -> list[str]:
    """A JSDoc block for ``text`` (``*/`` inside it cannot end the comment)."""
    if not text or not text.strip():
        return []
    lines = text.strip().replace("*/", "*\\/").splitlines()
    if len(lines) == 1:
        return [f"{indent}/** {lines[0].strip()} */"]
    return [
        f"{indent}/**",
        *(f"{indent} * {line.rstrip()}".rstrip() for line in lines),
        f"{indent} */",
    ]


def _union(members: Iterable[str]) -> str:
    unique = list(dict.fromkeys(members))
    if not unique:
        return "never"
    if UNKNOWN in unique:
        return UNKNOWN
    return " | ".join(unique)


def _element(expression: str) -> str:
    """``expression`` as an array's element type (a union or function needs parentheses)."""
    return f"({expression})" if (" | " in expression or " & " in expression) else expression


class Renderer:
    """JSON Schema -> TypeScript type expressions; ``$ref`` names come from ``names``."""

    def __init__(self, names: dict[str, str], indent: str = "  ") -> None:
        self.names = names
        self.indent = indent

    def ref(self, ref: str) -> str:
        key = ref.rsplit("/", 1)[-1]
        if not ref.startswith("#/$defs/") or key not in self.names:
            raise TypeScriptError(f"cannot resolve the schema reference {ref!r}")
        return self.names[key]

    def render(self, schema: Any, depth: int = 0) -> str:
        if schema is True or schema == {}:
            return UNKNOWN
        if schema is False:
            return "never"
        if not isinstance(schema, dict):
            return UNKNOWN
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        if "const" in schema:
            return json.dumps(schema["const"], ensure_ascii=False)
        if "enum" in schema:
            return _union(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                return _union(self.render(s, depth) for s in schema[keyword])
        if "allOf" in schema:
            parts = list(dict.fromkeys(self.render(s, depth) for s in schema["allOf"]))
            return " & ".join(_element(p) for p in parts) if parts else UNKNOWN
        kind = schema.get("type")
        if isinstance(kind, list):
            return _union(self.render({**schema, "type": k}, depth) for k in kind)
        if kind == "array":
            return self.array(schema, depth)
        if kind == "object" or "properties" in schema:
            return self.object(schema, depth)
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        return UNKNOWN

    def array(self, schema: Schema, depth: int) -> str:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            members = [self.render(s, depth) for s in prefix]
            rest = schema.get("items")
            if rest not in (None, False):
                members.append(f"...{_element(self.render(rest, depth))}[]")
            return f"[{', '.join(members)}]"
        items = schema.get("items")
        return f"{_element(self.render(items, depth) if items is not None else UNKNOWN)}[]"

    def object(self, schema: Schema, depth: int) -> str:
        properties: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        if not properties:
            if extra is None or extra is True:
                return ANY_OBJECT
            return f"Record<string, {self.render(extra, depth)}>"
        return "{\n" + "\n".join(self.members(schema, depth + 1)) + "\n" + self.indent * depth + "}"

    def members(self, schema: Schema, depth: int) -> list[str]:
        """The lines of an object's body: one per property, then an index signature when
        the object allows other keys."""
        pad = self.indent * depth
        required = set(schema.get("required") or ())
        lines: list[str] = []
        for name, sub in (schema.get("properties") or {}).items():
            if isinstance(sub, dict):
                lines += doc_comment(sub.get("description"), pad)
            optional = "" if name in required else "?"
            lines.append(f"{pad}{property_key(name)}{optional}: {self.render(sub, depth)};")
        extra = schema.get("additionalProperties")
        if extra is not None and extra is not False:
            lines.append(f"{pad}[key: string]: {UNKNOWN};")
        return lines

    def declaration(self, name: str, schema: Schema) -> list[str]:
        """``export interface`` for an object with properties, ``export type`` otherwise."""
        lines = doc_comment(schema.get("description"))
        is_interface = (
            schema.get("type") == "object"
            and bool(schema.get("properties"))
            and not any(k in schema for k in ("anyOf", "oneOf", "allOf"))
        )
        if is_interface:
            lines.append(f"export interface {name} {{")
            lines += self.members(schema, 1)
            lines.append("}")
        else:
            lines.append(f"export type {name} = {self.render(schema)};")
        return lines


def namespace_prefix(namespace: str) -> str:
    """``/`` -> ``""``; ``/chat-room`` -> ``ChatRoom`` (the prefix of that namespace's maps)."""
    if namespace == DEFAULT_NAMESPACE:
        return ""
    words = [w for w in _NOT_IDENTIFIER.split(namespace) if w]
    prefix = "".join(w[:1].upper() + w[1:] for w in words) or "Namespace"
    return f"_{prefix}" if prefix[0].isdigit() else prefix


class _Types:
    """Every type of the app, described by pydantic in one pass (shared models once)."""

    def __init__(self) -> None:
        self._inputs: list[tuple[Hashable, JsonSchemaMode, TypeAdapter[Any]]] = []
        self.schemas: dict[Hashable, Schema] = {}
        self.definitions: dict[str, Schema] = {}

    def add(self, key: Hashable, tp: Any, mode: JsonSchemaMode) -> None:
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(tp)
            adapter.json_schema(mode=mode)
        except Exception:
            return  # pydantic cannot describe it: the type stays unknown
        self._inputs.append((key, mode, adapter))

    def build(self) -> None:
        if not self._inputs:
            return
        mapping, defs = TypeAdapter.json_schemas(self._inputs, ref_template=DEFS_REF)
        self.schemas = {key: schema for (key, _mode), schema in mapping.items()}
        self.definitions = dict(defs.get("$defs", {}))


def _names(definitions: Iterable[str], namespaces: Iterable[str]) -> dict[str, str]:
    taken = {f"{namespace_prefix(n)}{s}" for n in namespaces for s in _MAP_SUFFIXES}
    taken |= _RESERVED_NAMES
    names: dict[str, str] = {}
    for key in definitions:
        base = type_name(key)
        name, n = base, 2
        while name in taken:
            name, n = f"{base}{n}", n + 1
        taken.add(name)
        names[key] = name
    return names


def connect_line(namespace: str) -> str:
    """How the browser client is typed by ``namespace``'s maps (one line, for the comments)."""
    prefix = namespace_prefix(namespace)
    if namespace == DEFAULT_NAMESPACE:
        options = ""
    else:
        options = f", {{ namespace: {json.dumps(namespace)} }}"
    return f"connect<{prefix}ClientEvents, {prefix}ServerEvents>(url{options})"


def typescript_module(app: SocketApp) -> str:
    """The ``.ts`` module describing ``app`` (``export-schema --format typescript``)."""
    definitions = sorted(app.event_definitions(), key=lambda d: (d.namespace, d.name))
    namespaces = sorted(app.registry.namespaces() | {d.namespace for d in definitions})
    by_namespace: dict[str, list[EventDefinition]] = {n: [] for n in namespaces}
    for d in definitions:
        by_namespace[d.namespace].append(d)
    outbound = {n: _outbound_events(ds) for n, ds in by_namespace.items()}

    types = _Types()
    acks: dict[tuple[str, str], Any] = {}
    for d in definitions:
        if d.payload_param is not None and d.validates:
            types.add(("payload", d.namespace, d.name), d.payload_type, "validation")
        annotation = _return_annotation(d.handler)
        acks[(d.namespace, d.name)] = annotation
        if not _acks_nothing(annotation) and not _unknown(annotation):
            types.add(("ack", d.namespace, d.name), annotation, "serialization")
    for events in outbound.values():
        for out in events:
            for model in out.models:
                if model is not None:
                    types.add(("model", model), model, "serialization")
    types.build()

    names = _names(types.definitions, namespaces)
    renderer = Renderer(names)

    def typed(key: Hashable, fallback: str) -> str:
        schema = types.schemas.get(key)
        return fallback if schema is None else renderer.render(schema, 2)

    lines = [
        f"// The events and payload types of a socketspec {__version__} app.",
        "// Generated by `socketspec export-schema --format typescript`: do not edit.",
        "",
    ]
    for key in sorted(types.definitions, key=lambda k: names[k]):
        lines += renderer.declaration(names[key], types.definitions[key])
        lines.append("")

    for namespace in namespaces:
        prefix = namespace_prefix(namespace)
        lines += doc_comment(
            f"What a client sends on the namespace {namespace}: "
            "each event's payload and the ack its call() resolves with.\n"
            f"With socketspec-client: {connect_line(namespace)}"
        )
        lines.append(f"export type {prefix}ClientEvents = {{")
        for d in by_namespace[namespace]:
            annotation = acks[(d.namespace, d.name)]
            if _acks_nothing(annotation):
                ack = "never"
            elif _unknown(annotation):
                ack = UNKNOWN
            else:
                ack = typed(("ack", d.namespace, d.name), UNKNOWN)
            if d.payload_param is not None and d.validates:
                payload = typed(("payload", d.namespace, d.name), ANY_OBJECT)
            else:
                payload = ANY_OBJECT
            lines += doc_comment(d.description, "  ")
            lines.append(f"  {property_key(d.name)}: {{ payload: {payload}; ack: {ack} }};")
        lines.append("};")
        lines.append("")
        lines += doc_comment(
            f"What the server sends on the namespace {namespace}: each "
            "emitted or broadcast event's payload."
        )
        lines.append(f"export type {prefix}ServerEvents = {{")
        for out in outbound[namespace]:
            models = out.models
            if any(m is None for m in models):
                payload = ANY_OBJECT
            else:
                payload = _union(typed(("model", m), ANY_OBJECT) for m in models)
            lines.append(f"  {property_key(out.event)}: {payload};")
        lines.append("};")
        lines.append("")

    lines.append("/** Each namespace's maps: what its clients send, what its server sends. */")
    lines.append("export type Namespaces = {")
    for namespace in namespaces:
        prefix = namespace_prefix(namespace)
        lines.append(
            f"  {json.dumps(namespace)}: {{ client: {prefix}ClientEvents; "
            f"server: {prefix}ServerEvents }};"
        )
    lines.append("};")
    return "\n".join(lines) + "\n"
