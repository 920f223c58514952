"""The command line's supervisor flags: ``--shard-timeout``, ``--metrics-token``,
``--metrics-port`` (no default) and ``--reload``; every refusal is one line and exit 2,
before anything is imported or listens."""

from __future__ import annotations

import pytest

from socketspec.cluster import cli


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("socketspec-cluster: error: "), err
    return err


@pytest.mark.parametrize("value", ["1", "1.9", "0", "-3", "nan", "ten"])
def test_a_shard_timeout_under_two_seconds_or_not_a_number_is_refused(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    err = refused(capsys, "nowhere:app", "--shard-timeout", value)
    assert "--shard-timeout" in err


def test_an_empty_metrics_token_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert "must not be empty" in refused(capsys, "nowhere:app", "--metrics-token", "  ")


def test_reload_with_several_workers_needs_the_explicit_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = refused(capsys, "nowhere:app", "--reload", "--workers", "2")
    assert "--workers 2" in err and "--reload-any-workers" in err
    assert "--echo" in refused(capsys, "--echo", "--reload")


def test_defaults_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SOCKETSPEC_SHARD_TIMEOUT", "SOCKETSPEC_METRICS_PORT", "SOCKETSPEC_RELOAD"):
        monkeypatch.delenv(name, raising=False)
    args = cli.build_parser().parse_args(["app:x"])
    assert args.shard_timeout == 10.0
    assert args.metrics_port is None  # /metrics is on the cluster's port
    assert args.metrics_token is None and not args.reload and not args.reload_any_workers
    flags = ["--shard-timeout", "2.5", "--metrics-token", "s3cret", "--metrics-port", "0"]
    args = cli.build_parser().parse_args(["app:x", *flags, "--reload", "--reload-any-workers"])
    assert (args.shard_timeout, args.metrics_token, args.metrics_port) == (2.5, "s3cret", 0)
    assert args.reload and args.reload_any_workers
    monkeypatch.setenv("SOCKETSPEC_SHARD_TIMEOUT", "4")
    monkeypatch.setenv("SOCKETSPEC_RELOAD", "1")
    args = cli.build_parser().parse_args(["app:x"])
    assert args.shard_timeout == 4.0 and args.reload


def test_api_keys_from_flags_and_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOCKETSPEC_API_KEY", raising=False)
    args = cli.build_parser().parse_args(["app:x", "--api-key", "a,b", "--api-key", "c"])
    assert cli.config_from(args).api_keys == ("a", "b", "c")
    assert cli.config_from(cli.build_parser().parse_args(["app:x"])).api_keys == ()
    monkeypatch.setenv("SOCKETSPEC_API_KEY", "env1, env2")
    assert cli.config_from(cli.build_parser().parse_args(["app:x"])).api_keys == ("env1", "env2")
    assert "--api-key" in refused(capsys, "nowhere:app", "--api-key", " , ")
