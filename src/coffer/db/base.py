"""The metadata every domain above the ledger defines its tables on (the ledger has its own)."""

from __future__ import annotations

from sqlalchemy import MetaData

from coffer.ledger.tables import NAMING_CONVENTION, UTCDateTime

metadata = MetaData(naming_convention=NAMING_CONVENTION)

__all__ = ["UTCDateTime", "metadata"]
