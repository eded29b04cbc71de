"""Analytics: payment figures for operators (each defined once, in `payments`), and the alerts
raised when one crosses its threshold (`tasks`)."""

from coffer.analytics.payments import Report, payment_report, resolve_range, zone
from coffer.analytics.tasks import FloorCheck, check_success_floor

__all__ = ["FloorCheck", "Report", "check_success_floor", "payment_report", "resolve_range", "zone"]
