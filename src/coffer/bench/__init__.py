"""`coffer bench`: the ledger through group commit (`ledger`), and the HTTP API over loopback
(`http`, with its load generator `http_client` and the bare-FastAPI floor `floor`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coffer.bench.ledger import (
        WORKLOADS,
        BenchOptions,
        BenchResult,
        OperationFigures,
        run_bench,
    )

__all__ = ["WORKLOADS", "BenchOptions", "BenchResult", "OperationFigures", "run_bench"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the load generator (`http_client`) lives in this package and must
    # start without the ledger, SQLAlchemy and rich.
    if name in __all__:
        from coffer.bench import ledger

        return getattr(ledger, name)
    raise AttributeError(name)
