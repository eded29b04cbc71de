"""The composition root: builds the database, providers and the HTTP app from settings."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from dataclasses import dataclass, field

import structlog
from fastapi import FastAPI
from sqlalchemy import MetaData

import coffer
from coffer import ledger
from coffer.api.app import create_app
from coffer.config import Settings
from coffer.db import Database, migrate
from coffer.db.base import metadata as app_metadata


def all_metadata() -> list[MetaData]:
    """Every table in Coffer, for migrations and schema checks.

    Each domain keeps its tables in its own `tables.py`; importing them all registers them on
    the shared metadata, so a new domain needs no line here.
    """
    for module in pkgutil.walk_packages(coffer.__path__, prefix="coffer."):
        if module.name.endswith(".tables"):
            importlib.import_module(module.name)
    return [ledger.metadata, app_metadata]


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )


@dataclass
class Coffer:
    settings: Settings
    database: Database
    app: FastAPI
    # Lines for the operator at start-up (e.g. a fresh database's one-time admin key).
    startup_notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.database.dispose()


def build(settings: Settings, *, run_migrations: bool = True) -> Coffer:
    database = Database.connect(settings.database_url)
    if run_migrations:
        migrate(database)
    app = create_app(database=database, settings=settings)
    return Coffer(settings=settings, database=database, app=app)
