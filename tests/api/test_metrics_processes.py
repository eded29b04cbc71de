"""`GET /metrics` under `coffer serve --workers 2` (issue 11, item 7): whichever worker a scrape
reaches, it counts the requests every worker answered, from the fresh PROMETHEUS_MULTIPROC_DIR
`coffer serve` made for them and removes when it stops."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coffer import auth
from coffer.db import Database
from tests.api.harness import TEST_JWT_SECRET
from tests.support.servers import coffer_serve

pytestmark = pytest.mark.slow

ROUND = 40  # requests per round, each on a connection of its own (so either worker may take it)
ROUNDS_MAX = 10
HEALTHZ = {"route": "/api/v1/healthz", "method": "GET", "status": "200"}


def _healthz_count(base_url: str, admin_key: str) -> float:
    response = httpx.get(
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "coffer_http_requests_total" and sample.labels == HEALTHZ
    )


def _serving_pids(metrics_dir: Path) -> set[str]:
    # A labelled counter's file appears when a process first counts a request: one per worker
    # that answered one (the parent serves none).
    return {path.stem.rpartition("_")[2] for path in metrics_dir.glob("counter_*.db")}


def test_one_scrape_counts_the_requests_of_every_worker(db: Database, tmp_path: Path) -> None:
    url = db.engine.url.render_as_string(hide_password=False)
    with db.unit_of_work() as session:
        admin_key = auth.create_api_key(session, role="admin").key
    temp = tmp_path / "tmp"
    temp.mkdir()
    # TMPDIR: so the directory `coffer serve` makes for its workers is one this test can see.
    with coffer_serve(
        url, jwt_secret=TEST_JWT_SECRET, log_dir=tmp_path, env={"TMPDIR": str(temp)}, workers=2
    ) as server:
        (metrics_dir,) = temp.glob("coffer-metrics-*")
        # The start-up probes counted some health checks already; start from what is there.
        start = _healthz_count(server.base_url, admin_key)
        sent = 0

        def probe(_: int) -> None:
            assert httpx.get(f"{server.base_url}/healthz", timeout=30).status_code == 200

        with ThreadPoolExecutor(8) as pool:
            for _ in range(ROUNDS_MAX):
                list(pool.map(probe, range(ROUND)))
                sent += ROUND
                if len(_serving_pids(metrics_dir)) >= 2:
                    break
                time.sleep(0.2)
        assert len(_serving_pids(metrics_dir)) >= 2, "one worker answered everything"
        # Every scrape, whichever worker answers it, sees every request.
        for _ in range(4):
            assert _healthz_count(server.base_url, admin_key) == start + sent
    # The server removed its directory when it stopped.
    assert not metrics_dir.exists()
