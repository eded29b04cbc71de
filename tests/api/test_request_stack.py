"""The request stack's cost, checked by structure (never by time): which dependencies a route
resolves in the thread pool. FastAPI runs a plain `def` dependency or route in a worker thread,
a hop there and back for each; pure ones are `async def`."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from coffer.api.routers import config, wallet
from tests.api.harness import Api


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _route(router: APIRouter, path: str) -> APIRoute:
    return next(r for r in router.routes if isinstance(r, APIRoute) and r.path == path)


def _sync_calls(route: APIRoute) -> list[str]:
    """The dependencies of `route` that FastAPI would run in the thread pool."""
    sync = []
    for call in _calls(route.dependant):
        target = call if inspect.isfunction(call) else type(call).__call__
        if not inspect.iscoroutinefunction(target):
            sync.append(getattr(call, "__name__", repr(call)))
    return sync


def test_balance_resolves_its_caller_without_the_thread_pool() -> None:
    # The principal (a user token: pure computation), the role check and the database getter.
    assert _sync_calls(_route(wallet.router, "/wallet/balance")) == []


def test_static_lists_never_leave_the_event_loop(api: Api) -> None:
    for path in ("/packages", "/gifts/catalog", "/plans"):
        route = _route(config.router, path)
        assert _sync_calls(route) == []
        assert inspect.iscoroutinefunction(route.endpoint)
        first, again = api.client.get(path), api.client.get(path)
        assert first.status_code == 200 and first.json()["has_more"] is False
        assert again.json() == first.json()


def test_a_user_token_and_an_api_key_still_authenticate(api: Api) -> None:
    assert api.client.get("/wallet/balance", headers=api.user("u1")).status_code == 200
    assert (
        api.client.put("/users/u2", json={"display_name": "Two"}, headers=api.service()).status_code
        == 200
    )
    assert (
        api.client.get("/wallet/balance", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
