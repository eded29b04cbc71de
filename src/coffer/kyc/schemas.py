"""What the API takes and gives for KYC. Every string has a bound; URLs are http(s) only.

The document number is masked (last four characters) in everything a user sees; only the
admin's views (`AdminKycOut`) carry it whole."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AnyUrl, BaseModel, ConfigDict, Field, UrlConstraints

from coffer.kyc.service import REASON_LENGTH_MAX, Kyc, Submission

URL_LENGTH_MAX = 1024
DocumentUrl = Annotated[
    AnyUrl, UrlConstraints(max_length=URL_LENGTH_MAX, allowed_schemes=["http", "https"])
]
Text128 = Annotated[str, Field(min_length=1, max_length=128)]
KycStatus = Literal["not_submitted", "submitted", "approved", "rejected"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class KycIn(_In):
    """`POST /kyc`: the user's identity documents (the files live at the host app's URLs)."""

    full_name: Text128
    # passport, national_id, drivers_license, aadhaar, pan...: the host app's own vocabulary.
    document_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
    # Five or more characters, so that showing the last four never shows all of it.
    document_number: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 /\-]{4,63}$")]
    document_front_url: DocumentUrl
    document_back_url: DocumentUrl | None = None
    selfie_url: DocumentUrl
    address: Annotated[str, Field(min_length=1, max_length=256)]
    city: Text128
    state: Text128
    postal_code: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 \-]{1,15}$")]

    def submission(self) -> Submission:
        return Submission(
            full_name=self.full_name,
            document_type=self.document_type,
            document_number=self.document_number,
            document_front_url=str(self.document_front_url),
            document_back_url=None
            if self.document_back_url is None
            else str(self.document_back_url),
            selfie_url=str(self.selfie_url),
            address=self.address,
            city=self.city,
            state=self.state,
            postal_code=self.postal_code,
        )


class DecisionIn(_In):
    """`POST /admin/kyc/{user_id}/approve` (reason optional)."""

    reason: Annotated[str | None, Field(max_length=REASON_LENGTH_MAX)] = None


class RejectIn(_In):
    """`POST /admin/kyc/{user_id}/reject`: the reason is required and shown to the user."""

    reason: Annotated[str, Field(min_length=1, max_length=REASON_LENGTH_MAX)]


class KycOut(BaseModel):
    """The user's own view (`GET /kyc`): `{"status": "not_submitted"}` before any submission;
    the reason only after a rejection; the document number masked."""

    status: KycStatus
    full_name: str | None = None
    document_type: str | None = None
    document_number: str | None = None  # masked: ****1234
    document_front_url: str | None = None
    document_back_url: str | None = None
    selfie_url: str | None = None
    address: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    submitted_at: datetime | None = None
    decided_at: datetime | None = None
    reason: str | None = None

    @classmethod
    def of(cls, kyc: Kyc | None) -> KycOut:
        if kyc is None:
            return cls(status="not_submitted")
        return cls(
            status=kyc.status,
            full_name=kyc.full_name,
            document_type=kyc.document_type,
            document_number=kyc.masked_number,
            document_front_url=kyc.document_front_url,
            document_back_url=kyc.document_back_url,
            selfie_url=kyc.selfie_url,
            address=kyc.address,
            city=kyc.city,
            state=kyc.state,
            postal_code=kyc.postal_code,
            submitted_at=kyc.submitted_at,
            decided_at=kyc.decided_at,
            # An approval's note is the operators' own; a rejection's tells the user what to fix.
            reason=kyc.reason if kyc.status == "rejected" else None,
        )


class AdminKycOut(BaseModel):
    """The admin's view: everything, the document number whole."""

    user_id: str
    status: KycStatus
    full_name: str
    document_type: str
    document_number: str
    document_front_url: str
    document_back_url: str | None
    selfie_url: str
    address: str
    city: str
    state: str
    postal_code: str
    submissions: int
    submitted_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None

    @classmethod
    def of(cls, kyc: Kyc) -> AdminKycOut:
        return cls(**{name: getattr(kyc, name) for name in cls.model_fields})


class AdminKycPageOut(BaseModel):
    data: list[AdminKycOut]
    has_more: bool
    next_cursor: str | None
