"""SessionConfig and the sans-I/O SessionClock, driven with a fake time."""

from __future__ import annotations

import dataclasses

import pytest

from socketspec.session import SessionAction, SessionClock, SessionConfig

A = SessionAction

# Everything off except what a test turns on.
QUIET = SessionConfig(
    max_duration=0,
    idle_timeout=0,
    heartbeat_interval=0,
    heartbeat_timeout=0,
    token_refresh_window=0,
)


def config(**changes: float) -> SessionConfig:
    return dataclasses.replace(QUIET, **changes)


# -- SessionConfig ------------------------------------------------------------------------------


def test_config_defaults() -> None:
    c = SessionConfig()
    assert c.max_duration == 7200
    assert c.idle_timeout == 300
    assert c.heartbeat_interval == 25
    assert c.heartbeat_timeout == 10
    assert c.token_refresh_window == 60


@pytest.mark.parametrize(
    "name",
    [
        "max_duration",
        "idle_timeout",
        "heartbeat_interval",
        "heartbeat_timeout",
        "token_refresh_window",
    ],
)
def test_config_rejects_negative(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SessionConfig(**{name: -1})


def test_config_accepts_zero() -> None:
    assert QUIET.max_duration == 0


# -- heartbeat ----------------------------------------------------------------------------------


def test_ping_at_heartbeat_interval() -> None:
    clock = SessionClock(config(heartbeat_interval=25, heartbeat_timeout=10), 100.0, None)
    assert clock.next_deadline() == 125.0
    assert clock.due(124.9) == []
    assert clock.due(125.0) == [A.PING]
    # no second ping while the first is unanswered
    assert clock.due(126.0) == []


def test_pong_clears_deadline_and_returns_rtt() -> None:
    clock = SessionClock(config(heartbeat_interval=25, heartbeat_timeout=10), 0.0, None)
    assert clock.due(25.0) == [A.PING]
    assert clock.next_deadline() == 35.0  # the pong deadline
    assert clock.on_pong(27.5) == pytest.approx(2.5)
    assert clock.next_deadline() == 50.0  # the next ping
    assert clock.due(40.0) == []  # past the old pong deadline: nothing, it was cleared
    assert clock.due(50.0) == [A.PING]


def test_quick_pong_does_not_hold_back_the_next_ping_when_timeout_is_long() -> None:
    clock = SessionClock(config(heartbeat_interval=5, heartbeat_timeout=60), 0.0, None)
    assert clock.due(5.0) == [A.PING]
    clock.on_pong(5.1)
    assert clock.next_deadline() == 10.0
    assert clock.due(10.0) == [A.PING]
    clock.on_pong(10.1)
    assert clock.due(15.0) == [A.PING]


def test_pong_without_ping_returns_none() -> None:
    clock = SessionClock(config(heartbeat_interval=25, heartbeat_timeout=10), 0.0, None)
    assert clock.on_pong(3.0) is None
    clock.due(25.0)
    assert clock.on_pong(26.0) == pytest.approx(1.0)
    assert clock.on_pong(27.0) is None  # already answered


def test_missed_pong_closes() -> None:
    clock = SessionClock(config(heartbeat_interval=25, heartbeat_timeout=10), 0.0, None)
    assert clock.due(25.0) == [A.PING]
    assert clock.due(34.9) == []
    assert clock.due(35.0) == [A.CLOSE_HEARTBEAT_TIMEOUT]
    assert clock.finished


def test_heartbeat_interval_zero_never_pings() -> None:
    clock = SessionClock(config(heartbeat_interval=0, heartbeat_timeout=10), 0.0, None)
    assert clock.next_deadline() is None
    assert clock.due(10_000.0) == []


def test_heartbeat_timeout_zero_pings_but_never_closes() -> None:
    clock = SessionClock(config(heartbeat_interval=5, heartbeat_timeout=0), 0.0, None)
    assert clock.due(5.0) == [A.PING]
    assert clock.next_deadline() == 10.0
    assert clock.due(10.0) == [A.PING]
    assert clock.due(1000.0) == [A.PING]
    assert not clock.finished


# -- idle ---------------------------------------------------------------------------------------


def test_idle_closes() -> None:
    clock = SessionClock(config(idle_timeout=300), 0.0, None)
    assert clock.next_deadline() == 300.0
    assert clock.due(299.0) == []
    assert clock.due(300.0) == [A.CLOSE_IDLE]
    assert clock.finished


def test_activity_resets_idle() -> None:
    clock = SessionClock(config(idle_timeout=300), 0.0, None)
    clock.on_activity(200.0)
    assert clock.next_deadline() == 500.0
    assert clock.due(300.0) == []
    assert clock.due(500.0) == [A.CLOSE_IDLE]


def test_pong_does_not_reset_idle() -> None:
    clock = SessionClock(
        config(idle_timeout=60, heartbeat_interval=25, heartbeat_timeout=10), 0.0, None
    )
    assert clock.due(25.0) == [A.PING]
    assert clock.on_pong(26.0) is not None
    assert clock.due(50.0) == [A.PING]
    assert clock.on_pong(51.0) is not None
    assert clock.due(60.0) == [A.CLOSE_IDLE]


def test_idle_zero_disabled() -> None:
    clock = SessionClock(config(idle_timeout=0), 0.0, None)
    assert clock.due(1e9) == []
    assert not clock.finished


# -- max duration -------------------------------------------------------------------------------


def test_max_duration_expires_even_with_activity() -> None:
    clock = SessionClock(config(max_duration=7200, idle_timeout=300), 10.0, None)
    for t in range(100, 7200, 100):
        clock.on_activity(float(t))
        assert clock.due(float(t)) == []
    assert clock.next_deadline() == 7210.0
    assert clock.due(7210.0) == [A.CLOSE_SESSION_EXPIRED]
    assert clock.finished


def test_max_duration_zero_disabled() -> None:
    clock = SessionClock(config(max_duration=0), 0.0, None)
    assert clock.next_deadline() is None
    assert clock.due(1e9) == []


# -- token --------------------------------------------------------------------------------------


def test_token_warning_once_within_window() -> None:
    clock = SessionClock(config(token_refresh_window=60), 0.0, 100.0)
    assert clock.next_deadline() == 40.0
    assert clock.due(39.9) == []
    assert clock.due(40.0) == [A.WARN_AUTH_EXPIRING]
    assert clock.due(41.0) == []
    assert clock.due(99.0) == []
    assert clock.next_deadline() == 100.0


def test_token_already_inside_window_warns_at_once() -> None:
    clock = SessionClock(config(token_refresh_window=60), 0.0, 30.0)
    assert clock.due(0.0) == [A.WARN_AUTH_EXPIRING]
    assert clock.due(1.0) == []


def test_token_expiry_closes() -> None:
    clock = SessionClock(config(token_refresh_window=60), 0.0, 100.0)
    clock.due(40.0)
    assert clock.due(100.0) == [A.CLOSE_AUTH_EXPIRED]
    assert clock.finished


def test_set_token_expiry_rearms_warning() -> None:
    clock = SessionClock(config(token_refresh_window=60), 0.0, 100.0)
    assert clock.due(40.0) == [A.WARN_AUTH_EXPIRING]
    clock.set_token_expiry(50.0, 200.0)  # new token valid until 250
    assert clock.next_deadline() == 190.0
    assert clock.due(100.0) == []  # the old expiry is gone
    assert clock.due(190.0) == [A.WARN_AUTH_EXPIRING]
    assert clock.due(191.0) == []
    assert clock.due(250.0) == [A.CLOSE_AUTH_EXPIRED]


def test_set_token_expiry_none_clears_expiry() -> None:
    clock = SessionClock(config(token_refresh_window=60), 0.0, 100.0)
    clock.set_token_expiry(10.0, None)
    assert clock.next_deadline() is None
    assert clock.due(1e6) == []


def test_token_refresh_window_zero_never_warns() -> None:
    clock = SessionClock(config(token_refresh_window=0), 0.0, 100.0)
    assert clock.due(99.99) == []
    assert clock.due(100.0) == [A.CLOSE_AUTH_EXPIRED]


def test_no_token_no_token_deadlines() -> None:
    clock = SessionClock(config(token_refresh_window=60), 0.0, None)
    assert clock.next_deadline() is None
    assert clock.due(1e6) == []


# -- scheduling ---------------------------------------------------------------------------------


def test_next_deadline_is_earliest_pending() -> None:
    clock = SessionClock(SessionConfig(), 0.0, 1000.0)
    # ping 25, idle 300, max 7200, warn 940, expiry 1000
    assert clock.next_deadline() == 25.0
    assert clock.due(25.0) == [A.PING]
    assert clock.next_deadline() == 35.0  # pong deadline
    clock.on_pong(30.0)
    assert clock.next_deadline() == 50.0


def test_next_deadline_picks_token_warning_when_first() -> None:
    clock = SessionClock(SessionConfig(), 0.0, 70.0)
    assert clock.next_deadline() == 10.0


def test_next_deadline_with_everything_disabled() -> None:
    assert SessionClock(QUIET, 0.0, None).next_deadline() is None


def test_warning_and_ping_together() -> None:
    clock = SessionClock(
        config(heartbeat_interval=25, heartbeat_timeout=10, token_refresh_window=60), 0.0, 85.0
    )
    assert sorted(clock.due(25.0), key=lambda a: a.value) == sorted(
        [A.PING, A.WARN_AUTH_EXPIRING], key=lambda a: a.value
    )


def test_closing_action_comes_alone_and_finishes() -> None:
    clock = SessionClock(
        config(
            idle_timeout=25,
            heartbeat_interval=25,
            heartbeat_timeout=10,
            token_refresh_window=60,
        ),
        0.0,
        80.0,
    )
    # at 25: idle closes; ping and token warning are also due but must not come with it
    assert clock.due(25.0) == [A.CLOSE_IDLE]
    assert clock.finished
    assert clock.next_deadline() is None
    assert clock.due(26.0) == []
    assert clock.due(1000.0) == []


def test_max_duration_wins_over_other_closes() -> None:
    clock = SessionClock(config(max_duration=100, idle_timeout=50), 0.0, 60.0)
    assert clock.due(200.0) == [A.CLOSE_SESSION_EXPIRED]
