"""Control characters never get past the edge (API.md, "Errors").

One pure ASGI middleware, before routing, checks every request once:
- the path and the query string (percent-decoded) may hold no C0 control character
  (U+0000-U+001F) and no DEL (U+007F): ids, cursors and filters have no use for them, and a NUL
  is what PostgreSQL refuses in text (a 500, and uvicorn then drops the keep-alive connection);
- JSON body strings (keys and values) may hold none of them either, except TAB, LF and CR, which
  free text (a refund reason, a display name) may legitimately carry and every database stores;
  ids in bodies are kept to their own patterns by their schemas, which exclude these three too.
  Nor may they hold a lone surrogate escape (`"\\ud800"`), which no database can encode.
Anything else is a 422 `validation_error` whose details name the field, and nothing runs.

Cost: the common case is one regular-expression search over the raw query and one over the raw
body, with no parsing; only a body the search flags (an escape or a DEL byte somewhere) is parsed
here, to name the field or to find that the escape was harmless (`"\\\\u0000"` is a backslash).
Webhook bodies are exempt: they are the providers' signed bytes, checked and stored as they
came. Bodies are capped at `BODY_BYTES_MAX` (413), since this buffers them.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coffer.api.errors import error_response

BODY_BYTES_MAX = 1_048_576
WEBHOOKS_PATH_PART = "/webhooks/"
FIELDS_MAX = 20  # how many offending fields one answer names

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_QUERY = re.compile(rb"[\x00-\x1f\x7f]|%(?:[01][0-9a-fA-F]|7[fF])")
# Over-approximates what json.loads could turn into a refused character: a \u escape of a
# control character or a surrogate, a \b or \f escape, or a raw DEL byte.
_SUSPECT_IN_JSON = re.compile(rb"\\u(?:00[01][0-9a-fA-F]|007[fF]|[dD][89a-fA-F])|\\[bf]|\x7f")
_FREE_TEXT_ALLOWED = frozenset("\t\n\r")


def _bad_text(value: str) -> bool:
    for ch in value:
        code = ord(ch)
        if (code < 0x20 and ch not in _FREE_TEXT_ALLOWED) or code == 0x7F:
            return True
        if 0xD800 <= code <= 0xDFFF:  # json.loads keeps a lone surrogate as one
            return True
    return False


def _body_fields(value: Any, location: str, found: list[str]) -> None:
    if len(found) >= FIELDS_MAX:
        return
    if isinstance(value, str):
        if _bad_text(value):
            found.append(location)
    elif isinstance(value, dict):
        for key, item in value.items():
            if _bad_text(key):
                found.append(location)
                continue
            _body_fields(item, f"{location}.{key}", found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _body_fields(item, f"{location}.{index}", found)


def body_problems(body: bytes) -> list[str]:
    """The body fields holding a refused character (`body.reason`, ...); [] for none."""
    if not _SUSPECT_IN_JSON.search(body):
        return []
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []  # not JSON: the route's own parsing answers it
    found: list[str] = []
    _body_fields(parsed, "body", found)
    return found


def query_problems(query_string: bytes) -> list[str]:
    """The query parameters holding a control character (`query.cursor`, ...); [] for none."""
    if not _CONTROL_IN_QUERY.search(query_string):
        return []
    found = []
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        # parse_qsl decoded the percent escapes; latin-1 kept every raw byte as one character.
        if _CONTROL.search(name):
            found.append("query")
        elif _CONTROL.search(value):
            found.append(f"query.{name}")
    return found[:FIELDS_MAX] or ["query"]


def _refusal(fields: list[str]) -> Any:
    return error_response(
        "validation_error",
        "the request holds a control character where none may be",
        {
            "fields": [
                {
                    "field": field,
                    "message": "control characters are not allowed",
                    "type": "control_character",
                }
                for field in fields
            ]
        },
    )


class RefuseControlCharacters:
    """The ASGI middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        fields = ["path"] if _CONTROL.search(path) else []
        fields += query_problems(scope.get("query_string", b""))
        if scope["type"] == "websocket":
            if fields:
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        if fields:
            await _refusal(fields)(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS") or WEBHOOKS_PATH_PART in path:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away: nobody to answer
        if len(body) > BODY_BYTES_MAX:
            response = error_response(
                "payload_too_large", f"a request body is at most {BODY_BYTES_MAX} bytes"
            )
            await response(scope, receive, send)
            return
        fields = body_problems(body)
        if fields:
            await _refusal(fields)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (cut short once it is over `BODY_BYTES_MAX`); None if the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > BODY_BYTES_MAX or not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # afterwards: the client's disconnect, as the server sends it

    return replayed


__all__ = ["BODY_BYTES_MAX", "RefuseControlCharacters", "body_problems", "query_problems"]
