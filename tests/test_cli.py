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


def test_serve_with_workers_starts_once_and_workers_share_the_checkout_secret(
    tmp_path: Path,
) -> None:
    """`coffer serve --workers 2`: the parent migrates and issues the first admin key once;
    a top-up ordered on one connection verifies on others, whichever worker each one reaches
    (each process used to draw its own mock secret)."""
    import os
    import socket
    import time

    import httpx

    from coffer import auth
    from coffer.kit.clock import utc_now

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = "serve-workers-test-" + "s" * 32
    env = {**os.environ, "COFFER_JWT_SECRET": secret, "COFFER_LOG_LEVEL": "warning"}
    env.pop("COFFER_MOCK_WEBHOOK_SECRET", None)
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "coffer.cli", "serve", "--workers", "2", "--port", str(port)]
    command += ["--database-url", f"sqlite:///{tmp_path / 'serve.db'}"]
    with log.open("w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        token = auth.mint_user_token(secret, user_id="w1", ttl_s=600, now=utc_now()).token
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(6):  # a fresh connection for every request: either worker may answer
            order = httpx.post(f"{base}/wallet/topup", json={"diamonds": 100}, headers=headers)
            assert order.status_code == 201, order.text
            body = order.json()["order"]
            paid = httpx.post(
                f"{base}/wallet/verify",
                json={
                    "order_id": body["id"],
                    "payment_id": body["checkout"]["payment_id"],
                    "signature": body["checkout"]["signature"],
                },
                headers=headers,
            )
            assert paid.status_code == 200, paid.text
    finally:
        server.terminate()
        server.wait(60)
    assert log.read_text().count("here is its first one") == 1
