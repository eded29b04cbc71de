"""Run a test scenario under `python -O`, where every `assert` is stripped (STYLE.md habit 8).

A scenario is a module-level function `scenario(url, *args)` of a test module; it connects to
the test database at `url` and prints what happened, which the test then checks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from coffer.db import Database

ROOT = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT_S = 120


def run_optimised(db: Database, module: str, scenario: str, *args: object) -> str:
    """Run `module.scenario(url, *args)` under `python -O`; return what it printed."""
    url = db.engine.url.render_as_string(hide_password=False)
    code = (
        "assert False, 'asserts are on: this is not python -O'\n"
        f"from {module} import {scenario}\n"
        f"{scenario}({url!r}, *{args!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-O", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
