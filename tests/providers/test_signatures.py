"""Signatures against the vectors the official SDKs produced, and the rules the SDKs leave out.

Every case in `vectors/provider_signatures.json` is run: each valid input is accepted by our
verifier and by the SDK's, each listed change is rejected by both (and a case this file does
not know fails the test, so a new vector cannot be skipped silently).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import razorpay
import stripe
import stripe._webhook

from coffer.errors import InvalidSignature, ProviderDisabled
from coffer.providers import signatures

# -- Razorpay checkout (payment) signatures ---------------------------------------------------------

RazorpayPaymentCase = Callable[[dict[str, Any]], tuple[str, str, str, str]]

# Each change, applied to a vector: (order_id, payment_id, signature, key_secret).
RAZORPAY_PAYMENT_CASES: dict[str, RazorpayPaymentCase] = {
    "valid": lambda v: (
        v["razorpay_order_id"],
        v["razorpay_payment_id"],
        v["razorpay_signature"],
        v["key_secret"],
    ),
    "signature_last_hex_char_changed": lambda v: (
        v["razorpay_order_id"],
        v["razorpay_payment_id"],
        _flip_last_hex(v["razorpay_signature"]),
        v["key_secret"],
    ),
    "signature_uppercased": lambda v: (
        v["razorpay_order_id"],
        v["razorpay_payment_id"],
        v["razorpay_signature"].upper(),
        v["key_secret"],
    ),
    "payment_id_one_char_changed": lambda v: (
        v["razorpay_order_id"],
        _flip_last_char(v["razorpay_payment_id"]),
        v["razorpay_signature"],
        v["key_secret"],
    ),
    "order_and_payment_swapped": lambda v: (
        v["razorpay_payment_id"],
        v["razorpay_order_id"],
        v["razorpay_signature"],
        v["key_secret"],
    ),
    "wrong_key_secret": lambda v: (
        v["razorpay_order_id"],
        v["razorpay_payment_id"],
        v["razorpay_signature"],
        v["key_secret"] + "x",
    ),
}


def _flip_last_hex(value: str) -> str:
    return value[:-1] + ("0" if value[-1] != "0" else "1")


def _flip_last_char(value: str) -> str:
    return value[:-1] + ("A" if value[-1] != "A" else "B")


def _razorpay_payment_cases(vectors: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [
        (index, case, expected)
        for index, vector in enumerate(vectors["razorpay_payment_signature"])
        for case, expected in vector["sdk_verify_payment_signature"].items()
    ]


def test_every_razorpay_payment_case_is_known(vectors: dict[str, Any]) -> None:
    cases = {case for _, case, _ in _razorpay_payment_cases(vectors)}
    assert cases == set(RAZORPAY_PAYMENT_CASES)


@pytest.mark.parametrize("index", [0, 1])
def test_razorpay_payment_vectors(vectors: dict[str, Any], index: int) -> None:
    vector = vectors["razorpay_payment_signature"][index]
    assert (
        vector["signed_message"] == f"{vector['razorpay_order_id']}|{vector['razorpay_payment_id']}"
    )
    assert (
        signatures.sign_razorpay_payment(
            order_id=vector["razorpay_order_id"],
            payment_id=vector["razorpay_payment_id"],
            key_secret=vector["key_secret"],
        )
        == vector["razorpay_signature"]
    )
    for case, expected in vector["sdk_verify_payment_signature"].items():
        order_id, payment_id, signature, key_secret = RAZORPAY_PAYMENT_CASES[case](vector)
        ours = _outcome(
            signatures.verify_razorpay_payment,
            order_id=order_id,
            payment_id=payment_id,
            signature=signature,
            key_secret=key_secret,
        )
        sdk = _outcome(
            razorpay.Client(auth=("rzp_test_x", key_secret)).utility.verify_payment_signature,
            {
                "razorpay_order_id": order_id,
                "razorpay_payment_id": payment_id,
                "razorpay_signature": signature,
            },
        )
        want = "accepted" if expected == "accepted" else "rejected"
        assert (case, ours) == (case, want)
        assert (case, sdk) == (case, want), f"the SDK disagrees with the vector file on {case}"


# -- Razorpay webhook signatures ------------------------------------------------------------------

RAZORPAY_WEBHOOK_CASES = {
    "valid_str_body",
    "body_one_char_changed",
    "body_trailing_newline_added",
    "body_reserialized_json_dumps",
    "signature_last_hex_char_changed",
    "signature_uppercased",
    "signed_with_api_key_secret_instead",
    "bytes_body_passed",
}


def _razorpay_webhook_case(
    vectors: dict[str, Any], vector: dict[str, Any], case: str
) -> tuple[str, str, str]:
    """(body, signature, secret) for one change to a webhook vector."""
    body, signature, secret = (
        vector["raw_body"],
        vector["x_razorpay_signature"],
        vector["webhook_secret"],
    )
    if case == "body_one_char_changed":
        return body[:-2] + chr(ord(body[-2]) ^ 1) + body[-1], signature, secret
    if case == "body_trailing_newline_added":
        return body + "\n", signature, secret
    if case == "body_reserialized_json_dumps":
        return json.dumps(json.loads(body)), signature, secret
    if case == "signature_last_hex_char_changed":
        return body, _flip_last_hex(signature), secret
    if case == "signature_uppercased":
        return body, signature.upper(), secret
    if case == "signed_with_api_key_secret_instead":
        api_secret = vectors["razorpay_payment_signature"][0]["key_secret"]
        return body, signatures.hmac_sha256_hex(api_secret, body.encode()), secret
    assert case in ("valid_str_body", "bytes_body_passed")
    return body, signature, secret


def test_every_razorpay_webhook_case_is_known(vectors: dict[str, Any]) -> None:
    for vector in vectors["razorpay_webhook_signature"]:
        assert set(vector["sdk_verify_webhook_signature"]) == RAZORPAY_WEBHOOK_CASES


@pytest.mark.parametrize("index", [0, 1])
def test_razorpay_webhook_vectors(vectors: dict[str, Any], index: int) -> None:
    vector = vectors["razorpay_webhook_signature"][index]
    raw = vector["raw_body"].encode("utf-8")
    assert hashlib.sha256(raw).hexdigest() == vector["raw_body_sha256"]
    assert (
        signatures.sign_razorpay_webhook(raw, secret=vector["webhook_secret"])
        == vector["x_razorpay_signature"]
    )
    sdk = razorpay.Client(auth=("rzp_test_x", "unused")).utility
    for case, expected in vector["sdk_verify_webhook_signature"].items():
        body, signature, secret = _razorpay_webhook_case(vectors, vector, case)
        ours = _outcome(
            signatures.verify_razorpay_webhook,
            body.encode("utf-8"),
            signature=signature,
            secret=secret,
        )
        if case == "bytes_body_passed":
            # The SDK wants the body as str and fails on bytes; we verify bytes, as received.
            with pytest.raises(TypeError, match="encoding without a string argument"):
                sdk.verify_webhook_signature(body.encode("utf-8"), signature, secret)
            assert expected.startswith("error:TypeError")
            assert ours == "accepted"
            continue
        theirs = _outcome(sdk.verify_webhook_signature, body, signature, secret)
        want = "accepted" if expected == "accepted" else "rejected"
        assert (case, ours) == (case, want)
        assert (case, theirs) == (case, want), f"the SDK disagrees with the vector file on {case}"


# -- Stripe-Signature -----------------------------------------------------------------------------

STRIPE_CASES = {
    "now=t",
    "now=t+299",
    "now=t+300",
    "now=t+300.5",
    "now=t+301",
    "now=t-3600 (timestamp in future)",
    "tampered_body",
    "body_as_bytes",
    "wrong_secret",
    "v1_last_hex_char_changed",
    "header_with_space_after_comma",
    "only_v0_scheme",
    "extra_v0_appended",
}
# Where Coffer is deliberately stricter than the SDK: a timestamp an hour in the future is
# refused (the SDK only refuses stale ones), so a delivery signed ahead cannot be replayed later.
STRIPE_STRICTER = {"now=t-3600 (timestamp in future)": "rejected"}


def _stripe_case(vector: dict[str, Any], case: str) -> tuple[bytes, str, str, float]:
    """(body, header, secret, now) for one change to a Stripe vector."""
    t = vector["timestamp"]
    body = vector["raw_body"].encode("utf-8")
    header, secret, v1 = vector["stripe_signature_header"], vector["webhook_secret"], vector["v1"]
    offsets = {
        "now=t": 0,
        "now=t+299": 299,
        "now=t+300": 300,
        "now=t+300.5": 300.5,
        "now=t+301": 301,
    }
    if case in offsets:
        return body, header, secret, t + offsets[case]
    if case == "now=t-3600 (timestamp in future)":
        return body, header, secret, t - 3600
    if case == "tampered_body":
        tampered = body.replace(b'"livemode": false', b'"livemode": true ', 1)
        assert tampered != body
        return tampered, header, secret, t
    if case == "wrong_secret":
        return body, header, secret + "x", t
    if case == "v1_last_hex_char_changed":
        return body, f"t={t},v1={_flip_last_hex(v1)}", secret, t
    if case == "header_with_space_after_comma":
        return body, f"t={t}, v1={v1}", secret, t
    if case == "only_v0_scheme":
        return body, f"t={t},v0={v1}", secret, t
    if case == "extra_v0_appended":
        return body, f"{header},v0={'0' * 64}", secret, t
    assert case == "body_as_bytes"
    return body, header, secret, t


def test_every_stripe_case_is_known(vectors: dict[str, Any]) -> None:
    for vector in vectors["stripe_webhook_signature"]["vectors"]:
        assert set(vector["construct_event_default_tolerance_300"]) == STRIPE_CASES


@pytest.mark.parametrize("index", [0, 1])
def test_stripe_vectors(
    vectors: dict[str, Any], index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = vectors["stripe_webhook_signature"]
    assert section["default_tolerance_seconds"] == signatures.STRIPE_TOLERANCE_S
    vector = section["vectors"][index]
    raw = vector["raw_body"].encode("utf-8")
    t = vector["timestamp"]
    assert hashlib.sha256(raw).hexdigest() == vector["raw_body_sha256"]
    assert vector["signed_payload_prefix"] == f"{t}."
    assert (
        signatures.sign_stripe(raw, secrets=vector["webhook_secret"], timestamp=t)
        == vector["stripe_signature_header"]
    )
    expected_v1 = hmac.new(vector["webhook_secret"].encode(), f"{t}.".encode() + raw, "sha256")
    assert expected_v1.hexdigest() == vector["v1"]

    for case, expected in vector["construct_event_default_tolerance_300"].items():
        body, header, secret, now = _stripe_case(vector, case)
        monkeypatch.setattr(stripe._webhook, "time", SimpleNamespace(time=lambda now=now: now))
        sdk_body: str | bytes = body if case == "body_as_bytes" else body.decode("utf-8")
        theirs = _outcome(stripe.Webhook.construct_event, sdk_body, header, secret)
        ours = _outcome(signatures.verify_stripe, body, header=header, secret=secret, now_s=now)
        sdk_want = expected.split(":")[0]
        assert (case, theirs) == (case, sdk_want), (
            f"the SDK disagrees with the vector file on {case}"
        )
        assert (case, ours) == (case, STRIPE_STRICTER.get(case, sdk_want))

    # The SDK turns the age check off with tolerance None or 0; Coffer has no such switch.
    ten_days_later = t + 10 * 86_400
    monkeypatch.setattr(stripe._webhook, "time", SimpleNamespace(time=lambda: ten_days_later))
    header = vector["stripe_signature_header"]
    assert vector["verify_header_tolerance_None_10_days_old"] == "accepted"
    assert stripe.WebhookSignature.verify_header(raw, header, vector["webhook_secret"], None)
    assert vector["construct_event_tolerance_0_10_days_old"].startswith("accepted")
    stripe.Webhook.construct_event(raw, header, vector["webhook_secret"], tolerance=0)
    with pytest.raises(InvalidSignature, match="older than 300 s"):
        signatures.verify_stripe(
            raw, header=header, secret=vector["webhook_secret"], now_s=ten_days_later
        )
    with pytest.raises(AssertionError):
        signatures.verify_stripe(
            raw, header=header, secret=vector["webhook_secret"], tolerance_s=0, now_s=ten_days_later
        )


def _outcome(check: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    """'accepted' or 'rejected': what `check(*args, **kwargs)` made of a signature."""
    try:
        check(*args, **kwargs)
    except (
        InvalidSignature,
        razorpay.errors.SignatureVerificationError,
        stripe.SignatureVerificationError,
    ):
        return "rejected"
    return "accepted"


# -- Tolerance, rotation and re-serialisation, beyond the vectors -----------------------------------

BODY = b'{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"amount":2000}}}'
SECRET = "whsec_current"
T = 1_767_225_600


@pytest.mark.parametrize(
    ("age_s", "accepted"),
    [(0, True), (1, True), (299, True), (300, True), (300.5, False), (301, False), (3_600, False)],
)
def test_stripe_tolerance_300_s_into_the_past(age_s: float, accepted: bool) -> None:
    header = signatures.sign_stripe(BODY, secrets=SECRET, timestamp=T)
    outcome = _outcome(
        signatures.verify_stripe, BODY, header=header, secret=SECRET, now_s=T + age_s
    )
    assert outcome == ("accepted" if accepted else "rejected")


@pytest.mark.parametrize(
    ("ahead_s", "accepted"), [(1, True), (300, True), (301, False), (86_400, False)]
)
def test_stripe_tolerance_300_s_into_the_future(ahead_s: int, accepted: bool) -> None:
    header = signatures.sign_stripe(BODY, secrets=SECRET, timestamp=T + ahead_s)
    outcome = _outcome(signatures.verify_stripe, BODY, header=header, secret=SECRET, now_s=T)
    assert outcome == ("accepted" if accepted else "rejected")


def test_several_v1_signatures_accepted_during_rotation() -> None:
    header = signatures.sign_stripe(BODY, secrets=["whsec_old", "whsec_new"], timestamp=T)
    assert header.count(",v1=") == 2
    for secret in ("whsec_old", "whsec_new"):
        assert signatures.verify_stripe(BODY, header=header, secret=secret, now_s=T) == T
        stripe.WebhookSignature.verify_header(BODY, header, secret, tolerance=None)
    with pytest.raises(InvalidSignature, match="no Stripe signature matches"):
        signatures.verify_stripe(BODY, header=header, secret="whsec_other", now_s=T)


def test_too_many_signatures_or_a_huge_header_are_refused() -> None:
    header = signatures.sign_stripe(BODY, secrets=SECRET, timestamp=T)
    many = header + "".join(f",v1={'0' * 64}" for _ in range(signatures.SIGNATURES_MAX))
    with pytest.raises(InvalidSignature, match="too many"):
        signatures.verify_stripe(BODY, header=many, secret=SECRET, now_s=T)
    with pytest.raises(InvalidSignature, match="too long"):
        signatures.verify_stripe(BODY, header=header + "," + "x" * 5_000, secret=SECRET, now_s=T)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "v1=abc",
        f"t={T}",
        f"t={T},t={T},v1=00",
        "t=-5,v1=00",
        "t=1e9,v1=00",
        "garbage",
        f"t={T};v1=00",
    ],
)
def test_malformed_stripe_headers_are_refused(header: str) -> None:
    with pytest.raises(InvalidSignature):
        signatures.verify_stripe(BODY, header=header, secret=SECRET, now_s=T)


def test_body_reserialised_after_signing_is_refused() -> None:
    header = signatures.sign_stripe(BODY, secrets=SECRET, timestamp=T)
    reserialised = json.dumps(json.loads(BODY)).encode()  # same JSON value, other bytes
    assert reserialised != BODY
    with pytest.raises(InvalidSignature):
        signatures.verify_stripe(reserialised, header=header, secret=SECRET, now_s=T)
    razorpay_signature = signatures.sign_razorpay_webhook(BODY, secret=SECRET)
    with pytest.raises(InvalidSignature):
        signatures.verify_razorpay_webhook(
            reserialised, signature=razorpay_signature, secret=SECRET
        )


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_an_empty_secret_refuses_rather_than_accepts(secret: str | None) -> None:
    # Even a signature made with the empty key itself is not accepted: verification is off.
    empty_key_hmac = hmac.new(b"", BODY, "sha256").hexdigest()
    with pytest.raises(ProviderDisabled):
        signatures.verify_razorpay_webhook(BODY, signature=empty_key_hmac, secret=secret)
    with pytest.raises(ProviderDisabled):
        signatures.verify_stripe(BODY, header=f"t={T},v1={empty_key_hmac}", secret=secret, now_s=T)
    with pytest.raises(ProviderDisabled):
        signatures.verify_razorpay_payment(
            order_id="order_1", payment_id="pay_1", signature=empty_key_hmac, key_secret=secret
        )


def test_missing_signature_header_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="missing"):
        signatures.verify_razorpay_webhook(BODY, signature=None, secret=SECRET)
    with pytest.raises(InvalidSignature, match="missing"):
        signatures.verify_stripe(BODY, header=None, secret=SECRET, now_s=T)


def test_constant_time_equal_survives_non_ascii() -> None:
    # hmac.compare_digest raises TypeError on non-ASCII str; an attacker picks the header.
    assert not signatures.constant_time_equal("abc", "ábc")
    assert signatures.constant_time_equal("ábc", "ábc")
