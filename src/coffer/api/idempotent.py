"""The `Idempotency-Key` header at the edge: one unit of work for the claim, the money move and
the stored answer (see `coffer.idempotency.service` for why it is one transaction).

A money-moving route takes `idem: Idempotent` and hands it the service call; it returns the
Response that `run` gives back (declare `response_model` and `status_code` on the decorator so
OpenAPI still describes the body):

    from coffer.api.idempotent import Idempotent

    @router.post("/wallet/send-gift", status_code=201, response_model=SendGiftOut)
    def send_gift(body: SendGiftIn, principal: UserPrincipal, idem: Idempotent) -> Response:
        return idem.run(
            status_code=201,
            work=lambda session: gifts.send_gift(session, sender_id=principal.user_id, ...),
        )

`work` gets the transaction's session, must do all its writes in it (not through a `Batcher`,
whose transaction is its own), and returns something JSON-able: a Pydantic model, a dict, a
list. Without the header it runs once in a unit of work as usual. With it:

- the same key and request from the same principal: the first answer, byte for byte, with
  `Idempotent-Replayed: true`; nothing runs again;
- the same key with another method, path, query or body: 409 `idempotency_conflict`;
- copies that arrive together: one runs, the rest wait for it and replay its answer;
- a failure (any error) stores nothing, so a retry with the same key runs again;
- a malformed key (empty, over 255 characters, not printable ASCII): 422 `validation_error`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from coffer import idempotency, ledger
from coffer.api.deps import AnyPrincipal, DatabaseDep
from coffer.auth import Principal
from coffer.db import Database, Writer
from coffer.idempotency import IdempotencyRecord
from coffer.kit.ids import derived_id, new_id

REPLAYED_HEADER = "Idempotent-Replayed"
JSON_MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class IdempotentRequest:
    """One request's idempotency context: who asked, with which key, for what."""

    database: Database
    principal: Principal
    key: str | None
    fingerprint: bytes
    method: str
    path: str

    def run(self, *, status_code: int, work: Callable[[Session], Any]) -> Response:
        """Run `work` once for this (principal, key) and answer `status_code` with its result."""
        if self.key is None:
            with self.database.unit_of_work() as session:
                body = render(work(session))
            return _response(status_code, JSON_MEDIA_TYPE, body)
        scope = self.principal.scope
        # A retry after the first answer committed needs no write transaction at all.
        replayed = self.replay()
        if replayed is not None:
            return replayed
        with self.database.unit_of_work() as session:
            earlier = idempotency.claim(
                session,
                scope=scope,
                key=self.key,
                fingerprint=self.fingerprint,
                method=self.method,
                path=self.path,
            )
            if earlier is not None:
                return self._replay(earlier)
            body = render(work(session))
            idempotency.record_response(
                session,
                scope=scope,
                key=self.key,
                status_code=status_code,
                content_type=JSON_MEDIA_TYPE,
                body=body,
            )
        # Reached only after the commit: the answer is sent once it is durable.
        return _response(status_code, JSON_MEDIA_TYPE, body)

    def unit(
        self, work: ledger.Work, *, status_code: int, shape: Callable[[Any], Any]
    ) -> ledger.Work:
        """`work` as the writer should commit it for this request: the key looked up under the
        ledger's write lock (a replay or a 409 answers without moving anything), the answer
        shaped from what the batch decided and stored with the key in the same commit.

            response = await writer.run_async(idem.unit(work, status_code=201, shape=Out.of))
        """
        inner_before, inner_after = work.before, work.after
        key, scope = self.key, self.principal.scope

        def before(session: Session) -> Any:
            if key is not None:
                earlier = idempotency.find(session, scope=scope, key=key)
                if earlier is not None:
                    return ledger.Done(self._replay(earlier))  # or IdempotencyConflict
            value = None if inner_before is None else inner_before(session)
            if isinstance(value, ledger.Done):
                # Nothing to do (e.g. settled already): answered, not stored, so a retry asks
                # again and gets the same.
                return ledger.Done(
                    _response(status_code, JSON_MEDIA_TYPE, render(shape(value.answer)))
                )
            return value

        def after(session: Session, value: Any, made: list[ledger.Transfer]) -> Response:
            result = made if inner_after is None else inner_after(session, value, made)
            body = render(shape(result))
            if key is not None:
                idempotency.record_answered(
                    session,
                    scope=scope,
                    key=key,
                    fingerprint=self.fingerprint,
                    method=self.method,
                    path=self.path,
                    status_code=status_code,
                    content_type=JSON_MEDIA_TYPE,
                    body=body,
                )
            return _response(status_code, JSON_MEDIA_TYPE, body)

        claims = work.claims if key is None else work.claims | {f"idempotency:{scope}:{key}"}
        needs_before = key is not None or inner_before is not None
        return ledger.Work(
            work.group, before=before if needs_before else None, after=after, claims=claims
        )

    async def commit(
        self,
        writer: Writer,
        plan: Callable[[], ledger.Work] | Awaitable[ledger.Work],
        *,
        status_code: int,
        shape: Callable[[Any], Any],
    ) -> Response:
        """The money-moving route's whole path: the plan (reads, checks, a provider call if it
        must), then its unit through the writer as this request's `unit`; the event loop holds
        no thread and no connection while the batch commits. A plain `plan()` runs in a worker
        thread; a plan that awaits its reads (`Database.read_async`) is awaited here.

            return await idem.commit(get_writer(request), lambda: escrows.plan_release(...),
                                     status_code=200, shape=EscrowEnvelope.of)
            return await idem.commit(get_writer(request), gifts.plan_send_gift(...),
                                     status_code=201, shape=SendGiftOut.of)
        """
        if inspect.isawaitable(plan):
            work = await plan
        else:
            work = await run_in_threadpool(plan)
        response: Response = await writer.run_async(
            self.unit(work, status_code=status_code, shape=shape)
        )
        return response

    def derived_id(self, prefix: str) -> str:
        """A new object's id: a function of (caller, key) when the request has a key, so a copy
        or a retry names the same object (and every ledger key derived from it replays)."""
        if self.key is None:
            return new_id(prefix)
        return derived_id(prefix, self.principal.scope, self.key)

    def replay(self) -> Response | None:
        """The stored answer if this key was already used for this request (409 if for another
        one), else None. For routes that do outside work (a provider call) before `run`:

            if (replayed := idem.replay()) is not None:
                return replayed
        """
        if self.key is None:
            return None
        with self.database.read() as session:
            earlier = idempotency.find(session, scope=self.principal.scope, key=self.key)
        return None if earlier is None else self._replay(earlier)

    def _replay(self, earlier: IdempotencyRecord) -> Response:
        record = idempotency.replayable(earlier, fingerprint=self.fingerprint)
        assert record.status_code is not None and record.body is not None
        return _response(
            record.status_code,
            record.content_type or JSON_MEDIA_TYPE,
            record.body,
            headers={REPLAYED_HEADER: "true"},
        )


def render(result: Any) -> bytes:
    """The exact bytes FastAPI would send for `result` as JSON."""
    return bytes(JSONResponse(content=jsonable_encoder(result)).body)


def _response(
    status_code: int, media_type: str, body: bytes, *, headers: dict[str, str] | None = None
) -> Response:
    return Response(content=body, status_code=status_code, media_type=media_type, headers=headers)


# The syntax `idempotency.parse_key` takes, as OpenAPI states it: 1 to 255 printable ASCII
# characters without quotes or backslashes, bare or as a quoted sf-string.
_KEY_CHARS = r"[ !#-\[\]-~]{1,255}"
KEY_PATTERN = f'^(?:{_KEY_CHARS}|"{_KEY_CHARS}")$'
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=idempotency.HEADER,
        pattern=KEY_PATTERN,
        max_length=idempotency.KEY_LENGTH_MAX + 2,
        description=(
            "Makes the request safe to retry: the same key and body from the same caller "
            "return the first answer and move nothing again (kept at least 24 h). "
            "1 to 255 printable ASCII characters without quotes or backslashes, e.g. a UUID."
        ),
    ),
]


async def idempotent_request(
    request: Request,
    principal: AnyPrincipal,
    database: DatabaseDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> IdempotentRequest:
    key = None if idempotency_key is None else idempotency.parse_key(idempotency_key)
    # FastAPI has already read the body to parse the route's model; this is the cached copy.
    body = await request.body()
    path = request.url.path
    return IdempotentRequest(
        database=database,
        principal=principal,
        key=key,
        fingerprint=idempotency.fingerprint(
            method=request.method, path=path, query=request.url.query, body=body
        ),
        method=request.method,
        path=path,
    )


Idempotent = Annotated[IdempotentRequest, Depends(idempotent_request)]

__all__ = [
    "KEY_PATTERN",
    "REPLAYED_HEADER",
    "IdempotencyKeyHeader",
    "Idempotent",
    "IdempotentRequest",
    "idempotent_request",
    "render",
]
