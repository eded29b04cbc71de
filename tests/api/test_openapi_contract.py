"""Issue 7 item 9: the OpenAPI document is the contract.

Schemathesis reads `/openapi.json` from the app in process (ASGI, no server) and sends every
operation generated requests, valid and invalid, as a user (for `/wallet` and `/me`) or with an
admin key (everything else). Every answer must be no 5xx, a status the operation declares, and a
body of the declared content type conforming to the declared schema. Bounded: a fixed number of
examples per operation, derandomised, on SQLite (the same app code runs on PostgreSQL; the
driver-specific input checks are item 6's tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coffer.api.app import create_app
from coffer.db import Database, migrate
from tests.api.harness import Api, make_api

EXAMPLES_PER_OPERATION = 25
USER_PATHS = ("/api/v1/wallet", "/api/v1/me")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def contract_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    path: Path = tmp_path_factory.mktemp("contract") / "coffer.db"
    database = Database.connect(f"sqlite:///{path}?synchronous=NORMAL")
    migrate(database)
    try:
        with make_api(database) as api:
            yield api
    finally:
        database.dispose()


def _schema() -> Any:
    """The document as the app serves it. It depends on no settings and no rows, so an app on an
    unopened in-memory database serves the same one; the cases then run against `contract_api`."""
    config = schemathesis.Config()
    config.projects.default.generation.update(
        modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
        max_examples=EXAMPLES_PER_OPERATION,
        deterministic=True,
    )
    app = create_app(database=Database.connect("sqlite:///unopened.db"))
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


schema = _schema()


@schema.parametrize()
def test_item9_every_answer_is_declared_and_conforms(case: Any, contract_api: Api) -> None:
    path = case.operation.path
    user = path.startswith(USER_PATHS)
    headers = contract_api.user("contract-user") if user else contract_api.admin()
    case.call_and_validate(headers=headers, checks=CHECKS, app=contract_api.coffer.app)


def test_item9_the_document_states_the_constraints_the_server_enforces(api: Api) -> None:
    document = api.client.get("http://testserver/openapi.json").json()
    components = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            errors = [status for status in responses if status[0] in "45"]
            assert "422" in errors and "500" in errors, (method, path)
            for status in errors:
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, status)
            if not path.startswith(("/healthz", "/api/v1/healthz", "/api/v1/webhooks")) and not (
                path.endswith(("/config/public", "/packages", "/gifts/catalog", "/plans"))
            ):
                assert {"401", "403", "429"} <= set(errors), (method, path)
    topup = components["TopupIn"]
    assert topup["oneOf"] == [{"required": ["package_id"]}, {"required": ["diamonds"]}]
    assert topup["properties"]["diamonds"]["type"] == "integer"
    assert topup["properties"]["diamonds"]["exclusiveMinimum"] == 0
    assert "pattern" in topup["properties"]["package_id"]
    assert components["VerifyIn"]["properties"]["order_id"]["pattern"] == r"^pay_[0-9a-z]{1,40}$"
    topup_operation = document["paths"]["/api/v1/wallet/topup"]["post"]
    (key,) = [p for p in topup_operation["parameters"] if p["name"] == "Idempotency-Key"]
    key_schema = next(s for s in key["schema"]["anyOf"] if s.get("type") == "string")
    assert key_schema["pattern"] and key_schema["maxLength"] == 257
    refund = document["paths"]["/api/v1/admin/payment-orders/{order_id}/refund"]["post"]
    (order_id,) = [p for p in refund["parameters"] if p["name"] == "order_id"]
    assert order_id["schema"]["pattern"] == r"^pay_[0-9a-z]{1,40}$"
