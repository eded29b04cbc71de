"""Coffer: wallets, a double-entry ledger and payments for apps with an in-app currency."""

__version__ = "0.1.0"
