"""Sharing with agencies: consent receipts and the signed, encrypted clip bundle (DESIGN.md section 6).

SharingError              root of what this package raises (a NodeError)
├── ConsentError          no consent record, or one that does not match or verify: no bundle is built (403)
└── VerifyError           a bundle failed `verify_bundle`; the message names the first failure (422)
"""

from __future__ import annotations

from node.sharing.bundle import (
    BundleInfo, ConsentError, SharingError, VerifyError, VerifyResult, build_bundle, check_consent, load_agency_key,
    sign_consent, verify_bundle, write_agency_key,
)

__all__ = [
    "BundleInfo", "ConsentError", "SharingError", "VerifyError", "VerifyResult", "build_bundle", "check_consent",
    "load_agency_key", "sign_consent", "verify_bundle", "write_agency_key",
]
