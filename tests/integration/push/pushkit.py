"""Helpers for the push tests: a plain HTTP client for the publish API (what a REST route
or a service in another language would do), and clients placed on chosen shards."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from clusterkit import ClusterProcess

APPS = Path(__file__).resolve().parent / "apps"
PUSH_APP = "push_app:app"
KEY = "push-test-key"
ENV = {"PYTHONPATH": str(APPS)}


def launch(*extra: str) -> ClusterProcess:
    args = [PUSH_APP, "--workers", "2", "--port", "0", "--graceful-timeout", "2", *extra]
    cluster = ClusterProcess(args, cwd=APPS, env=ENV)
    try:
        cluster.wait_announced(60)
    except BaseException:
        cluster.kill()
        raise
    return cluster


def call_api(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One request to the API; the status and the decoded JSON answer."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode()


async def api(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    return await asyncio.to_thread(call_api, port, method, path, body, key, raw)
