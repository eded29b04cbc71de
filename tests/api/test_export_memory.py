"""CSV exports stream in constant memory: the admin's and the user's export of N rows, served
by a real uvicorn over loopback and read as a stream, grow the server's Python heap by the
same amount whatever N is. Measured at two sizes; the growth per row, times a million, must
stay within a few MB."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn

from coffer import auth, ledger, wallets
from coffer.api.routers import admin_transactions
from coffer.api.routers import wallet as wallet_routes
from coffer.audit.transactions import TransactionFilters
from coffer.db import Database
from coffer.ledger import Group, TransferRequest
from coffer.server import Coffer, assemble
from tests.api.harness import make_settings

SMALL, LARGE = 1_000, 12_000
# Memory is one page whatever the row count; a small page makes the peak small, so that a
# growth of a few bytes a row would stand out of the peak's own noise (about a tenth of it).
PAGE = 50
RUNS = 2  # each size's least growth: a collection mid-run can only add, never take away
GROWTH_PER_MILLION_MAX = 4 * 1024 * 1024  # bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(db: Database) -> Iterator[tuple[Coffer, str]]:
    coffer = assemble(make_settings(db), db)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(coffer.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield coffer, f"http://127.0.0.1:{port}/api/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        coffer.close_writer()


def _seed(db: Database, gifts: dict[str, int]) -> None:
    """For each host, that many 1-diamond gifts from fan, straight through the ledger."""
    with db.unit_of_work() as s:
        for user_id in ("fan", *gifts):
            wallets.ensure_user(s, user_id)
        accounts = {
            (a.owner_id, a.kind): a.id
            for owner in ("fan", *gifts)
            for a in ledger.accounts_of_owner(s, owner_type="user", owner_id=owner)
            if a.asset == "DIAMOND"
        }
        issuance = ledger.open_account(
            s, asset="DIAMOND", owner_type="system", owner_id="test", kind="issuance"
        )
        fan = accounts["fan", "wallet"]
        total = sum(gifts.values())
        ledger.transfer(
            s, debit_account_id=issuance.id, credit_account_id=fan, amount=total, type="purchase"
        )
        groups = [
            Group([TransferRequest(fan, accounts[host, "earnings"], 1, "gift")])
            for host, count in gifts.items()
            for _ in range(count)
        ]
        for start in range(0, len(groups), 1_000):
            results = ledger.execute_many(s, groups[start : start + 1_000])
            assert all(isinstance(r, list) for r in results)


def _growth(make: Callable[[], Iterator[str]]) -> tuple[int, int]:
    """(rows, the least peak heap growth in bytes over RUNS passes) of one export's chunks,
    consumed as the server's StreamingResponse consumes them."""
    growths, rows = [], 0
    for _ in range(RUNS):
        rows = 0
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        for chunk in make():
            rows += chunk.count("\n")
        _, peak = tracemalloc.get_traced_memory()
        growths.append(peak - before)
    return rows - 1, min(growths)  # less the header


def _http_rows(url: str, headers: dict[str, str]) -> int:
    with httpx.Client(timeout=120) as client, client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/csv")
        return sum(1 for line in r.iter_lines() if line) - 1


def _token(coffer: Coffer, user_id: str) -> dict[str, str]:
    made = coffer.app.state.authenticator.mint_user_token(user_id=user_id, ttl_s=600)
    return {"Authorization": f"Bearer {made.token}"}


def test_exports_stream_every_row_over_http(db: Database, served: tuple[Coffer, str]) -> None:
    coffer, base = served
    _seed(db, {"small": SMALL, "large": LARGE})
    with db.unit_of_work() as s:
        admin = {"Authorization": f"Bearer {auth.create_api_key(s, role='admin').key}"}
    for host, count in (("small", SMALL), ("large", LARGE)):
        assert _http_rows(f"{base}/admin/transactions.csv?user_id={host}", admin) == count
        assert (
            _http_rows(f"{base}/wallet/transactions.csv?type=gift", _token(coffer, host)) == count
        )


def measure(database_url: str) -> dict[str, list[tuple[int, int]]]:
    """In a fresh process (no server, no background jobs, whose allocations tracemalloc would
    count too): (rows, least peak growth) of each export at each size."""
    database = Database.connect(database_url)
    exports: dict[str, Callable[[str], Callable[[], Iterator[str]]]] = {
        "admin": lambda host: (
            lambda: admin_transactions.csv_lines(
                database, TransactionFilters(user_id=host), page_size=PAGE
            )
        ),
        "user": lambda host: (
            lambda: wallet_routes.statement_csv_lines(
                database, host, types=["gift"], page_size=PAGE
            )
        ),
    }
    for export in exports.values():  # warm caches (compiled SQL) first
        _growth(export("small"))
    tracemalloc.start()
    try:
        return {
            name: [_growth(export("small")), _growth(export("large"))]
            for name, export in exports.items()
        }
    finally:
        tracemalloc.stop()
        database.dispose()


def test_exports_stream_in_constant_memory(db: Database) -> None:
    assemble(make_settings(db), db).close_writer()  # defines the assets
    _seed(db, {"small": SMALL, "large": LARGE})
    url = db.engine.url.render_as_string(hide_password=False)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; from tests.api.test_export_memory import measure; "
            "print(json.dumps(measure(sys.argv[1])))",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    for name, ((rows_small, grew_small), (rows_large, grew_large)) in measured.items():
        assert (rows_small, rows_large) == (SMALL, LARGE), name
        per_row = max(0, grew_large - grew_small) / (LARGE - SMALL)
        print(
            f"{name}: peak +{grew_small} B for {SMALL} rows, +{grew_large} B for {LARGE}: "
            f"{per_row:.2f} B a row, {per_row * 1e6 / 2**20:.2f} MB a million"
        )
        assert per_row * 1_000_000 <= GROWTH_PER_MILLION_MAX, (name, measured[name])
