"""Know-your-customer: a user's identity documents and the operator's decision on them."""

from coffer.kyc.service import STATUSES, Kyc, kyc_status, mask_document_number

__all__ = ["STATUSES", "Kyc", "kyc_status", "mask_document_number"]
