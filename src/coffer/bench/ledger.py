"""`coffer bench`: the ledger's throughput and latency through group commit, at steady state.

It opens its own accounts (owner ids under `coffer-bench:`, asset `BENCH`, so it can run against
a database that holds other data), funds them, optionally writes history untimed (`preload`),
then runs `clients` threads for a warm-up and `seconds` of measurement. Each client submits one
operation at a time through one shared `ledger.Batcher` and waits for it, so latency is what a
request handler would see. At the end it proves the books with `ledger.verify`.

Workloads:
- `uncontended`: transfers between random pairs of `accounts` funded user wallets;
- `hot`: every transfer credits one account (the platform's fee account, a popular host);
- `holds`: create a hold between two random wallets, then post part of it (two operations).
"""

from __future__ import annotations

import gc
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from coffer import ledger
from coffer.db import Database, migrate
from coffer.ledger import AccountFlags, PostHold, TransferRequest

WORKLOADS = ("uncontended", "hot", "holds")

ASSET = "BENCH"
OWNER_ID_PREFIX = "coffer-bench"
# Each wallet is topped up to this many units; a run moves at most AMOUNT_MAX per operation,
# so no realistic run can drain one (an insufficient-funds failure would be a real failure).
FUNDING = 10**12
FUNDING_LOW = 10**11
AMOUNT_MAX = 100
HOLD_TIMEOUT_S = 3_600
# Setup and preload write this many groups per transaction (the same path as a batch).
SETUP_BATCH_MAX = 1_000
# The warm-up is this share of the measured time, capped; nothing in it is counted.
WARMUP_SHARE = 0.2
WARMUP_S_MAX = 3.0
PROGRESS_REFRESH_S = 0.1
CLIENTS_MAX = 1_024
ACCOUNTS_MAX = 10_000_000
PRELOAD_MAX = 100_000_000


@dataclass(frozen=True, slots=True)
class BenchOptions:
    database_url: str
    workload: str = "uncontended"
    clients: int = 16
    seconds: float = 10.0
    accounts: int = 10_000
    preload: int = 0
    # None: WARMUP_SHARE of `seconds`, at most WARMUP_S_MAX.
    warmup_s: float | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        assert self.workload in WORKLOADS, self.workload
        assert 1 <= self.clients <= CLIENTS_MAX
        assert 0 < self.seconds <= 3_600
        assert 2 <= self.accounts <= ACCOUNTS_MAX
        assert 0 <= self.preload <= PRELOAD_MAX
        assert self.warmup_s is None or 0 <= self.warmup_s <= 600

    @property
    def warmup(self) -> float:
        if self.warmup_s is not None:
            return self.warmup_s
        return min(WARMUP_S_MAX, self.seconds * WARMUP_SHARE)


@dataclass(frozen=True, slots=True)
class OperationFigures:
    """One kind of ledger operation, measured over the window."""

    name: str
    count: int
    per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "per_s": round(self.per_s, 1),
            "latency_p50_ms": round(self.latency_p50_ms, 3),
            "latency_p99_ms": round(self.latency_p99_ms, 3),
            "latency_max_ms": round(self.latency_max_ms, 3),
        }


@dataclass(frozen=True, slots=True)
class BenchResult:
    workload: str
    database: str  # the dialect only: a URL may carry credentials
    durability: str  # the settings that decide what a commit survives, read from the database
    clients: int
    seconds: float
    warmup_s: float
    accounts: int
    preload: int
    history_transfers: int  # transfers in the ledger when measuring began
    transfers: int  # ledger operations completed in the window (each writes one transfer)
    transfers_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    failed: int
    batches: int
    batch_size_mean: float
    # This process's CPU time (every thread: clients, batcher, driver) per operation measured:
    # what the ledger's Python costs, whatever else the machine is doing.
    cpu_us_per_transfer: float
    operations: list[OperationFigures]
    verified: bool
    verify_s: float
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "database": self.database,
            "durability": self.durability,
            "clients": self.clients,
            "seconds": self.seconds,
            "warmup_s": round(self.warmup_s, 3),
            "accounts": self.accounts,
            "preload": self.preload,
            "history_transfers": self.history_transfers,
            "transfers": self.transfers,
            "transfers_per_s": round(self.transfers_per_s, 1),
            "latency_p50_ms": round(self.latency_p50_ms, 3),
            "latency_p99_ms": round(self.latency_p99_ms, 3),
            "failed": self.failed,
            "batches": self.batches,
            "batch_size_mean": round(self.batch_size_mean, 1),
            "cpu_us_per_transfer": round(self.cpu_us_per_transfer, 1),
            "operations": {op.name: op.as_dict() for op in self.operations},
            "verified": self.verified,
            "verify_s": round(self.verify_s, 2),
            "problems": list(self.problems),
        }

    def print_table(self, console: Console | None = None) -> None:
        console = console or Console()
        table = Table(title=f"coffer bench: {self.workload} on {self.database} ({self.durability})")
        table.add_column("measure")
        table.add_column("value", justify="right")
        rows: list[tuple[str, str]] = [
            ("clients", str(self.clients)),
            ("accounts", f"{self.accounts:,}"),
            ("history at start (transfers)", f"{self.history_transfers:,}"),
            ("measured (s, after warm-up)", f"{self.seconds:g} (+{self.warmup_s:g})"),
            ("transfers / s", f"{self.transfers_per_s:,.0f}"),
            ("latency p50 (ms)", f"{self.latency_p50_ms:.2f}"),
            ("latency p99 (ms)", f"{self.latency_p99_ms:.2f}"),
            ("failed", str(self.failed)),
            ("batches", f"{self.batches:,}"),
            ("mean batch size", f"{self.batch_size_mean:.1f}"),
            ("process CPU per transfer (µs)", f"{self.cpu_us_per_transfer:.0f}"),
        ]
        if len(self.operations) > 1:
            for op in self.operations:
                rows.append(
                    (
                        f"  {op.name}: / s, p50, p99 (ms)",
                        f"{op.per_s:,.0f}, {op.latency_p50_ms:.2f}, {op.latency_p99_ms:.2f}",
                    )
                )
        rows.append(("verified", "yes" if self.verified else "NO"))
        for name, value in rows:
            table.add_row(name, value)
        console.print(table)
        for problem in self.problems:
            console.print(f"  - {problem}")


# ---------------------------------------------------------------------------------------------
# Setup


@dataclass(frozen=True, slots=True)
class _Accounts:
    issuance: int
    hot: int
    users: list[int]


def _open_accounts(
    database: Database, count: int, *, on_progress: Callable[[int], None]
) -> _Accounts:
    """Open (or find) the bench's accounts and top up any wallet that is running low."""
    with database.unit_of_work() as session:
        ledger.define_asset(session, code=ASSET, scale=0)
        issuance = ledger.open_account(
            session, asset=ASSET, owner_type="system", owner_id=OWNER_ID_PREFIX, kind="issuance"
        )
        hot = ledger.open_account(
            session, asset=ASSET, owner_type="platform", owner_id=OWNER_ID_PREFIX, kind="fees"
        )
    users: list[int] = []
    low: list[tuple[int, int]] = []
    for start in range(0, count, SETUP_BATCH_MAX):
        with database.unit_of_work() as session:
            for index in range(start, min(count, start + SETUP_BATCH_MAX)):
                account = ledger.open_account(
                    session,
                    asset=ASSET,
                    owner_type="user",
                    owner_id=f"{OWNER_ID_PREFIX}:{index:08d}",
                    kind="wallet",
                    flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                )
                users.append(account.id)
                if account.available < FUNDING_LOW:
                    low.append((account.id, FUNDING - account.available))
        on_progress(min(count, start + SETUP_BATCH_MAX) - start)
    for start in range(0, len(low), SETUP_BATCH_MAX):
        groups = [
            ledger.Group([TransferRequest(issuance.id, account_id, amount, "bench.funding")])
            for account_id, amount in low[start : start + SETUP_BATCH_MAX]
        ]
        with database.unit_of_work() as session:
            _raise_first(ledger.execute_many(session, groups))
    return _Accounts(issuance=issuance.id, hot=hot.id, users=users)


def _raise_first(results: Sequence[ledger.GroupResult]) -> None:
    for result in results:
        if isinstance(result, ledger.LedgerError):
            raise result


def _preload(
    database: Database,
    accounts: _Accounts,
    *,
    workload: str,
    count: int,
    rng: random.Random,
    on_progress: Callable[[int], None],
) -> None:
    """Write `count` transfers of history shaped like the workload, untimed: for `holds`,
    holds and their postings (two transfers each), so the holds table has a history too."""
    users = accounts.users
    written = 0
    while written < count:
        size = min(SETUP_BATCH_MAX, count - written)
        pending = workload == "holds" and size >= 2
        groups = []
        for _ in range(size // 2 if pending else size):
            debit, credit = rng.sample(users, 2)
            if workload == "hot":
                credit = accounts.hot
            amount = rng.randint(2, AMOUNT_MAX)
            request = TransferRequest(
                debit, credit, amount, "bench.preload", pending=pending, timeout_s=None
            )
            groups.append(ledger.Group([request]))
        with database.unit_of_work() as session:
            results = ledger.execute_many(session, groups)
            _raise_first(results)
        if pending:
            posts = [
                ledger.Group([PostHold(hold_id=made[0].id, amount=made[0].amount // 2)])
                for made in results
                if not isinstance(made, ledger.LedgerError)
            ]
            with database.unit_of_work() as session:
                _raise_first(ledger.execute_many(session, posts))
            size = 2 * len(posts)
        written += size
        on_progress(size)
    if database.dialect == "postgresql":
        # Fresh statistics, so the planner sees the tables as they now are.
        with database.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE ledger_accounts, ledger_transfers, ledger_holds")
            conn.commit()


# ---------------------------------------------------------------------------------------------
# Clients


class _Recorder:
    """One client's completions: (kind, finished at, latency), appended without locks."""

    __slots__ = ("failed", "first_id", "samples")

    def __init__(self) -> None:
        self.samples: list[tuple[int, float, float]] = []
        self.failed: list[float] = []  # when each failure happened
        self.first_id: int | None = None  # the first transfer this client made


def _client(
    batcher: ledger.Batcher,
    accounts: _Accounts,
    *,
    workload: str,
    rng: random.Random,
    stop: threading.Event,
    recorder: _Recorder,
) -> None:
    users = accounts.users
    count = len(users)
    hot = accounts.hot
    samples = recorder.samples
    clock = time.perf_counter
    pending = workload == "holds"
    uniform = rng.random  # cheaper than sample/randint: the clients share the GIL with the ledger
    while not stop.is_set():
        debit_index = int(uniform() * count)
        credit_index = int(uniform() * (count - 1))
        if credit_index >= debit_index:
            credit_index += 1
        debit = users[debit_index]
        credit = hot if workload == "hot" else users[credit_index]
        amount = 2 + int(uniform() * (AMOUNT_MAX - 1))
        if pending:
            request = TransferRequest(
                debit, credit, amount, "bench", pending=True, timeout_s=HOLD_TIMEOUT_S
            )
        else:
            request = TransferRequest(debit, credit, amount, "bench")
        started = clock()
        try:
            (made,) = batcher.execute([request])
        except ledger.LedgerError:
            recorder.failed.append(clock())
            continue
        finished = clock()
        samples.append((0, finished, finished - started))
        if recorder.first_id is None:
            recorder.first_id = made.id
        if pending:
            post = PostHold(hold_id=made.id, amount=rng.randint(1, amount - 1))
            started = finished
            try:
                batcher.execute([post])
            except ledger.LedgerError:
                recorder.failed.append(clock())
                continue
            finished = clock()
            samples.append((1, finished, finished - started))


def _percentile(sorted_values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(share * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _figures(name: str, latencies: list[float], seconds: float) -> OperationFigures:
    latencies.sort()
    return OperationFigures(
        name=name,
        count=len(latencies),
        per_s=len(latencies) / seconds,
        latency_p50_ms=_percentile(latencies, 0.50) * 1000,
        latency_p99_ms=_percentile(latencies, 0.99) * 1000,
        latency_max_ms=(latencies[-1] * 1000) if latencies else 0.0,
    )


# ---------------------------------------------------------------------------------------------
# The run


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description:<28}"),
                BarColumn(),
                TextColumn("{task.fields[note]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                refresh_per_second=1 / PROGRESS_REFRESH_S,
            )
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def stage(self, description: str, total: float) -> None:
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.update(self._task, completed=self._progress.tasks[-1].total)
        self._task = self._progress.add_task(description, total=total, note="")

    def update(self, *, completed: float | None = None, advance: float = 0, note: str = "") -> None:
        if self._progress is None or self._task is None:
            return
        if completed is not None:
            self._progress.update(self._task, completed=completed, note=note)
        else:
            self._progress.update(self._task, advance=advance, note=note)


def run_bench(options: BenchOptions, *, progress: bool = False) -> BenchResult:
    """Set up, preload, measure, verify. See the module docstring."""
    database = Database.connect(options.database_url)
    try:
        with _Progress(progress) as bar:
            return _run(database, options, bar)
    finally:
        gc.unfreeze()  # a caller that goes on (a test run) gets its collector back as it was
        database.dispose()


def _run(database: Database, options: BenchOptions, bar: _Progress) -> BenchResult:
    rng = random.Random(options.seed)
    bar.stage(f"opening {options.accounts:,} accounts", options.accounts)
    migrate(database)
    accounts = _open_accounts(
        database, options.accounts, on_progress=lambda n: bar.update(advance=n)
    )
    if options.preload:
        bar.stage(f"preloading {options.preload:,}", options.preload)
        _preload(
            database,
            accounts,
            workload=options.workload,
            count=options.preload,
            rng=rng,
            on_progress=lambda n: bar.update(advance=n),
        )
    warmup_s = options.warmup
    # What a long-running server does after start-up: move the objects made so far (modules,
    # SQLAlchemy's metadata, the setup's rows) out of the collector's reach, so its full
    # collections stop re-scanning them during the run. Measured: 5-10% more transfers a second.
    gc.collect()
    gc.freeze()
    stop = threading.Event()
    recorders = [_Recorder() for _ in range(options.clients)]
    with ledger.Batcher(database.writer, name="bench-batcher") as batcher:
        threads = [
            threading.Thread(
                target=_client,
                args=(batcher, accounts),
                kwargs={
                    "workload": options.workload,
                    "rng": random.Random(options.seed * 1_000_003 + i),
                    "stop": stop,
                    "recorder": recorders[i],
                },
                name=f"bench-client-{i}",
                daemon=True,
            )
            for i in range(options.clients)
        ]
        bar.stage(f"{options.workload}, {options.clients} clients", warmup_s + options.seconds)
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        window_start = started + warmup_s
        window_end = window_start + options.seconds
        _wait_until(window_start, started, bar, "warming up")
        stats_start, cpu_start_s = batcher.stats, time.process_time()
        _wait_until(window_end, started, bar, "measuring")
        stats_end, cpu_end_s = batcher.stats, time.process_time()
        stop.set()
        for thread in threads:
            thread.join()

    names = ("create_hold", "post_hold") if options.workload == "holds" else ("transfer",)
    latencies: list[list[float]] = [[] for _ in names]
    all_latencies: list[float] = []
    failed = 0
    first_ids = [r.first_id for r in recorders if r.first_id is not None]
    # Ids are gap-free and in commit order: the run's first transfer follows the history.
    history = min(first_ids) - 1 if first_ids else 0
    for recorder in recorders:
        for kind, finished, latency in recorder.samples:
            if window_start <= finished < window_end:
                latencies[kind].append(latency)
                all_latencies.append(latency)
        failed += sum(1 for at in recorder.failed if window_start <= at < window_end)
    operations = [
        _figures(name, values, options.seconds)
        for name, values in zip(names, latencies, strict=True)
    ]
    overall = _figures("all", all_latencies, options.seconds)
    batches = stats_end.batches - stats_start.batches
    groups = stats_end.groups - stats_start.groups

    bar.stage("verifying the books", 1)
    verify_started = time.perf_counter()
    with database.snapshot() as session:
        report = ledger.verify(session)
    verify_s = time.perf_counter() - verify_started
    bar.update(completed=1)
    problems = [p for check in report.checks for p in check.problems]
    return BenchResult(
        workload=options.workload,
        database=database.dialect,
        durability=_durability(database),
        clients=options.clients,
        seconds=options.seconds,
        warmup_s=warmup_s,
        accounts=options.accounts,
        preload=options.preload,
        history_transfers=history,
        transfers=overall.count,
        transfers_per_s=overall.per_s,
        latency_p50_ms=overall.latency_p50_ms,
        latency_p99_ms=overall.latency_p99_ms,
        failed=failed,
        batches=batches,
        batch_size_mean=groups / batches if batches else 0.0,
        cpu_us_per_transfer=(cpu_end_s - cpu_start_s) / overall.count * 1e6
        if overall.count
        else 0.0,
        operations=operations,
        verified=report.ok,
        verify_s=verify_s,
        problems=problems,
    )


_SQLITE_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _durability(database: Database) -> str:
    with database.engine.connect() as conn:
        if database.dialect == "postgresql":
            commit = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
            fsync = conn.exec_driver_sql("SHOW fsync").scalar()
            return f"synchronous_commit={commit}, fsync={fsync}"
        level = int(conn.exec_driver_sql("PRAGMA synchronous").scalar() or 0)
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        return f"journal_mode={mode}, synchronous={_SQLITE_SYNCHRONOUS.get(level, str(level))}"


def _wait_until(deadline: float, started: float, bar: _Progress, note: str) -> None:
    while True:
        now = time.perf_counter()
        bar.update(completed=now - started, note=note)
        if now >= deadline:
            return
        time.sleep(min(PROGRESS_REFRESH_S, deadline - now))


__all__ = ["WORKLOADS", "BenchOptions", "BenchResult", "OperationFigures", "run_bench"]
