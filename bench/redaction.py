"""What recognising credentials by shape costs the execute stream, against known secrets only.

Pure CPU, no server: 50 MB of printed text (what a long loop of prints sends) is fed in
64 KB chunks through the stream redactor as it is (`_StreamRedactor`: known secrets,
then session cookies, ``Cookie`` headers and signed tokens by shape) and through a
baseline that replaces the known secrets only (the redactor before the shapes). Three
texts: plain lines, lines that mention cookies (the worst case for the shapes), and one
line with no line break at all. Prints the seconds of each and the ratio.

Usage: python bench/redaction.py [--mb N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from marimo_pair_tools._security import redact_known
from marimo_pair_tools.client import _StreamRedactor

SECRETS = ["tok-3f9a1c7e55b2d4086e1f"]
CHUNK = 64 * 1024


class _KnownOnly:
    """The baseline: the redactor as it was, known secrets held back across chunks."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = secrets
        self._keep = max(len(s) for s in secrets) - 1
        self._carry = ""

    def feed(self, text: str) -> str:
        text = redact_known(self._carry + text, self._secrets)
        self._carry = text[-self._keep :]
        return text[: -self._keep]

    def flush(self) -> str:
        rest, self._carry = self._carry, ""
        return redact_known(rest, self._secrets)


def _run(make: Callable[[], object], text: str) -> float:
    redactor = make()
    started = time.perf_counter()
    size = 0
    for start in range(0, len(text), CHUNK):
        size += len(redactor.feed(text[start : start + CHUNK]))  # type: ignore[attr-defined]
    size += len(redactor.flush())  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - started
    assert size >= len(text) * 0.9
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    mb = parser.parse_args().mb
    line = "row 123456: value=0.123456789, label='alpha beta gamma'\n"
    texts = {
        "plain lines": line,
        "lines naming cookies": "cookie jar 42: {'name': 'oatmeal', 'session_count': 3}\n",
        "one long line": line.replace("\n", " | "),
    }
    print(f"{mb} MB of printed text in {CHUNK // 1024} KB chunks")
    for name, unit in texts.items():
        text = unit * (mb * 2**20 // len(unit))
        base = min(_run(lambda: _KnownOnly(SECRETS), text) for _ in range(3))
        shapes = min(_run(lambda: _StreamRedactor(SECRETS), text) for _ in range(3))
        print(
            f"{name:22s} known only {base:6.3f} s   with shapes {shapes:6.3f} s   "
            f"ratio {shapes / base:5.2f}x"
        )


if __name__ == "__main__":
    main()
