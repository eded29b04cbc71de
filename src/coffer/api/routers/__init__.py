"""One router per domain; `coffer.api.app.create_app` includes them under /api/v1."""
