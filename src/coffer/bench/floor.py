"""The floor of `coffer bench --http`: a bare FastAPI app with one `async def` route returning a
static list, served by uvicorn like `coffer serve`. What no Coffer request can beat."""

from __future__ import annotations

from fastapi import FastAPI

ITEMS = [{"id": "starter", "diamonds": 100}, {"id": "popular", "diamonds": 550}]

app = FastAPI()


@app.get("/floor")
async def floor() -> list[dict[str, object]]:
    return ITEMS
