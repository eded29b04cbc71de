"""The command line as an operator uses it: migrate, verify (and its exit status), bad config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from coffer import ledger
from coffer.cli import app
from coffer.db import Database
from tests.ledger.factories import define_assets, fund, wallet


def run(*args: str, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(app, list(args), env=env)


def test_migrate_then_verify_clean_then_tampered(db: Database) -> None:
    url = db.engine.url.render_as_string(hide_password=False)
    result = run("migrate", "--database-url", url)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    with db.unit_of_work() as s:
        define_assets(s)
        alice = wallet(s, "alice")
        made = fund(s, alice, 100)
    clean = run("verify", "--database-url", url)
    assert clean.exit_code == 0, clean.output  # type: ignore[attr-defined]
    assert "the books verify" in clean.output  # type: ignore[attr-defined]
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE ledger_transfers SET amount = 99 WHERE id = :id"), {"id": made.id}
        )
    broken = run("verify", "--database-url", url)
    assert broken.exit_code == 1  # type: ignore[attr-defined]
    assert "FAIL" in broken.output and "DO NOT VERIFY" in broken.output  # type: ignore[attr-defined]
    as_json = run("verify", "--database-url", url, "--json")
    assert as_json.exit_code == 1 and '"ok": false' in as_json.output  # type: ignore[attr-defined]
    with db.read() as s:
        assert ledger.get_account(s, alice.id).balance == 100


def test_a_bad_config_file_is_refused_with_line_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "coffer.toml"
    config.write_text(
        '[topup]\nminimum = { INR = 1000 }\n\n[[packages]]\nid = "starter"\nname = "Starter"\n'
        'diamonds = 100\nprice = 99.5\ncurrency = "INR"\n'
    )
    result = run(
        "migrate",
        "--database-url",
        f"sqlite:///{tmp_path / 'x.db'}",
        env={"COFFER_CONFIG": str(config)},
    )
    assert result.exit_code == 2  # type: ignore[attr-defined]
    output = result.output  # type: ignore[attr-defined]
    assert "line 8" in output and "packages.0.price" in output
    config.write_text("[topup\nminimum = 5\n")
    result = run(
        "migrate",
        "--database-url",
        f"sqlite:///{tmp_path / 'x.db'}",
        env={"COFFER_CONFIG": str(config)},
    )
    assert result.exit_code == 2 and "line 1" in result.output  # type: ignore[attr-defined]


def test_coffer_entry_point_runs() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("coffer")), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "verify" in done.stdout and "bench" in done.stdout


def test_tasks_run_runs_every_job_once_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    env = {**os.environ, "COFFER_DATABASE_URL": f"sqlite:///{tmp_path / 'tasks.db'}"}
    coffer = str(Path(sys.executable).with_name("coffer"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [coffer, "tasks", "run", *args],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = run()
    assert done.returncode == 0, done.stderr
    assert "calls.expire: 0" in done.stdout and "ledger.expire_holds: 0" in done.stdout
    one = run("calls.warn")
    assert one.returncode == 0 and one.stdout.strip() == "calls.warn: 0"
    bad = run("nope")
    assert bad.returncode == 2 and "no job 'nope'" in bad.stderr
