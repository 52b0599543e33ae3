"""Build the agent's parts from strings: a chat model from a spec, a toolkit from the environment.

The deployable graph (`agents/pair.py`, loaded by ``langgraph dev`` through
``langgraph.json``) and the CLI (``marimo-pair run --model SPEC``) are both
configured by strings, not code; this module is the one place that turns those
strings into objects, so both accept the same specs and fail with the same
messages.

A model spec is one of:

- ``provider:model``, e.g. ``anthropic:claude-sonnet-4-5`` or ``openai:gpt-4.1``:
  LangChain's `init_chat_model` (needs ``langchain`` and the provider's package);
- ``module:attribute``, e.g. ``my_models:make_model``: a `BaseChatModel`
  instance, or a factory that returns one (``marimo-pair eval`` passes it the task
  when it takes an argument);
- ``scripted:path/to/turns.json``: a `ScriptedChatModel` replaying a JSON list
  of turns (texts, or lists of ``{"name", "args"}`` tool calls), for demos and
  smoke tests without an API key.

The environment, for `toolkit_from_env` and `model_from_env`:

- ``MARIMO_URL``: a running marimo server (a URL copied from the browser works:
  its ``?file=`` names the notebook); with ``MARIMO_NOTEBOOK`` naming one of its
  notebooks (a headless session is opened when none is, unless another server
  has the file open). The token, if any, comes from ``MARIMO_TOKEN``;
  ``MARIMO_ALLOW_REMOTE=1`` permits a non-loopback URL.
- ``MARIMO_NOTEBOOK`` alone: a notebook file. The session that has it open (a
  person's tab, on any registered server) is joined; only when nobody has it
  open is a local server started, and stopped when the process exits.
- ``MARIMO_PAIR_MODEL``: a model spec, as above.

And for `agent_options_from_env` (the deployed graph's human approvals):

- ``MARIMO_PAIR_APPROVE_DELETES``: ``1``/``true`` (every delete) or
  ``with_descendants`` (deletes that break other cells).
- ``MARIMO_PAIR_INTERRUPT_ON``: more tools that need approval, comma-separated.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import inspect
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from ._security import split_page_url
from .errors import ConfigurationError
from .toolkit import MarimoPairToolkit

__all__ = [
    "ENV_ALLOW_REMOTE",
    "ENV_APPROVE_DELETES",
    "ENV_INTERRUPT_ON",
    "ENV_MODEL",
    "ENV_NOTEBOOK",
    "ENV_URL",
    "agent_options_from_env",
    "check_model_spec",
    "close_started",
    "lifespan",
    "model_from_env",
    "model_from_spec",
    "toolkit_from_env",
]

ENV_URL = "MARIMO_URL"
ENV_NOTEBOOK = "MARIMO_NOTEBOOK"
ENV_MODEL = "MARIMO_PAIR_MODEL"
ENV_ALLOW_REMOTE = "MARIMO_ALLOW_REMOTE"
ENV_APPROVE_DELETES = "MARIMO_PAIR_APPROVE_DELETES"
ENV_INTERRUPT_ON = "MARIMO_PAIR_INTERRUPT_ON"

_SCRIPTED = "scripted"
_SPEC_FORMS = (
    "provider:model (e.g. anthropic:claude-sonnet-4-5), module:factory (a function returning "
    "a chat model), or scripted:turns.json"
)

# LangChain's `init_chat_model` providers, so that ``openai:gpt-4.1`` is read as a
# provider even when langchain is missing (``openai`` is also an importable module).
# The registry of the installed langchain is added to these at run time.
_KNOWN_PROVIDERS = frozenset(
    {
        "anthropic",
        "azure_ai",
        "azure_openai",
        "bedrock",
        "bedrock_converse",
        "cohere",
        "deepseek",
        "fireworks",
        "google_anthropic_vertex",
        "google_genai",
        "google_vertexai",
        "groq",
        "huggingface",
        "ibm",
        "mistralai",
        "nvidia",
        "ollama",
        "openai",
        "openrouter",
        "perplexity",
        "together",
        "xai",
    }
)

# The environment variable that holds each provider's API key, for providers that
# take one (the others authenticate by other means: cloud credentials, a local server).
_API_KEYS: Mapping[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "fireworks": ("FIREWORKS_API_KEY",),
    "google_genai": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistralai": ("MISTRAL_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "perplexity": ("PPLX_API_KEY",),
    "together": ("TOGETHER_API_KEY",),
    "xai": ("XAI_API_KEY",),
}

_logger = logging.getLogger(__name__)
_NOTHING = object()


# ------------------------------------------------------------------------- models


def model_from_spec(spec: str, *, argument: object = _NOTHING) -> BaseChatModel:
    """The chat model a spec names (see the module docstring for the forms).

    ``marimo-pair run``, ``marimo-pair eval`` and the deployed graph all read
    specs here, so they accept the same ones and fail with the same one-line
    messages.

    Args:
        spec: ``provider:model``, ``module:attribute`` or ``scripted:path.json``.
        argument: passed to a ``module:factory`` that takes one (eval: the task).

    Raises:
        ConfigurationError: the spec is malformed, names nothing, needs a package
            that is not installed, or an API key that is not set (each message, one
            line, says which), or the provider could not build the model.
    """
    kind, prefix, rest = _parse(spec)
    if kind == _SCRIPTED:
        return _scripted(rest)
    if kind == "provider":
        return _from_provider(prefix, rest, _provider_registry())
    return _from_import(spec, prefix, rest, argument)


def check_model_spec(spec: str) -> None:
    """Fail now, not at the first of many tasks, on a spec that cannot work.

    A provider's model is built once (no request is sent); a factory is looked up
    but not called (it may be made for one task).

    Raises:
        ConfigurationError: as `model_from_spec`.
    """
    kind, prefix, rest = _parse(spec)
    if kind == _SCRIPTED:
        _scripted(rest)
    elif kind == "provider":
        _from_provider(prefix, rest, _provider_registry())
    else:
        _attribute(spec, prefix, rest)


def _parse(spec: str) -> tuple[str, str, str]:
    """(``scripted`` | ``provider`` | ``import``, the part before the colon, the rest)."""
    prefix, colon, rest = spec.strip().partition(":")
    if not colon or not prefix or not rest:
        raise ConfigurationError(f"Model spec {spec!r} is not one of: {_SPEC_FORMS}.")
    if prefix == _SCRIPTED:
        return _SCRIPTED, prefix, rest
    if prefix in _KNOWN_PROVIDERS or prefix in _provider_registry():
        return "provider", prefix, rest
    return "import", prefix, rest


def _require_key(provider: str, model: str) -> None:
    """Fail in one line when the provider's API key is not set (checked before anything)."""
    names = _API_KEYS.get(provider)
    if names and not any(os.environ.get(name) for name in names):
        raise ConfigurationError(
            f"Model spec {provider}:{model} needs an API key: set {' or '.join(names)} "
            "in the environment."
        )


def agent_options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`create_pair_agent` keyword options for human approvals, from the environment.

    Raises:
        ConfigurationError: ``MARIMO_PAIR_APPROVE_DELETES`` has a value it cannot mean.
    """
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    approve = env.get(ENV_APPROVE_DELETES, "").strip().lower()
    if approve in {"1", "true", "yes"}:
        options["approve_deletes"] = True
    elif approve == "with_descendants":
        options["approve_deletes"] = "with_descendants"
    elif approve not in {"", "0", "false", "no"}:
        raise ConfigurationError(
            f"{ENV_APPROVE_DELETES}={approve!r}: use 1 (every delete), with_descendants, or 0."
        )
    tools = [t.strip() for t in env.get(ENV_INTERRUPT_ON, "").split(",") if t.strip()]
    if tools:
        options["interrupt_on"] = tools
    return options


def model_from_env(environ: Mapping[str, str] | None = None) -> BaseChatModel:
    """The chat model named by ``MARIMO_PAIR_MODEL``.

    Raises:
        ConfigurationError: the variable is unset, or its spec is unusable.
    """
    env = os.environ if environ is None else environ
    spec = env.get(ENV_MODEL, "").strip()
    if not spec:
        raise ConfigurationError(f"Set {ENV_MODEL} to a model spec: {_SPEC_FORMS}.")
    return model_from_spec(spec)


def _provider_registry() -> Mapping[str, Any]:
    """The installed langchain's provider table (empty without langchain)."""
    try:
        from langchain.chat_models import base
    except ImportError:
        return {}
    registry = getattr(base, "_BUILTIN_PROVIDERS", None)  # private; absent means "unknown"
    return registry if isinstance(registry, Mapping) else {}


def _provider_package(provider: str, registry: Mapping[str, Any]) -> str:
    """The pip name of the package that implements ``provider``."""
    entry = registry.get(provider)
    if isinstance(entry, tuple) and entry and isinstance(entry[0], str):
        return entry[0].split(".", 1)[0].replace("_", "-")
    return "langchain-" + provider.replace("_", "-")


def _from_provider(provider: str, model: str, registry: Mapping[str, Any]) -> BaseChatModel:
    package = _provider_package(provider, registry)
    _require_key(provider, model)
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:
        raise ConfigurationError(
            f"Model spec {provider}:{model} uses LangChain's init_chat_model, which needs "
            f"langchain and the provider's package: pip install langchain {package}"
        ) from exc
    try:
        return init_chat_model(model, model_provider=provider)
    except ImportError as exc:
        raise ConfigurationError(
            f"Model spec {provider}:{model} needs the {package} package: pip install {package}"
        ) from exc
    except Exception as exc:
        # Why broad: building the client is the provider's code, and a bad key or
        # option surfaces as its own error class (openai.OpenAIError, pydantic's, ...).
        # It is a setup problem: one line, not a traceback.
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ConfigurationError(
            f"Model spec {provider}:{model}: the provider could not build the model "
            f"({type(exc).__name__}: {first}). Check the model name and its API key."
        ) from exc


def _from_import(
    spec: str, module_name: str, attribute: str, argument: object = _NOTHING
) -> BaseChatModel:
    target = _attribute(spec, module_name, attribute)
    if not isinstance(target, BaseChatModel) and callable(target):
        takes = _takes_argument(target)
        if takes and argument is _NOTHING:
            raise ConfigurationError(
                f"Model spec {spec!r} is a factory that takes an argument (marimo-pair eval "
                "passes it the task); here it is called with none. Give one without."
            )
        target = target(argument) if takes else target()
    if not isinstance(target, BaseChatModel):
        raise ConfigurationError(
            f"Model spec {spec!r} gave {type(target).__name__}, not a chat model: point it at "
            "a BaseChatModel instance or a function that returns one."
        )
    return target


def _takes_argument(factory: Any) -> bool:
    """Whether ``factory`` takes one positional argument (eval passes the task)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(
        p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters
    )


def _attribute(spec: str, module_name: str, attribute: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise  # the module exists but one of its own imports is missing
        raise ConfigurationError(
            f"Model spec {spec!r}: {module_name!r} is neither a LangChain provider nor an "
            f"importable module. Use {_SPEC_FORMS}."
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise ConfigurationError(
                f"Model spec {spec!r}: module {module_name!r} has no attribute {attribute!r}."
            ) from exc
    return target


def _scripted(path_text: str) -> BaseChatModel:
    from .testing import ScriptedChatModel

    path = Path(path_text).expanduser()
    try:
        turns = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"Cannot read the scripted turns {str(path)!r}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{str(path)!r} is not JSON: {exc}") from exc
    if not isinstance(turns, list):
        raise ConfigurationError(
            f"{str(path)!r} must hold a JSON list of turns: texts, or lists of "
            '{"name": ..., "args": {...}} tool calls.'
        )
    try:
        return ScriptedChatModel(turns)
    except TypeError as exc:
        raise ConfigurationError(f"{str(path)!r}: {exc}") from exc


# ------------------------------------------------------------------------ toolkit


def toolkit_from_env(environ: Mapping[str, str] | None = None) -> MarimoPairToolkit:
    """The toolkit for the notebook the environment names (see the module docstring).

    A server started here (nobody had the notebook open) is stopped at interpreter
    exit: the process that loads the graph owns it. Under ``langgraph dev`` that is
    the worker, which exits on every reload; see ``marimo-pair dev`` for a reloader
    that does not restart it when the agent saves the notebook.

    Raises:
        ConfigurationError: neither variable is set, or the notebook does not exist,
            or it is open on another server than ``MARIMO_URL``.
    """
    env = os.environ if environ is None else environ
    url = env.get(ENV_URL, "").strip() or None
    notebook = env.get(ENV_NOTEBOOK, "").strip() or None
    if url is not None:
        allow_remote = env.get(ENV_ALLOW_REMOTE, "").strip().lower() in {"1", "true", "yes"}
        notebook = notebook or split_page_url(url).file
        if notebook is None:
            return MarimoPairToolkit.from_url(url, allow_remote=allow_remote)
        return MarimoPairToolkit.for_notebook(notebook, url=url, allow_remote=allow_remote)
    if notebook is None:
        raise ConfigurationError(
            f"Set {ENV_NOTEBOOK} to a notebook file (the session that has it open is joined; "
            f"else a local marimo server is started for it), or {ENV_URL} to a running marimo "
            f"server plus {ENV_NOTEBOOK} to pick its notebook."
        )
    path = Path(notebook).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"{ENV_NOTEBOOK}={notebook!r} is not a notebook file.")
    toolkit = MarimoPairToolkit.for_notebook(path)
    pairing = toolkit.pairing
    assert pairing is not None
    if pairing.server is not None:
        if not _STARTED:
            atexit.register(close_started)
        _STARTED.append(toolkit)
    _logger.info("marimo server for %s: %s (%s)", path, pairing.url, pairing.describe())
    return toolkit


_STARTED: list[MarimoPairToolkit] = []
"""Toolkits whose marimo server `toolkit_from_env` started in this process."""


def close_started() -> None:
    """Stop every marimo server `toolkit_from_env` started in this process (idempotent)."""
    while _STARTED:
        _STARTED.pop().close()


@contextlib.asynccontextmanager
async def lifespan(app: object) -> AsyncIterator[None]:
    """A Starlette lifespan that stops those servers when the web server shuts down.

    An atexit hook is not enough under ``langgraph dev``: its worker (uvicorn) shuts
    down gracefully on SIGTERM, then re-raises the signal with the default handler,
    which ends the process without running atexit hooks; every reload would leave
    the old marimo server running. ``langgraph.json`` mounts this lifespan through
    ``agents/lifespan.py`` (``"http": {"app": ...}``).
    """
    try:
        yield
    finally:
        await asyncio.to_thread(close_started)
