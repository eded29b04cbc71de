"""`coffer bench`: the ledger through group commit (`ledger`), and the HTTP API over loopback
(`http`, with its load generator `http_client` and the bare-FastAPI floor `floor`)."""

from coffer.bench.ledger import WORKLOADS, BenchOptions, BenchResult, OperationFigures, run_bench

__all__ = ["WORKLOADS", "BenchOptions", "BenchResult", "OperationFigures", "run_bench"]
