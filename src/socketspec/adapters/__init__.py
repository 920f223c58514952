"""Serving a ``SocketApp`` inside someone else's server.

``socketspec.adapters.asgi`` is a plain ASGI application (uvicorn, hypercorn, granian,
Starlette); ``socketspec.adapters.fastapi`` mounts it on a FastAPI or Starlette app. Both
drive the application through the same entry points as the cluster's shards.
"""
