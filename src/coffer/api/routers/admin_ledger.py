"""Admin: the invariants report (`GET /admin/ledger/verify`), the same as `coffer verify`."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from coffer.api import errors
from coffer.api.deps import AdminPrincipal, DatabaseDep
from coffer.audit.verify import verify_books

router = APIRouter(
    prefix="/admin/ledger", tags=["admin"], responses=errors.responses(*errors.AUTHENTICATED)
)


class CheckOut(BaseModel):
    invariant: int
    name: str
    ok: bool
    problem_count: int
    problems: list[str]


class VerifyOut(BaseModel):
    ok: bool
    transfers: int
    accounts: int
    open_holds: int
    checks: list[CheckOut]


@router.get("/verify", summary="Check every invariant of the books (DESIGN.md) in one snapshot")
def verify(_: AdminPrincipal, database: DatabaseDep) -> VerifyOut:
    return VerifyOut.model_validate(verify_books(database).as_dict())
