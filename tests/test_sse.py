"""The SSE decoder against the WHATWG rules (pure: no server involved)."""

from __future__ import annotations

import pytest

from marimo_pair_tools._sse import SSEDecoder


def decode_all(chunks: list[str]) -> list[tuple[str, str]]:
    decoder = SSEDecoder()
    return [(e.event, e.data) for c in chunks for e in decoder.feed(c)]


def test_named_event_and_data() -> None:
    assert decode_all(["event: done\ndata: {}\n\n"]) == [("done", "{}")]


def test_multiline_data_is_joined_with_newlines() -> None:
    assert decode_all(["data: a\ndata: b\n\n"]) == [("message", "a\nb")]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_line_ending(newline: str) -> None:
    text = f"event: stdout{newline}data: x{newline}{newline}"
    assert decode_all([text]) == [("stdout", "x")]


def test_crlf_split_across_chunks() -> None:
    assert decode_all(["data: x\r", "\n\r", "\n"]) == [("message", "x")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    assert decode_all([": keep-alive\nfoo: bar\ndata: y\n\n"]) == [("message", "y")]


def test_no_space_after_colon_and_only_one_space_stripped() -> None:
    assert decode_all(["data:a\n\ndata:  b\n\n"]) == [("message", "a"), ("message", " b")]


def test_event_without_data_is_not_dispatched() -> None:
    assert decode_all(["event: ping\n\n", "data: z\n\n"]) == [("message", "z")]


def test_bom_and_byte_by_byte_feeding() -> None:
    text = '\ufeffevent: stderr\r\ndata: {"data": "é"}\r\n\r\n'
    assert decode_all(list(text)) == [("stderr", '{"data": "é"}')]


def test_incomplete_event_waits_for_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data: partial\n") == []
    assert [e.data for e in decoder.feed("\n")] == ["partial"]
