"""What the sharing package raises, each error carrying the HTTP status it answers with.

NodeError
├── SharingError          a bundle cannot be built or checked: a bad argument, an unusable file (500)
│   ├── ConsentError      no consent record, or one that does not match or verify: no bundle is built (403)
│   └── VerifyError       a bundle failed `verify_bundle`; the message names the first failure (422)
├── BadRequest
│   └── RequestError      an agency request is malformed, badly signed or out of policy (400)
├── Forbidden
│   └── AgencyRefused     (agencies.py) the key is not a registered agency in force here (403)
└── AuditError            (audit.py) the audit log does not verify (500)
"""

from __future__ import annotations

from node.errors import BadRequest, NodeError


class SharingError(NodeError):
    """A bundle cannot be built or checked: a bad argument or an unreadable or unwritable file."""

    status = 500
    reason = "sharing"


class ConsentError(SharingError):
    """No consent record, or one that does not match the clip and request or whose signature fails."""

    status = 403
    reason = "consent"


class VerifyError(SharingError):
    """A bundle failed verification; the message names the first check that failed."""

    status = 422
    reason = "bundle"


class RequestError(BadRequest):
    """A request is malformed, badly signed or outside the policy; the message says which field and why."""

    reason = "request"
