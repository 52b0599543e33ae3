"""A person in a real Chromium and our client, in one notebook, at the same time.

The page is marimo's own frontend; the person's actions are real keystrokes in its
CodeMirror editors. The agent side talks only HTTP through `MarimoClient`, using
marimo's code mode in the scratchpad (the notebook layer will replace these
inline programs). Screenshots of every step land in ``tmp_path``; step 5 is
copied to ``docs/browser-pairing.png`` when that is missing or
``MARIMO_PAIR_UPDATE_DOCS=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from marimo_pair_tools import MarimoClient, MarimoServer
from marimo_pair_tools.errors import KernelBusyError

from .conftest import write_notebook
from .test_faults import _descendants

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SHOT = Path(__file__).resolve().parents[1] / "docs" / "browser-pairing.png"

# Each cell as [id, code in the document, code the kernel last ran (or null)]. The
# document lags a person's run by ~1.4 s (the page sends its edit debounced, the run
# at once), so a hash of the document alone would let a stale edit through.
READ_CELLS = """
import json, marimo._code_mode as cm
from marimo._runtime.context import get_context
_ran = get_context().graph.cells
async with cm.get_context() as ctx:
    print(json.dumps([[c.id, c.code, _ran[c.id].code if c.id in _ran else None]
                      for c in ctx.cells]))
"""

CREATE_AND_RUN = """
import marimo._code_mode as cm
async with cm.get_context() as ctx:
    cid = ctx.create_cell({code!r}, hide_code=False)
    ctx.run_cell(cid)
print(cid)
"""

# Compare-and-swap: the edit lands only if the cell still holds the code we read,
# both in the document and in what the kernel last ran.
EDIT_IF_UNCHANGED = """
import hashlib, json, marimo._code_mode as cm
from marimo._runtime.context import get_context
_ran = get_context().graph.cells
async with cm.get_context() as ctx:
    code = ctx.cells[{cell!r}].code
    ran = _ran[{cell!r}].code if {cell!r} in _ran else None
    token = hashlib.sha256((code + "\\0" + (ran or "")).encode()).hexdigest()[:16]
    if token != {expected!r}:
        print(json.dumps({{"applied": False, "code": code, "ran": ran}}))
    else:
        ctx.edit_cell({cell!r}, {code!r})
        ctx.run_cell({cell!r})
        print(json.dumps({{"applied": True}}))
"""

T = TypeVar("T")


def cas_token(code: str, ran: str | None) -> str:
    """What the agent read, as EDIT_IF_UNCHANGED recomputes it in the kernel."""
    return hashlib.sha256((code + "\0" + (ran or "")).encode()).hexdigest()[:16]


def read_cells(client: MarimoClient, notebook: str) -> dict[str, tuple[str, str | None]]:
    out = client.execute(READ_CELLS, notebook=notebook)
    assert out.success, out.stderr
    return {cid: (code, ran) for cid, code, ran in json.loads(out.stdout)}


def when_idle(call: Callable[[], T], seconds: float = 20) -> T:
    """Retry while the person's run keeps the kernel busy (our client refuses to queue)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except KernelBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def first_json(stdout: str) -> Any:
    """The program's own JSON line (code mode adds a summary line after it)."""
    return json.loads(stdout.splitlines()[0])


def wait_until(check: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (run .ci/install-browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "profile"),  # a fresh profile every run
            executable_path=str(CHROMIUM),
            args=LAUNCH_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 860},
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


def test_person_and_agent_pair_in_one_session(
    browser_context: Any, start_server: Any, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    path = write_notebook(root / "pairing.py", ["x = 1", "y = x + 1\ny"])
    server: MarimoServer = start_server(root)
    shots = tmp_path / "shots"
    shots.mkdir()
    page = browser_context.new_page()

    def shot(name: str) -> Path:
        target = shots / f"{name}.png"
        page.screenshot(path=str(target))
        return target

    def editor_texts() -> list[str]:
        return [t.replace("\u200b", "") for t in page.locator(".cm-content").all_inner_texts()]

    # 1. The person opens the notebook.
    page.goto(f"{server.url}/?file={path.name}")
    wait_until(lambda: len(editor_texts()) == 2, "the person's page to show both cells")
    wait_until(lambda: len(httpx.get(server.url + "/api/sessions").json()) == 1, "a session")
    page.evaluate("window.__pairingMarker = 'no reload'")
    shot("01-person-opened")

    with MarimoClient(base_url=server.url) as client:
        # 2. The agent joins the person's session instead of opening its own.
        browser_key = next(iter(httpx.get(server.url + "/api/sessions").json()))
        assert client.attach(str(path)).key == browser_key
        notebook = str(path)

        # 3. The agent creates and runs a cell; it appears in the page with its output.
        created = client.execute(
            CREATE_AND_RUN.format(code="agent_value = 6 * 7\nagent_value"), notebook=notebook
        )
        assert created.success, created.stderr
        agent_cell = created.stdout.strip().splitlines()[-1]
        wait_until(
            lambda: "agent_value = 6 * 7\nagent_value" in editor_texts(),
            "the agent's cell in the page",
        )
        page.get_by_text("42", exact=True).wait_for()
        assert page.evaluate("window.__pairingMarker") == "no reload"
        shot("02-agent-cell-appears")

        # 4. The agent reads the person's cell (and remembers the hash of what it read).
        cells = read_cells(client, notebook)
        person_cell = next(cid for cid, (code, _) in cells.items() if code.startswith("y ="))
        read_token = cas_token(*cells[person_cell])

        # 5. Meanwhile the person rewrites that cell in the editor and runs it.
        page.locator(".cm-content").nth(1).click()
        page.keyboard.press("Control+a")
        page.keyboard.type("y = x + 100\ny")
        page.keyboard.press("Control+Enter")
        page.get_by_text("101", exact=True).wait_for()
        wait_until(
            lambda: (
                when_idle(
                    lambda: client.execute("print(globals().get('y'))", notebook=notebook).stdout
                )
                == "101\n"
            ),
            "the person's run in the kernel",
        )
        shot("03-person-edits-and-runs")

        # 6. The agent's edit, based on the code it read before, is refused.
        stale = when_idle(
            lambda: client.execute(
                EDIT_IF_UNCHANGED.format(
                    cell=person_cell, expected=read_token, code="y = x + 2\ny"
                ),
                notebook=notebook,
            )
        )
        refusal = first_json(stale.stdout)
        assert refusal["applied"] is False
        assert refusal["ran"] == "y = x + 100\ny"  # what the person ran; the document may lag
        assert editor_texts()[1] == "y = x + 100\ny"
        wait_until(lambda: "y = x + 100" in path.read_text(), "the person's text on disk")
        wait_until(
            lambda: read_cells(client, notebook)[person_cell][0] == "y = x + 100\ny",
            "the document to catch up with the page",
        )
        assert "y = x + 2" not in path.read_text()
        shot("04-stale-agent-edit-refused")

        # 7. An edit based on what the cell really holds goes through, visibly.
        fresh = read_cells(client, notebook)
        applied = client.execute(
            EDIT_IF_UNCHANGED.format(
                cell=agent_cell,
                expected=cas_token(*fresh[agent_cell]),
                code="agent_value = 6 * 8\nagent_value",
            ),
            notebook=notebook,
        )
        assert first_json(applied.stdout) == {"applied": True}
        wait_until(lambda: "agent_value = 6 * 8\nagent_value" in editor_texts(), "the edit")
        page.get_by_text("48", exact=True).wait_for()
        assert editor_texts()[1] == "y = x + 100\ny"  # the person's cell untouched
        assert page.evaluate("window.__pairingMarker") == "no reload"
        final = shot("05-both-edits-live")

        # 8. One session, one kernel: the tab and the agent share them.
        assert list(httpx.get(server.url + "/api/sessions").json()) == [browser_key]
        assert server.pid is not None
        kernels = [
            pid
            for pid in _descendants(server.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(kernels) == 1, f"expected one kernel process, found {kernels}"

        # 9. The agent restarts the kernel: it says what was lost, does not take the
        #    person's place, and the tab comes back when the person asks it to.
        #    (Reload, as the message says: marimo's "Try again" blanks the agent's cell.)
        restarted = client.restart(notebook)
        assert restarted.session is None and "reload the page" in restarted.message
        assert {"x", "y", "agent_value"} <= set(restarted.variables_lost or [])
        page.get_by_text("kernel not found").wait_for()
        page.reload()
        wait_until(
            lambda: len(httpx.get(server.url + "/api/sessions").json()) == 1, "the tab to rejoin"
        )
        wait_until(lambda: len(editor_texts()) == 3, "the reloaded page")
        assert editor_texts() == ["x = 1", "y = x + 100\ny", "agent_value = 6 * 8\nagent_value"]
        back = when_idle(lambda: client.execute("print('y' in globals())", notebook=notebook))
        assert back.stdout == "False\n"
        assert "y = x + 100" in path.read_text() and "agent_value = 6 * 8" in path.read_text()
        shot("06-restart-then-person-reloads")

    assert len(list(shots.glob("*.png"))) == 6
    # A test should not dirty the tree on every run: refresh the docs image only when
    # asked (MARIMO_PAIR_UPDATE_DOCS=1) or when it is missing.
    if os.environ.get("MARIMO_PAIR_UPDATE_DOCS") == "1" or not DOCS_SHOT.exists():
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(final, DOCS_SHOT)
