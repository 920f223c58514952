"""Pushing to clients from outside a handler: the HTTP publish API and ``Emitter``.

``messages`` builds a pushed message (validated against the app's declared
models, measured, encoded once); ``api`` and ``openapi`` are the sans-I/O
halves of ``/api/...``; ``service`` serves it on a shard; ``emitter`` is the
client any Python process uses, over Redis or over the HTTP API.
"""
