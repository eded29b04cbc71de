"""`coffer demo`: a scripted tour of the whole product, through the real HTTP API.

On a fresh database it makes users and an agency, tops up through the sandbox provider, sends
gifts with their commission split, bills a call, funds and releases an escrow, pays out a host's
earnings, refunds an order with its clawback, sells a subscription, reads the audit trail and
verifies the books. Every request goes through the app a user hits (authentication,
Idempotency-Keys, the writer), over Starlette's in-process ASGI client, and every step checks
its figures against the rates the server publishes. The first step that fails stops the tour
and names itself; the caller turns that into the exit status.
"""

from coffer.demo.caller import StepFailed
from coffer.demo.run import run_demo
from coffer.demo.tour import Tour, TourResult

__all__ = ["StepFailed", "Tour", "TourResult", "run_demo"]
