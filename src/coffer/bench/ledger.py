"""`coffer bench`: the ledger's throughput and latency through group commit, at steady state.

It opens its own accounts (owner ids under `coffer-bench:`, asset `BENCH`, so it can run against
a database that holds other data), funds them, optionally writes history untimed (`preload`;
both in `ledger_setup.py`), then runs `clients` threads for a warm-up and `seconds` of
measurement. Each client submits one operation at a time through one shared `ledger.Batcher`
and waits for it, so latency is what a request handler would see. At the end it proves the
books with `ledger.verify`; `ledger_report.py` holds what the run reports.

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
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from coffer import ledger
from coffer.bench.ledger_report import BenchResult, figures
from coffer.bench.ledger_setup import AMOUNT_MAX, BenchAccounts, open_accounts, preload
from coffer.db import Database, migrate
from coffer.ledger import PostHold, TransferRequest

WORKLOADS = ("uncontended", "hot", "holds")
HOLD_TIMEOUT_S = 3_600
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
    accounts: BenchAccounts,
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
    accounts = open_accounts(
        database, options.accounts, on_progress=lambda n: bar.update(advance=n)
    )
    if options.preload:
        bar.stage(f"preloading {options.preload:,}", options.preload)
        preload(
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
        figures(name, values, options.seconds)
        for name, values in zip(names, latencies, strict=True)
    ]
    overall = figures("all", all_latencies, options.seconds)
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


__all__ = ["WORKLOADS", "BenchOptions", "run_bench"]
