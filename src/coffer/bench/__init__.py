"""`coffer bench`: the ledger through group commit (`ledger`, with its setup `ledger_setup` and
its report `ledger_report`), and the HTTP API over loopback (`http`, with its load generator
`http_client` and the bare-FastAPI floor `floor`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coffer.bench.ledger import WORKLOADS, BenchOptions, run_bench
    from coffer.bench.ledger_report import BenchResult, OperationFigures

__all__ = ["WORKLOADS", "BenchOptions", "BenchResult", "OperationFigures", "run_bench"]
_REPORTED = frozenset({"BenchResult", "OperationFigures"})  # ledger_report's; the rest ledger's


def __getattr__(name: str) -> Any:
    # Imported on first use: the load generator (`http_client`) lives in this package and must
    # start without the ledger, SQLAlchemy and rich.
    if name in __all__:
        from coffer.bench import ledger, ledger_report

        return getattr(ledger_report if name in _REPORTED else ledger, name)
    raise AttributeError(name)
