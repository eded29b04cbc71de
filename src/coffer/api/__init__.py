"""The HTTP API (API.md): FastAPI app, dependencies, error rendering, one router per domain."""
