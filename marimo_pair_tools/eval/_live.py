"""Read value summaries from the live kernel (state the saved file does not hold).

A UI element's value lives in the kernel only: after the agent moves a slider,
a clean run of the file shows the slider's default again. Live graders read
the kernel at the end of the session instead, with the same summaries as the
clean run (`_values`), so the same comparisons apply.

The summarizer's source travels inside the scratchpad program and runs in a
private namespace: the kernel need not have this package installed, and the
notebook's globals are only read, never written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..client import MarimoClient
from ..errors import MarimoPairError

__all__ = ["live_values"]

_TAG = "<<marimo-pair:eval-live>>"
_SOURCE = (Path(__file__).resolve().parent / "_values.py").read_text(encoding="utf-8")
_PROGRAM = """
def _mpt_eval_live():
    import json
    namespace = {{"__name__": "_mpt_eval_values"}}
    exec({source!r}, namespace)
    found = globals()
    summaries = {{
        name: namespace["summarize_safely"](found[name]) for name in {names!r} if name in found
    }}
    print({tag!r} + json.dumps(summaries, default=str))
_mpt_eval_live()
del _mpt_eval_live
"""


def live_values(
    client: MarimoClient, names: Iterable[str], *, notebook: str | None = None, timeout: float = 30
) -> dict[str, dict[str, Any]]:
    """Summaries of ``names`` as the kernel holds them now (absent names are left out)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    program = _PROGRAM.format(source=_SOURCE, names=wanted, tag=_TAG)
    result = client.execute(program, notebook=notebook, timeout=timeout)
    for line in result.stdout.splitlines():
        if line.startswith(_TAG):
            data: dict[str, dict[str, Any]] = json.loads(line[len(_TAG) :])
            return data
    raise MarimoPairError(
        "The live-value program printed no result: "
        + (result.stderr.strip()[-500:] or "no error output")
    )
