"""`coffer demo`: the whole tour passes on a fresh database and verifies; a step that fails
(here because the mock provider is turned off by configuration) names itself and exits 1;
--serve leaves the tour's database served."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from coffer import auth
from coffer.cli import app
from coffer.db import Database

STEP_TITLES = [
    "users and an agency",
    "a top-up through the mock provider",
    "gifts with commission",
    "a metered call",
    "an escrow, funded and released",
    "KYC, a payee and a payout",
    "a refund with clawback",
    "a subscription paid from the wallet",
    "the audit trail",
    "the ledger verifies",
]
INVARIANTS = 6


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["demo", *args], env=env)
    return result.exit_code, result.output


def temp_database(output: str) -> Path:
    found = re.search(r"a temporary SQLite database \((.+?)\)", output)
    assert found, output
    return Path(found.group(1))


def test_the_tour_passes_every_step_and_the_books_verify() -> None:
    status, output = run()
    assert status == 0, output
    for number, title in enumerate(STEP_TITLES, start=1):
        assert f"{number:>2}. {title}: ok" in output, (title, output)
    for invariant in range(1, INVARIANTS + 1):
        assert re.search(rf"^    ok {invariant}\. ", output, re.MULTILINE), output
    # The figures the steps checked, as the newcomer reads them.
    assert "host 2800 + agency 400 + platform 800" in output
    assert "cost 95 = host 67 + agency 9 + platform 19" in output
    assert "300 diamonds clawed back" in output
    assert "paid; host1 earnings" in output
    assert output.rstrip().endswith("all 10 steps passed; the books verify")
    assert "FAILED" not in output
    assert not temp_database(output).exists()  # removed when done


def test_the_tour_runs_on_the_database_given_and_only_a_fresh_one(db: Database) -> None:
    url = db.engine.url.render_as_string(hide_password=False)
    status, output = run("--database-url", url)
    assert status == 0, output
    assert "on the database given" in output and "the books verify" in output
    with db.read() as session:  # the tour's keys did not outlive it
        keys = auth.list_api_keys(session, limit=10)
    assert len(keys) == 2 and all(key.revoked_at is not None for key in keys), keys
    again, output = run("--database-url", url)  # its figures would not be the tour's own
    assert again == 1, output
    assert " 1. users and an agency: FAILED" in output
    assert "the database is not fresh" in output


def test_a_failing_step_exits_1_and_names_itself() -> None:
    status, output = run(env={"COFFER_MOCK_ENABLED": "false"})
    assert status == 1, output
    assert " 1. users and an agency: ok" in output
    assert " 2. a top-up through the mock provider: FAILED" in output
    assert "POST /wallet/topup answered 422: validation_error" in output
    assert "the mock provider is off" in output
    assert "the demo FAILED at step 2. a top-up through the mock provider" in output
    assert " 3. " not in output and "the books verify" not in output
    assert not temp_database(output).exists()


def test_serve_leaves_the_tour_served_with_an_admin_key() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "COFFER_LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        [sys.executable, "-m", "coffer.cli", "demo", "--serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        lines: list[str] = []
        for line in server.stdout:
            lines.append(line)
            if len(lines) >= 2 and lines[-2].startswith("admin key"):
                break
        output = "".join(lines)
        assert f"serving the demo's database at http://127.0.0.1:{port}" in output, output
        admin_key = lines[-1].strip()
        assert admin_key.startswith("ck_"), output
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 15
        while True:
            try:
                report = httpx.get(
                    f"{base}/admin/ledger/verify",
                    headers={"Authorization": f"Bearer {admin_key}"},
                    timeout=5,
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server never came up"
                time.sleep(0.1)
        assert report.status_code == 200, report.text
        assert report.json()["ok"] is True and report.json()["transfers"] > 0
        gifts = httpx.get(
            f"{base}/admin/gifts", headers={"Authorization": f"Bearer {admin_key}"}, timeout=5
        )
        assert gifts.json()["stats"]["count"] == 2
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert not temp_database(output).exists()  # removed when the server stops
