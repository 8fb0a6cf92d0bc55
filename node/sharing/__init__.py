"""Sharing with agencies: requests, per-clip consent, and the signed, encrypted clip bundle (DESIGN.md section 6).

The exception tree is drawn in node/sharing/errors.py. The names below are the package's interface for the CLI,
the benchmarks and the agency's tools; the desk (desk.py) is the node's side of the flow.
"""

from __future__ import annotations

from node.sharing.agency_keys import load_agency_key, write_agency_key
from node.sharing.bundle import BundleInfo, RangePart, build_bundle, build_range_bundle
from node.sharing.errors import ConsentError, RequestError, SharingError, VerifyError
from node.sharing.manifest import check_consent, range_digest, sign_consent
from node.sharing.verify import VerifyResult, verify_bundle

__all__ = [
    "BundleInfo", "ConsentError", "RangePart", "RequestError", "SharingError", "VerifyError", "VerifyResult",
    "build_bundle", "build_range_bundle", "check_consent", "load_agency_key", "range_digest", "sign_consent",
    "verify_bundle", "write_agency_key",
]
