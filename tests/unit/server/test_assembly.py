"""Message reassembly within the soft and hard limits."""

from __future__ import annotations

from socketspec.server.assembly import MessageAssembler, Verdict, utf8_size


def test_single_piece_message_passes_through_untouched() -> None:
    assembler = MessageAssembler(soft_limit=10, hard_limit=100)
    data = "hello"
    assert assembler.feed(data, True) is data


def test_fragments_are_joined_in_order() -> None:
    assembler = MessageAssembler(soft_limit=100, hard_limit=1000)
    assert assembler.feed("ab", False) is None
    assert assembler.feed("cd", False) is None
    assert assembler.feed("ef", True) == "abcdef"
    assert assembler.feed(b"\x01", False) is None
    assert assembler.feed(b"\x02", True) == b"\x01\x02"


def test_limits_count_utf8_bytes_not_characters() -> None:
    assembler = MessageAssembler(soft_limit=4, hard_limit=100)
    assert assembler.feed("éé", True) == "éé"  # 4 bytes
    assert assembler.feed("ééé", True) is Verdict.OVERSIZE  # 6 bytes
    assert utf8_size("€") == 3


def test_oversize_message_is_discarded_as_it_arrives_then_reported() -> None:
    assembler = MessageAssembler(soft_limit=5, hard_limit=100)
    assert assembler.feed("abc", False) is None
    assert assembler.feed("def", False) is None
    assert assembler._parts is None  # nothing of it is held any more
    assert assembler.feed("ghi", True) is Verdict.OVERSIZE
    # the next message starts clean
    assert assembler.feed("ok", True) == "ok"


def test_hard_limit_is_reported_at_once() -> None:
    assembler = MessageAssembler(soft_limit=5, hard_limit=8)
    assert assembler.feed("abcdef", False) is None
    assert assembler.feed("ghi", False) is Verdict.TOO_BIG
    single = MessageAssembler(soft_limit=5, hard_limit=8)
    assert single.feed("x" * 9, True) is Verdict.TOO_BIG
