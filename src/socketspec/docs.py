"""The earlier name of ``socketspec.apidocs``, kept so that existing imports work.

``socketspec.docs``, ``socketspec.docs.asyncapi``, ``.routes`` and ``.schema``
are the very modules of ``socketspec.apidocs`` under their old names (the same
objects, not copies). New code imports ``socketspec.apidocs``.
"""

from __future__ import annotations

import sys

from socketspec.apidocs import asyncapi, routes, schema

__all__ = ["asyncapi", "routes", "schema"]

# Registered before anything asks for them, so that ``import socketspec.docs.asyncapi``
# finds the module here although this alias is a module, not a package.
for _module in (asyncapi, routes, schema):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
