"""An incremental Server-Sent Events decoder that follows the WHATWG spec to the letter.

marimo's execute stream is SSE. A decoder that splits on ``\\n\\n`` breaks on CRLF
line ends, multi-line ``data:`` fields and comments; this one does not. It is fed
text as it arrives (chunk boundaries anywhere, even inside a CRLF pair).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event: its type (``message`` when unnamed) and joined data."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Turns a stream of text chunks into :class:`ServerSentEvent` objects."""

    def __init__(self) -> None:
        self._buffer = ""
        self._started = False
        self._pending_cr = False
        self._event = ""
        self._data: list[str] = []
        self._has_data = False
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: str) -> list[ServerSentEvent]:
        """Decode one chunk; returns the events it completed (possibly none)."""
        if not self._started:
            if not chunk:
                return []
            self._started = True
            if chunk.startswith("\ufeff"):
                chunk = chunk[1:]
        if self._pending_cr:
            # A CR ended the previous chunk; a LF starting this one belongs to it.
            self._pending_cr = False
            if chunk.startswith("\n"):
                chunk = chunk[1:]
        self._buffer += chunk
        events: list[ServerSentEvent] = []
        start = 0
        buf = self._buffer
        length = len(buf)
        while True:
            cr = buf.find("\r", start)
            lf = buf.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, nxt = lf, lf + 1
            else:
                end = cr
                if cr + 1 < length:
                    nxt = cr + 2 if buf[cr + 1] == "\n" else cr + 1
                else:
                    nxt = cr + 1
                    self._pending_cr = True
            event = self._line(buf[start:end])
            if event is not None:
                events.append(event)
            start = nxt
        self._buffer = buf[start:]
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
            self._has_data = True
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event_type, self._event = self._event or "message", ""
        if not self._has_data:
            return None
        data = "\n".join(self._data)
        self._data, self._has_data = [], False
        return ServerSentEvent(event=event_type, data=data, id=self._last_id, retry=self._retry)
