"""Fixtures shared by the whole suite. Database tests run on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from coffer.db import Database, migrate
from tests.support import databases

BACKENDS = ("sqlite", "postgresql")

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# CI must fail in seconds and the same way every time, on a busy machine too:
# - no explain phase: it replays the failure under line tracing, which on PostgreSQL ran the
#   stateful ledger test past pytest-timeout's 300 s before anything was reported;
# - no shrink phase: shrinking a 50-step state machine replays it hundreds of times; CI reports
#   the failure as found (with its blob for `@reproduce_failure`), and the same run shrinks
#   locally, where `HYPOTHESIS_PROFILE=ci-shrink` (or the default profile) restores shrinking;
# - derandomized: every CI run draws the same examples (and keeps no example database), so a
#   failure in CI is a failure on every rerun, never "flaky".
CI_PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    derandomize=True,
    database=None,
    phases=CI_PHASES,
    print_blob=True,
)
settings.register_profile(
    "ci-shrink", parent=settings.get_profile("ci"), phases=(*CI_PHASES, Phase.shrink)
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "default")
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=(*BACKENDS, "all"),
        default=os.environ.get("COFFER_TEST_DB", "all"),
        help="which databases the database tests run on (default: all)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--db")
        backends = BACKENDS if chosen == "all" else (chosen,)
        metafunc.parametrize("backend", backends, scope="session")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin = databases.postgres_admin_url()
    reason = databases.postgres_reachable(admin)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and is unreachable: {reason}")
        pytest.skip(f"PostgreSQL unreachable ({reason}); set COFFER_TEST_POSTGRES_URL")
    url = databases.create_postgres_database(admin)
    yield url
    databases.drop_postgres_database(admin, url)


@pytest.fixture(scope="session")
def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> str:
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    path: Path = tmp_path_factory.mktemp("sqlite") / "coffer.db"
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def migrated(database_url: str) -> Iterator[Database]:
    database = Database.connect(database_url)
    migrate(database)
    yield database
    database.dispose()


@pytest.fixture
def db(migrated: Database) -> Database:
    """A migrated, empty database (SQLite or PostgreSQL), fresh for each test."""
    databases.reset(migrated)
    return migrated


@pytest.fixture
def api(db: Database) -> Iterator[Any]:
    """The whole app on the test database, with a client and callers of every kind
    (`tests/api/harness.py`)."""
    from tests.api.harness import make_api

    with make_api(db) as built:
        yield built
