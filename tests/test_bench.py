"""`coffer bench` on the test database: the result's shape and the proof, never its speed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from coffer import ledger
from coffer.audit.verify import verify_books
from coffer.bench import WORKLOADS, BenchOptions, BenchResult, run_bench
from coffer.cli import app
from coffer.db import Database

KEYS = {
    "workload",
    "database",
    "durability",
    "clients",
    "seconds",
    "warmup_s",
    "accounts",
    "preload",
    "history_transfers",
    "transfers",
    "transfers_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "failed",
    "batches",
    "batch_size_mean",
    "cpu_us_per_transfer",
    "operations",
    "verified",
    "verify_s",
    "problems",
}


def short_run(database_url: str, workload: str) -> BenchResult:
    options = BenchOptions(
        database_url=database_url,
        workload=workload,
        clients=4,
        seconds=1.0,
        accounts=6,
        preload=25,
        warmup_s=0.2,
    )
    return run_bench(options, progress=False)


@pytest.mark.parametrize("workload", WORKLOADS)
def test_bench_runs_each_workload_and_verifies(
    db: Database, database_url: str, workload: str
) -> None:
    result = short_run(database_url, workload)

    assert result.verified, result.problems
    assert result.failed == 0
    data = result.as_dict()
    assert set(data) == KEYS
    assert data["database"] == db.dialect
    assert "://" not in json.dumps(data)  # never the URL, which may carry credentials
    names = {"holds": {"create_hold", "post_hold"}}.get(workload, {"transfer"})
    assert set(data["operations"]) == names
    assert data["transfers"] == sum(op["count"] for op in data["operations"].values())
    assert data["latency_p50_ms"] <= data["latency_p99_ms"]
    # Untimed facts: the funding and the preload are in the books before the window opens.
    assert result.history_transfers >= 6 + 25
    with db.snapshot() as session:
        report = ledger.verify(session)
    assert report.ok
    assert report.transfers >= result.history_transfers + result.transfers


def test_bench_reuses_its_accounts_beside_other_data(db: Database, database_url: str) -> None:
    with db.unit_of_work() as session:
        ledger.define_asset(session, code="DIAMOND", scale=0)
        ledger.open_account(
            session, asset="DIAMOND", owner_type="user", owner_id="alice", kind="wallet"
        )
    first = short_run(database_url, "uncontended")
    second = short_run(database_url, "hot")

    assert first.verified and second.verified
    with db.read() as session:
        mine = ledger.accounts_of_owner(session, owner_type="user", owner_id="alice")
        bench_users = [
            ledger.find_account(
                session,
                asset="BENCH",
                owner_type="user",
                owner_id=f"coffer-bench:{index:08d}",
                kind="wallet",
            )
            for index in range(6)
        ]
    assert [a.balance for a in mine] == [0]  # the bench never touches other accounts
    assert all(account is not None for account in bench_users)


def test_bench_table_and_cli_json(db: Database, database_url: str) -> None:
    result = short_run(database_url, "uncontended")
    out = io.StringIO()
    result.print_table(Console(file=out, width=100))
    assert "transfers / s" in out.getvalue()
    assert "verified" in out.getvalue()

    outcome = CliRunner().invoke(
        app,
        [
            "bench",
            "--database-url",
            database_url,
            "--workload",
            "hot",
            "--clients",
            "2",
            "--seconds",
            "0.5",
            "--accounts",
            "4",
            "--json",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.output.strip().splitlines()[-1])
    assert set(data) == KEYS
    assert data["verified"] is True


def test_http_bench_serves_drives_and_verifies(tmp_path: Path) -> None:
    """`coffer bench --http`: a real `coffer serve`, driven from another process."""
    results = tmp_path / "results.jsonl"
    outcome = CliRunner().invoke(
        app,
        [
            "bench",
            "--http",
            "--database-url",
            f"sqlite:///{tmp_path / 'bench.db'}",
            "--workload",
            "balance,topup",
            "--group-commit",
            "on",
            "--clients",
            "2",
            "--duration-s",
            "1",
            "--users",
            "3",
            "--results",
            str(results),
        ],
        env={"COLUMNS": "200"},
    )

    assert outcome.exit_code == 0, outcome.output
    for heading in ("workload", "req/s", "p99 ms", "CPU µs/req", "errors", "books verified"):
        assert heading in outcome.output
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(row["workload"], row["group_commit"]) for row in rows] == [
        ("balance", None),
        ("topup", True),
    ]
    for row in rows:
        assert row["kind"] == "http" and row["database"] == "sqlite"
        assert row["errors"] == 0 and row["setup_errors"] == 0, row["error_samples"]
        assert row["verified"] is True
        assert "://" not in json.dumps(row)  # never the URL, which may carry credentials
        assert 1 <= row["connections"] <= 2  # keep-alive: one connection per client
    topup = rows[1]
    assert topup["requests"] == 2 * topup["ops"]  # a top-up is an order and its verify
    # The books hold every acknowledged top-up (users were funded before: only for gifts).
    database = Database.connect(f"sqlite:///{tmp_path / 'bench.db'}")
    try:
        report = verify_books(database)
    finally:
        database.dispose()
    assert report.ok
    assert report.transfers >= topup["ops"]
