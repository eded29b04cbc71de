"""Crash safety: kill a writer mid-stream with SIGKILL; what it acknowledged is in the books.

A real child process (`crash_writer.py`) streams transfers through a Batcher against the test's
database (a SQLite file in WAL mode, or PostgreSQL) and prints each transfer's key only after
its future resolved. The parent reads for a while and kills it. Afterwards `verify()` is clean,
every acknowledged key is in the books exactly once, and every refused key left nothing. Then
the same requests are sent again by a second child, as a client retrying after the crash would:
none is applied twice, and the acknowledged ones come back as the same transfers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from coffer import ledger
from coffer.db import Database
from tests.ledger.books import assert_clean, asset_sums, transfers_by_key
from tests.ledger.factories import define_assets, fund, system, wallet

ROOT = Path(__file__).resolve().parents[2]
THREADS = 8
PER_THREAD = 250
FUNDING = 40  # thin: some requests are refused before the kill


def _child(db: Database, config: dict[str, object], stderr: Path) -> subprocess.Popen[str]:
    url = db.engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with stderr.open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.crash_writer", url, json.dumps(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )


def _read(proc: subprocess.Popen[str], *, acks_before_kill: int | None) -> dict[str, list[str]]:
    """Collect the child's answers by kind; kill it once it has acknowledged enough."""
    assert proc.stdout is not None
    seen: dict[str, list[str]] = {"ok": [], "no": [], "err": [], "done": []}
    for line in proc.stdout:
        kind, _, rest = line.rstrip("\n").partition(" ")
        seen[kind].append(rest)
        if acks_before_kill is not None and len(seen["ok"]) >= acks_before_kill:
            assert proc.poll() is None, "the child finished before the kill point"
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.stdout.close()
    proc.wait(timeout=30)
    return seen


@pytest.mark.parametrize("acks_before_kill", [3, 400, 1000])
def test_acknowledged_transfers_survive_sigkill(
    db: Database, tmp_path: Path, acks_before_kill: int
) -> None:
    with db.unit_of_work() as s:
        define_assets(s)
        users = [wallet(s, f"user{n}") for n in range(5)]
        hot = system(s, "fees")
        for user in users:
            fund(s, user, FUNDING)
    config = {
        "users": [u.id for u in users],
        "hot": hot.id,
        "threads": THREADS,
        "per_thread": PER_THREAD,
        "seed": acks_before_kill,
    }

    proc = _child(db, config, tmp_path / "first.err")
    first = _read(proc, acks_before_kill=acks_before_kill)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.err").read_text()
    assert not first["err"], first["err"][:3]
    assert not first["done"]

    # After the kill: the books are whole, and every answer the child got is true of them.
    assert_clean(db)
    stored = transfers_by_key(db)
    for key in first["ok"]:
        assert len(stored.get(key, [])) == 1, key
    for key in first["no"]:
        assert key not in stored, key
    # Committed but not yet acknowledged when the kill came: allowed, and only those.
    unacknowledged = set(stored) - set(first["ok"])
    assert len(unacknowledged) < THREADS * 8 + 1_000, len(unacknowledged)
    acknowledged = {key: stored[key][0] for key in first["ok"]}
    print(
        f"{db.dialect}: killed after {len(first['ok'])} acknowledged, {len(first['no'])} refused;"
        f" {len(unacknowledged)} committed but unacknowledged"
    )
    assert asset_sums(db) == {"DIAMOND": (0, 0)}

    # A client retrying everything with the same keys: nothing is applied twice.
    proc = _child(db, config, tmp_path / "second.err")
    second = _read(proc, acks_before_kill=None)
    assert proc.returncode == 0, (tmp_path / "second.err").read_text()
    assert not second["err"], second["err"][:3]
    assert second["done"] == [""]
    assert len(second["ok"]) + len(second["no"]) == THREADS * PER_THREAD
    print(f"{db.dialect}: the retry run: {len(second['ok'])} ok, {len(second['no'])} refused")
    stored = transfers_by_key(db)
    assert all(len(rows) == 1 for rows in stored.values())
    assert set(stored) == set(second["ok"])
    for key, made in acknowledged.items():
        assert stored[key] == [made], key  # the same transfer, not a second one
    report = assert_clean(db)
    assert report.transfers == len(stored) + len(users)
    with db.read() as s:
        for user in users:
            assert ledger.get_account(s, user.id).available >= 0
