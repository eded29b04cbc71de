"""Operator alerts: raised by any domain in its own unit of work, listed at `GET /admin/alerts`."""

from coffer.alerts.service import Alert, list_alerts, raise_alert, resolve_alerts

__all__ = ["Alert", "list_alerts", "raise_alert", "resolve_alerts"]
