"""The package's front door: the three names most users need, loaded only when used."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_toolkit_agent_and_middleware_import_from_the_package() -> None:
    done = _run(
        "import sys\n"
        "import marimo_pair_tools as m\n"
        "assert 'langchain_core' not in sys.modules and 'langgraph' not in sys.modules\n"
        "from marimo_pair_tools import MarimoPairToolkit, create_pair_agent, "
        "MarimoGuardMiddleware\n"
        "from marimo_pair_tools.toolkit import MarimoPairToolkit as T\n"
        "assert MarimoPairToolkit is T and callable(create_pair_agent)\n"
        "assert MarimoGuardMiddleware.__module__ == 'marimo_pair_tools.middleware'\n"
        "assert {'MarimoPairToolkit', 'create_pair_agent', 'MarimoGuardMiddleware'} <= "
        "set(m.__all__)\n"
    )
    assert done.returncode == 0, done.stderr


def test_middleware_without_its_extra_names_the_install() -> None:
    done = _run(
        "import sys\n"
        "sys.modules['langchain'] = None  # as if the `middleware` extra were not installed\n"
        "from marimo_pair_tools import MarimoPairToolkit\n"
        "try:\n"
        "    from marimo_pair_tools import MarimoGuardMiddleware\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'marimo-pair-tools[middleware]'" in done.stdout
