"""The publish API's drain phases on one shard's ``PushService``: requests in flight are
counted, the drain refuses new ones, and past its timeout unsent messages are refused."""

from __future__ import annotations

from typing import cast

import orjson
import pytest

from socketspec import SocketApp
from socketspec.errors import IllegalTransitionError
from socketspec.push import api
from socketspec.push.service import CUT_REFUSAL, ApiPhase, ApiRequest, PushService


class Stalled:
    """A request in flight that answers (and so leaves the count) when cut."""

    def __init__(self, service: PushService) -> None:
        self.service = service
        self.cuts = 0

    def cut(self) -> None:
        self.cuts += 1
        self.service.release(cast(ApiRequest, self))


def service() -> PushService:
    return PushService(SocketApp(), ("key",), 10_000)


def batch(count: int) -> api.Command:
    messages = [{"room": "r", "event": "tick", "payload": {"n": n}} for n in range(count)]
    return api.parse("POST", "/api/batch", orjson.dumps({"messages": messages}), {}, 4096)


def test_requests_in_flight_are_counted_until_released() -> None:
    push = service()
    first, second = (cast(ApiRequest, Stalled(push)) for _ in range(2))
    assert push.admit(first) and push.admit(second)
    assert not push.idle.is_set()
    push.release(first)
    push.release(first)  # an answer after the client went away: counted once
    assert not push.idle.is_set()
    push.release(second)
    assert push.idle.is_set()


def test_the_drain_refuses_new_requests_and_moves_once() -> None:
    push = service()
    push.begin_drain()
    assert push.phase is ApiPhase.DRAINING
    assert not push.admit(cast(ApiRequest, Stalled(push)))
    assert push.idle.is_set()
    with pytest.raises(IllegalTransitionError, match="'draining' to 'draining'"):
        push.begin_drain()


async def test_cut_refuses_what_is_in_flight_and_waits_for_the_answers() -> None:
    push = service()
    stalled = Stalled(push)
    assert push.admit(cast(ApiRequest, stalled))
    push.begin_drain()
    await push.cut(1.0)
    assert push.phase is ApiPhase.CUT and stalled.cuts == 1 and push.idle.is_set()


async def test_cut_with_nothing_in_flight_is_a_no_op() -> None:
    push = service()
    push.begin_drain()
    await push.cut(1.0)
    assert push.phase is ApiPhase.DRAINING


async def test_a_batch_past_the_cut_refuses_every_message_not_sent() -> None:
    push = service()
    push.admit(cast(ApiRequest, Stalled(push)))
    push.begin_drain()
    await push.cut(0.01)
    status, document = await push.run(batch(3))
    assert status == 200
    assert document == {"results": [{"error": "unavailable", "reason": CUT_REFUSAL}] * 3}
    single = api.parse("POST", "/api/publish", b'{"room": "r", "event": "e"}', {}, 4096)
    with pytest.raises(api.ApiError) as refused:
        await push.run(single)
    assert refused.value.status == 503


async def test_a_batch_while_draining_is_sent_whole() -> None:
    push = service()
    push.begin_drain()
    status, document = await push.run(batch(2))
    assert (status, document) == (200, {"results": [{"delivered": 0}, {"delivered": 0}]})
