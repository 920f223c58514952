"""Finding the application to serve.

Owns resolving ``package.module:attribute`` to a ``SocketApp``, and, without
one, building an app from every handler library installed under the
``socketspec.handlers`` entry-point group (an entry point names a ``SocketApp``,
merged by namespace, or a callable ``register(app)``). Failures raise
``AppLoadError`` with a one-line message.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points

from socketspec.app import SocketApp

ENTRY_POINT_GROUP = "socketspec.handlers"


class AppLoadError(Exception):
    """The application could not be found or built; the message is one line."""


def load_app(spec: str | None) -> SocketApp:
    if spec:
        return load_target(spec)
    return load_entry_points()


def load_target(spec: str) -> SocketApp:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(f"APP must look like package.module:attribute, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if isinstance(target, SocketApp):
        return target
    if callable(target):  # a factory
        built = target()
        if isinstance(built, SocketApp):
            return built
    raise AppLoadError(f"{spec} is a {type(target).__name__}, not a SocketApp")


def load_entry_points() -> SocketApp:
    found = list(entry_points(group=ENTRY_POINT_GROUP))
    if not found:
        raise AppLoadError(
            f"no APP given and no handler library installed under the {ENTRY_POINT_GROUP!r} "
            "entry-point group"
        )
    if len(found) == 1:
        # A single library's own app keeps its settings (auth, origins, limits).
        only = _load_entry(found[0])
        if isinstance(only, SocketApp):
            return only
    app = SocketApp()
    for entry in sorted(found, key=lambda e: e.name):
        target = _load_entry(entry)
        if isinstance(target, SocketApp):
            app.include(target)
        elif callable(target):
            target(app)
        else:
            raise AppLoadError(
                f"entry point {entry.name!r} names a {type(target).__name__}, "
                "not a SocketApp or a register(app) callable"
            )
    return app


def _load_entry(entry: EntryPoint) -> object:
    try:
        return entry.load()
    except Exception as exc:
        raise AppLoadError(
            f"cannot load entry point {entry.name!r} ({entry.value}): {type(exc).__name__}: {exc}"
        ) from exc
