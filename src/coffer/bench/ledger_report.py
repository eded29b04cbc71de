"""What a ledger bench run measured: its figures per operation and overall, as JSON or a table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table


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


def _percentile(sorted_values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(share * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def figures(name: str, latencies: list[float], seconds: float) -> OperationFigures:
    """The figures of one kind of operation from its latencies (sorted here, in place)."""
    latencies.sort()
    return OperationFigures(
        name=name,
        count=len(latencies),
        per_s=len(latencies) / seconds,
        latency_p50_ms=_percentile(latencies, 0.50) * 1000,
        latency_p99_ms=_percentile(latencies, 0.99) * 1000,
        latency_max_ms=(latencies[-1] * 1000) if latencies else 0.0,
    )


__all__ = ["BenchResult", "OperationFigures", "figures"]
