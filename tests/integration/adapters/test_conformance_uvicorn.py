"""Autobahn sections 1 to 10 (kosoku) against the ASGI adapter's echo entry on uvicorn, as a
real process, under each of uvicorn's WebSocket implementations.

Frames, UTF-8 checks and closes are uvicorn's there, not the adapter's; the cases its
layers do not pass strictly are listed here with why (docs/conformance.md, "Under the ASGI
adapter on uvicorn"). Anything else that is not OK fails the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgikit import UvicornProcess
from autobahnkit import ACCEPTED, run_sections

# A valid message and a bad frame in one read: the server fails the connection before the
# application's echo of the message is sent, or not, depending on timing (NON-STRICT or OK).
EARLY_FAIL = frozenset(
    {"3.2", "3.3", "3.4", "4.1.3", "4.1.4", "4.1.5", "4.2.3", "4.2.4", "4.2.5", "5.15"}
)
# What uvicorn's WebSocket implementation itself does not pass strictly.
OWN_CASES: dict[str, dict[str, frozenset[str]]] = {
    # The websockets library checks UTF-8 once a message is complete, not per frame.
    "websockets-sansio": {
        "NON-STRICT": EARLY_FAIL | {"6.4.1", "6.4.2", "6.4.3", "6.4.4"},
        # It answers a Close between fragments of a message with 1002, not 1000.
        "FAILED": frozenset({"7.1.5"}),
    },
    "wsproto": {"NON-STRICT": EARLY_FAIL, "FAILED": frozenset()},
}


def explained(impl: str, case_id: str, case: dict[str, Any]) -> bool:
    behavior, closing = case.get("behavior"), case.get("behaviorClose")
    if behavior in ACCEPTED and closing in ACCEPTED:
        return True
    own = OWN_CASES[impl]
    if behavior == "NON-STRICT" and closing in ACCEPTED:
        return case_id in own["NON-STRICT"]
    return behavior == "FAILED" and case_id in own["FAILED"]


@pytest.mark.parametrize("impl", sorted(OWN_CASES))
async def test_autobahn_sections_1_to_10_on_uvicorn(
    impl: str, tmp_path: Path, spawn_uvicorn: Callable[..., UvicornProcess]
) -> None:
    server = spawn_uvicorn(
        ["--factory", "socketspec.adapters.asgi:echo_app", "--ws", impl, "--no-access-log"],
        tmp_path,
    )
    port = await asyncio.to_thread(server.wait_ready)
    outdir = tmp_path / "reports"
    cases = await asyncio.to_thread(run_sections, f"127.0.0.1:{port}", outdir)
    offending = [
        f"{case_id}: {case.get('behavior')} (close {case.get('behaviorClose')}, "
        f"remote close code {case.get('remoteCloseCode')})"
        for case_id, case in sorted(cases.items())
        if not explained(impl, case_id, case)
    ]
    assert not offending, f"{len(offending)} of {len(cases)} cases:\n" + "\n".join(offending)
