"""KYC through the HTTP app: submit, approve, reject and resubmit; masking; every refusal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from coffer.kyc.service import kyc_status
from tests.api.harness import Api, assert_error, bearer, error_fields
from tests.gifts.test_send_gift import put_user
from tests.payments.helpers import assert_books_clean

NUMBER = "AB1234567890"
MASKED = "****7890"


def documents(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "full_name": "Asha Rao",
        "document_type": "passport",
        "document_number": NUMBER,
        "document_front_url": "https://files.example.com/u1/front.jpg",
        "document_back_url": "https://files.example.com/u1/back.jpg",
        "selfie_url": "http://files.example.com/u1/selfie.jpg",
        "address": "12 MG Road",
        "city": "Bengaluru",
        "state": "Karnataka",
        "postal_code": "560001",
    }
    body.update(override)
    return {k: v for k, v in body.items() if v is not None}


def submit(api: Api, user_id: str, **override: Any) -> Any:
    return api.client.post("/kyc", json=documents(**override), headers=api.user(user_id))


def decide(api: Api, user_id: str, decision: str, headers: dict[str, str], **body: Any) -> Any:
    return api.client.post(f"/admin/kyc/{user_id}/{decision}", json=body, headers=headers)


def status_of(api: Api, user_id: str) -> str:
    with api.database.read() as session:
        return kyc_status(session, user_id)


def audit(api: Api, **filters: str) -> list[dict[str, Any]]:
    response = api.client.get("/admin/audit-log", params=filters, headers=api.admin())
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def kyc_events(api: Api, user_id: str) -> list[dict[str, Any]]:
    events = api.client.get("/events", headers=api.user(user_id)).json()["data"]
    return [e["data"] for e in events if e["type"] == "kyc.updated"]


def test_submit_then_approve(api: Api) -> None:
    before = api.client.get("/kyc", headers=api.user("u1"))
    assert before.status_code == 200 and before.json() == {"status": "not_submitted"}
    assert api.client.get("/me", headers=api.user("u1")).json()["kyc_status"] == "not_submitted"

    made = submit(api, "u1")
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "submitted"
    assert made.json()["document_number"] == MASKED
    seen = api.client.get("/kyc", headers=api.user("u1")).json()
    assert seen["status"] == "submitted" and seen["document_number"] == MASKED
    assert seen["document_front_url"] == "https://files.example.com/u1/front.jpg"
    assert "reason" not in seen
    assert status_of(api, "u1") == "submitted"

    queue = api.client.get("/admin/kyc?status=submitted", headers=api.admin()).json()
    assert [(k["user_id"], k["document_number"]) for k in queue["data"]] == [("u1", NUMBER)]
    one = api.client.get("/admin/kyc/u1", headers=api.admin()).json()
    assert one["document_number"] == NUMBER and one["submissions"] == 1

    operator = api.new_key("admin", label="kyc desk")
    approved = decide(api, "u1", "approve", bearer(operator.key), reason="documents match")
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "approved" and body["decided_by"] == operator.record.id
    assert body["document_number"] == NUMBER  # the admin's own view
    assert status_of(api, "u1") == "approved"
    me = api.client.get("/me", headers=api.user("u1")).json()
    assert me["kyc_status"] == "approved"
    mine = api.client.get("/kyc", headers=api.user("u1")).json()
    assert mine["status"] == "approved" and "reason" not in mine  # the operator's note stays theirs

    (entry,) = audit(api, action="kyc.approve")
    assert entry["actor"] == operator.record.id
    assert (entry["subject_type"], entry["subject_id"]) == ("user", "u1")
    assert entry["reason"] == "documents match"
    assert entry["details"]["document_number"] == MASKED
    assert kyc_events(api, "u1") == [{"status": "submitted"}, {"status": "approved"}]

    # Approved is final: no resubmission, no second decision; nothing changes.
    assert_error(submit(api, "u1"), 409, "invalid_state")
    assert_error(decide(api, "u1", "approve", api.admin()), 409, "invalid_state")
    assert_error(decide(api, "u1", "reject", api.admin(), reason="no"), 409, "invalid_state")
    assert status_of(api, "u1") == "approved"
    assert len(audit(api)) == 1
    assert len(kyc_events(api, "u1")) == 2
    assert_books_clean(api)


def test_reject_shows_the_reason_and_the_user_may_submit_again(api: Api) -> None:
    assert submit(api, "u2").status_code == 201
    # A rejection needs a reason: missing, empty or blank is a 422 that changes nothing.
    assert "body.reason" in error_fields(decide(api, "u2", "reject", api.admin()))
    assert_error(decide(api, "u2", "reject", api.admin(), reason=""), 422, "validation_error")
    assert_error(decide(api, "u2", "reject", api.admin(), reason="   "), 422, "validation_error")
    assert_error(
        decide(api, "u2", "reject", api.admin(), reason="x" * 501), 422, "validation_error"
    )
    assert status_of(api, "u2") == "submitted" and audit(api) == []

    rejected = decide(api, "u2", "reject", api.admin(), reason="the selfie is blurred")
    assert rejected.status_code == 200, rejected.text
    mine = api.client.get("/kyc", headers=api.user("u2")).json()
    assert mine["status"] == "rejected" and mine["reason"] == "the selfie is blurred"
    assert api.client.get("/me", headers=api.user("u2")).json()["kyc_status"] == "rejected"
    assert_error(decide(api, "u2", "approve", api.admin()), 409, "invalid_state")
    (entry,) = audit(api, action="kyc.reject")
    assert entry["reason"] == "the selfie is blurred"

    again = submit(api, "u2", selfie_url="https://files.example.com/u2/selfie-2.jpg")
    assert again.status_code == 201, again.text
    mine = api.client.get("/kyc", headers=api.user("u2")).json()
    assert mine["status"] == "submitted" and "reason" not in mine
    assert mine["selfie_url"] == "https://files.example.com/u2/selfie-2.jpg"
    admin_view = api.client.get("/admin/kyc/u2", headers=api.admin()).json()
    assert admin_view["submissions"] == 2 and admin_view["reason"] is None
    assert_error(submit(api, "u2"), 409, "invalid_state")  # while submitted
    approved = decide(api, "u2", "approve", api.admin())  # no body: the reason is optional
    assert approved.status_code == 200, approved.text
    assert [e["status"] for e in kyc_events(api, "u2")] == [
        "submitted",
        "rejected",
        "submitted",
        "approved",
    ]
    assert kyc_events(api, "u2")[1]["reason"] == "the selfie is blurred"


def test_the_document_number_is_masked_everywhere_but_the_admin_views(api: Api) -> None:
    assert NUMBER not in submit(api, "u3").text
    decide(api, "u3", "reject", api.admin(), reason="expired document")
    user_views = [
        api.client.get("/kyc", headers=api.user("u3")),
        api.client.get("/me", headers=api.user("u3")),
        api.client.get("/events", headers=api.user("u3")),
        api.client.get("/users/u3", headers=api.service()),
        api.client.get("/admin/audit-log", headers=api.admin()),
    ]
    for response in user_views:
        assert response.status_code == 200, response.text
        assert NUMBER not in response.text, response.request.url
    assert MASKED in user_views[0].text
    assert NUMBER in api.client.get("/admin/kyc", headers=api.admin()).text
    assert NUMBER in api.client.get("/admin/kyc/u3", headers=api.admin()).text


def test_roles(api: Api) -> None:
    submit(api, "u4")
    for headers in (api.service(), api.admin()):
        assert_error(api.client.get("/kyc", headers=headers), 403, "forbidden")
        assert_error(api.client.post("/kyc", json=documents(), headers=headers), 403, "forbidden")
    for headers in (api.service(), api.user("u4")):
        assert_error(api.client.get("/admin/kyc", headers=headers), 403, "forbidden")
        assert_error(api.client.get("/admin/kyc/u4", headers=headers), 403, "forbidden")
        assert_error(decide(api, "u4", "approve", headers), 403, "forbidden")
        assert_error(decide(api, "u4", "reject", headers, reason="no"), 403, "forbidden")
    assert_error(api.client.get("/kyc"), 401, "unauthenticated")
    assert_error(api.client.post("/admin/kyc/u4/approve", json={}), 401, "unauthenticated")
    assert status_of(api, "u4") == "submitted" and audit(api) == []


def test_unknown_user_is_404_and_one_without_a_submission_409(api: Api) -> None:
    assert_error(decide(api, "ghost", "approve", api.admin()), 404, "not_found")
    assert_error(decide(api, "ghost", "reject", api.admin(), reason="no"), 404, "not_found")
    assert_error(api.client.get("/admin/kyc/ghost", headers=api.admin()), 404, "not_found")
    put_user(api, "quiet")
    details = assert_error(decide(api, "quiet", "approve", api.admin()), 409, "invalid_state")
    assert details == {"status": "not_submitted"}
    assert status_of(api, "quiet") == "not_submitted" and audit(api) == []


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"document_front_url": "ftp://files.example.com/front.jpg"}, "document_front_url"),
        ({"selfie_url": "javascript:alert(1)"}, "selfie_url"),
        ({"selfie_url": "not a url"}, "selfie_url"),
        ({"document_back_url": "https://e.com/" + "a" * 1024}, "document_back_url"),
        ({"full_name": "x" * 129}, "full_name"),
        ({"full_name": ""}, "full_name"),
        ({"address": "x" * 257}, "address"),
        ({"city": "x" * 129}, "city"),
        ({"state": "x" * 129}, "state"),
        ({"postal_code": "5" * 17}, "postal_code"),
        ({"document_number": "1234"}, "document_number"),  # masking would show all of it
        ({"document_number": "x" * 65}, "document_number"),
        ({"document_type": "Passport!"}, "document_type"),
        ({"full_name": None}, "full_name"),  # missing
        ({"selfie_url": 42}, "selfie_url"),
    ],
)
def test_bad_submissions_are_422_and_change_nothing(
    api: Api, override: dict[str, Any], field: str
) -> None:
    response = submit(api, "u5", **override)
    assert f"body.{field}" in error_fields(response), response.text
    assert status_of(api, "u5") == "not_submitted"
    assert kyc_events(api, "u5") == []


def test_an_unknown_field_is_422(api: Api) -> None:
    response = api.client.post(
        "/kyc", json={**documents(), "status": "approved"}, headers=api.user("u6")
    )
    assert_error(response, 422, "validation_error")
    assert status_of(api, "u6") == "not_submitted"


def test_the_admin_queue_pages_newest_first_and_filters(api: Api) -> None:
    for user_id in ("q1", "q2", "q3"):
        assert submit(api, user_id).status_code == 201
    decide(api, "q2", "reject", api.admin(), reason="mismatch")
    first = api.client.get("/admin/kyc?limit=2", headers=api.admin()).json()
    assert [k["user_id"] for k in first["data"]] == ["q3", "q2"] and first["has_more"]
    rest = api.client.get(
        f"/admin/kyc?limit=2&cursor={first['next_cursor']}", headers=api.admin()
    ).json()
    assert [k["user_id"] for k in rest["data"]] == ["q1"] and not rest["has_more"]
    assert rest["next_cursor"] is None
    pending = api.client.get("/admin/kyc?status=submitted", headers=api.admin()).json()
    assert [k["user_id"] for k in pending["data"]] == ["q3", "q1"]
    none = api.client.get("/admin/kyc?status=not_submitted", headers=api.admin()).json()
    assert none["data"] == []
    assert_error(
        api.client.get("/admin/kyc?status=odd", headers=api.admin()), 422, "validation_error"
    )
    assert_error(
        api.client.get("/admin/kyc?cursor=bm90LWEtY3Vyc29y", headers=api.admin()),
        422,
        "validation_error",
    )


def test_parallel_decisions_on_one_submission_one_wins(api: Api) -> None:
    assert submit(api, "race").status_code == 201

    def one(i: int) -> int:
        if i % 2:
            return int(decide(api, "race", "approve", api.admin()).status_code)
        return int(decide(api, "race", "reject", api.admin(), reason="no").status_code)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(8)))
    assert sorted(statuses) == [200] + [409] * 7, statuses
    assert len(audit(api)) == 1
    assert len(kyc_events(api, "race")) == 2  # submitted, then the one decision
