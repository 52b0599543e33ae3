"""Start and stop a local `marimo edit --headless` server (demo, eval harness, tests).

The token, when there is one, reaches marimo on standard input
(`--token-password-file -`), never on the command line where `ps` shows it.

marimo's kernels are child processes that lead sessions of their own (marimo
calls `setsid`), so the server's process group does not hold them. `stop` and
`kill` therefore take a snapshot of the server's whole process tree first and,
once the server is down, SIGKILL whatever of that tree is still running.

A server started with ``die_with_parent=True`` must not outlive a parent that is
killed without a chance to stop it (SIGKILL, a crash): on Linux the kernel sends
it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and marimo then shuts its
kernels down. Other systems have no such call; there it has no effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from ._security import redact
from .client import AsyncMarimoClient, MarimoClient
from .errors import ConfigurationError, ServerUnavailableError

__all__ = ["MarimoServer", "free_port"]

logger = logging.getLogger(__name__)

# Flags that would put a secret on argv (visible in `ps`), and the token-mode flags
# that `command()` sets itself from `token=`; a second copy would contradict it.
_SECRET_FLAGS = ("--token-password",)
_TOKEN_MODE_FLAGS = ("--token", "--no-token", "--token-password-file")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# `python -m marimo` puts the working directory (the notebook's) first on sys.path, so a
# notebook named like a module marimo imports (`markdown.py`, `json.py`) is imported in
# its place and marimo dies while starting. The `marimo` script has no such entry; this
# runs the same module without it, on every Python we support (`-P` needs 3.11).
_RUN_MARIMO = "import runpy, sys; sys.path.pop(0); runpy.run_module('marimo', run_name='__main__', alter_sys=True)"


_PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent thread dies (Linux)."""


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child get SIGTERM when we die; None where unsupported.

    ``prctl`` is looked up here, in the parent: the child, between fork and exec,
    only calls it (loading a library there could deadlock on another thread's lock).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # we died before the call above: nobody will signal
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _marimo_command() -> list[str]:
    """How to run marimo: this interpreter's module if importable, else the script."""
    import importlib.util

    if importlib.util.find_spec("marimo") is not None:
        return [sys.executable, "-c", _RUN_MARIMO]
    exe = shutil.which("marimo")
    if exe:
        return [exe]
    raise ConfigurationError(
        "marimo is not installed: starting a server needs it. "
        "Install the extra: pip install 'marimo-pair-tools[server]'."
    )


class MarimoServer:
    """One local marimo edit server on a free loopback port.

    Example:
        >>> with MarimoServer("notebooks/demo.py") as server:
        ...     client = server.client()
        ...     client.attach()

    Args:
        path: a notebook file or a directory of notebooks.
        token: ``None`` starts with ``--no-token`` (the server registers itself for
            discovery); a string starts a token server (token passed on stdin).
        registry_dir: an isolated ``XDG_STATE_HOME`` for marimo's registry; a
            temporary one when ``isolate=True`` and none is given.
        isolate: also isolate marimo's user config (fresh defaults, no autosave
            formatting surprises) and registry in temporary directories.
        port: a fixed port; a free one by default.
        extra_args: more `marimo edit` arguments. Token flags are refused: a token
            goes in ``token=`` (``--token-password`` would show it in ``ps``), and
            the token mode is set from ``token=``.
        startup_timeout: seconds to wait for ``/health``.
        die_with_parent: on Linux, marimo gets SIGTERM when the thread that started it
            ends, so a killed parent leaves no server and kernels behind (see the
            module docstring). Start it from a thread that lives as long as the
            server should (a command's main thread). No effect elsewhere.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        token: str | None = None,
        registry_dir: str | os.PathLike[str] | None = None,
        isolate: bool = True,
        port: int | None = None,
        host: str = "127.0.0.1",
        extra_args: list[str] | None = None,
        startup_timeout: float = 60.0,
        mode: str = "edit",
        die_with_parent: bool = False,
    ) -> None:
        self.path = Path(path).resolve()
        self.die_with_parent = die_with_parent
        self.host = host
        self.port = port or free_port(host)
        self._token = token
        self._isolate = isolate
        self._registry_dir = Path(registry_dir) if registry_dir is not None else None
        self._extra_args = list(extra_args or [])
        _check_extra_args(self._extra_args)
        self.startup_timeout = startup_timeout
        self.mode = mode
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        self._log_path: Path | None = None
        self.startup_seconds: float | None = None

    def __repr__(self) -> str:
        return f"MarimoServer(path={str(self.path)!r}, url={self.url!r}, running={self.running})"

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The marimo process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        """Whether the marimo process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def registry_dir(self) -> Path | None:
        """Where this server's registry file lives (``XDG_STATE_HOME/marimo/servers``)."""
        if self._registry_dir is None:
            return None
        return self._registry_dir / "marimo" / "servers"

    @property
    def has_token(self) -> bool:
        """Whether the server requires a token."""
        return self._token is not None

    def command(self) -> list[str]:
        """The argv used to start marimo (contains no secret)."""
        argv = [*_marimo_command(), self.mode, str(self.path), "--headless"]
        argv += ["--host", self.host, "--port", str(self.port)]
        if self.mode == "edit":
            argv.append("--skip-update-check")  # `marimo run` does not take this flag
        if self._token is None:
            argv.append("--no-token")
        else:
            argv += ["--token", "--token-password-file", "-"]
        return argv + self._extra_args

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("MARIMO_TOKEN", None)
        if self._isolate:
            root = self._scratch_dir()
            if self._registry_dir is None:
                self._registry_dir = root / "state"
            env["XDG_CONFIG_HOME"] = str(root / "config")
            env["XDG_CACHE_HOME"] = str(root / "cache")
        if self._registry_dir is not None:
            env["XDG_STATE_HOME"] = str(self._registry_dir)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _scratch_dir(self) -> Path:
        """A private temporary directory for the log (and isolated dirs); removed by stop()."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="marimo-pair-"))
        return self._tmp

    def start(self) -> MarimoServer:
        """Start marimo and wait until ``/health`` answers."""
        if self.running:
            return self
        if not self.path.exists():
            raise ConfigurationError(f"No such notebook or directory: {self.path}")
        started = time.monotonic()
        try:
            self._spawn()
            self._wait_healthy()
        except BaseException:
            # The error already holds the log tail; now end the process and remove the
            # temporary directory. A failing stop logs its own error: the startup
            # error is the one to raise.
            with contextlib.suppress(ServerUnavailableError):
                self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _spawn(self) -> None:
        env = self._environment()
        self._log_path = self._scratch_dir() / "server.log"
        arm = _parent_death_signal() if self.die_with_parent else None
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.path if self.path.is_dir() else self.path.parent,
                preexec_fn=arm,  # noqa: PLW1509 - the child only calls prctl, no locks
            )
        assert self._process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            if self._token is not None:
                self._process.stdin.write(self._token.encode() + b"\n")
            self._process.stdin.close()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.02
        with httpx.Client(timeout=1.0) as http:
            while True:
                if self._process is not None and self._process.poll() is not None:
                    raise ServerUnavailableError(
                        f"marimo exited with code {self._process.returncode} while starting.\n"
                        f"{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if "healthy" in http.get(self.url + "/health").text:
                        return
                if time.monotonic() > deadline:
                    raise ServerUnavailableError(
                        f"marimo did not answer {self.url}/health within "
                        f"{self.startup_timeout:g} s.\n{self.log_tail()}"
                    )
                time.sleep(delay)
                delay = min(delay * 1.5, 0.25)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log (token-free)."""
        if self._log_path is None or not self._log_path.exists():
            return "(no server log)"
        text = self._log_path.read_text(encoding="utf-8", errors="replace")
        tail = "\n".join(text.splitlines()[-lines:])
        return "Server log tail:\n" + redact(tail, self._token)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop marimo and its kernels, remove its registry file and temporary files.

        Asks politely first (SIGINT, then SIGTERM), then SIGKILLs the server; then
        every process it had started (kernels, what they spawned) that is still
        running is SIGKILLed too.

        Raises:
            ServerUnavailableError: the server is still alive after SIGKILL (the
                object keeps it, so ``stop()`` can be called again).
        """
        process, self._process = self._process, None
        tree = _process_tree(process.pid) if process is not None else []
        if process is not None and not _end(process, timeout):
            self._process = process
            _kill_all(tree, wait=0)
            message = (
                f"marimo (pid {process.pid}) is still alive after SIGKILL (waited "
                f"{timeout / 2:g} s); its files are left in {self._tmp}."
            )
            logger.error(message)
            raise ServerUnavailableError(message)
        _kill_all(tree, wait=min(timeout / 2, 5.0))
        if process is not None and self.registry_dir is not None:
            entry = self.registry_dir / f"{self.host}_{self.port}.json"
            with contextlib.suppress(OSError):
                entry.unlink()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._log_path = None

    def kill(self) -> None:
        """SIGKILL marimo and its kernels (for fault tests): its registry entry stays, stale.

        Raises:
            ServerUnavailableError: the server is still alive 10 s after SIGKILL.
        """
        process = self._process
        if process is None:
            return
        tree = _process_tree(process.pid)
        process.kill()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            message = f"marimo (pid {process.pid}) is still alive 10 s after SIGKILL."
            logger.error(message)
            raise ServerUnavailableError(message) from None
        self._process = None
        _kill_all(tree, wait=5.0)

    def client(self, **kwargs: object) -> MarimoClient:
        """A `MarimoClient` for this server (with its token, if any)."""
        return MarimoClient(base_url=self.url, token=self._token, **kwargs)  # type: ignore[arg-type]

    def async_client(self, **kwargs: object) -> AsyncMarimoClient:
        """An `AsyncMarimoClient` for this server (with its token, if any)."""
        return AsyncMarimoClient(base_url=self.url, token=self._token, **kwargs)  # type: ignore[arg-type]

    def __enter__(self) -> MarimoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> MarimoServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)


def _end(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether ``process`` has exited (or exits within ``timeout`` as we escalate)."""
    if process.poll() is not None:
        return True
    steps: tuple[int, ...]
    if sys.platform == "win32":  # pragma: no cover - no SIGINT to another group there
        steps = (signal.SIGTERM,)  # TerminateProcess
    else:
        # SIGINT is marimo's Ctrl-C path: it shuts down in ~0.4 s where SIGTERM
        # takes ~1.2 s. Escalate to SIGTERM, then SIGKILL, if it hangs.
        steps = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
    for step in steps:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(step)
        try:
            process.wait(timeout=timeout / 2)
        except subprocess.TimeoutExpired:
            continue
        return True
    return False


def _process_tree(pid: int) -> list[Any]:
    """The processes below ``pid`` (``psutil.Process``), [] when psutil is missing.

    marimo depends on psutil, so it is there wherever this interpreter runs marimo.
    Without it, marimo's kernels still end themselves about a second after the
    server dies (their parent poller).
    """
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - marimo brings psutil
        return []
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _kill_all(processes: list[Any], *, wait: float) -> None:
    """SIGKILL each process that still runs (and the process group it leads).

    A kernel leads its own group, so killing the group also ends children it
    started after the snapshot. psutil checks a process's start time before
    signalling it, so a reused pid is never hit.
    """
    if not processes:
        return
    import psutil

    for process in processes:
        try:
            if not process.is_running():
                continue
            if sys.platform != "win32" and os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except (psutil.Error, OSError):
            continue  # gone meanwhile
    if wait <= 0:
        return
    _, alive = psutil.wait_procs(processes, timeout=wait)
    left = []
    for process in alive:
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE:
                left.append(process.pid)
    if left:
        logger.warning("processes of a stopped marimo server survive SIGKILL: pids %s", left)


def _check_extra_args(args: list[str]) -> None:
    """Refuse token flags in ``extra_args``; values that merely mention "token" are fine."""
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in _SECRET_FLAGS:
            raise ConfigurationError(
                f"{flag} in extra_args would show the token in `ps`: pass token=... "
                "instead (it reaches marimo on stdin)."
            )
        if flag in _TOKEN_MODE_FLAGS:
            raise ConfigurationError(
                f"{flag} in extra_args: the token mode follows token= (None starts "
                "--no-token; a string passes it on stdin), so leave it out."
            )
