"""Errors raised by the federation library.

SyncError                      root of every error this package raises
├── EventRejected              an event failed validation; carries `status` and `reason`
│   ├── MalformedEvent         not parseable JSON, or wrong field names or types (400)
│   ├── NonCanonical           bytes do not re-encode to themselves under RFC 8785 (400)
│   ├── FloatNotAllowed        a number with a fraction or exponent (400)
│   ├── OversizedEvent         more than MAX_EVENT_BYTES (413)
│   ├── UnknownKind            no validator registered for the kind (422)
│   ├── InvalidBody            the kind's validator refused the body (422)
│   ├── BodyHashMismatch       sha256(JCS(body)) differs from body_hash (422)
│   ├── BadSignature           ed25519 signature does not verify (422)
│   ├── FutureTimestamp        ts further ahead than MAX_FUTURE_SKEW (422)
│   ├── Expired                body carried past `expires` (422)
│   ├── Equivocation           same (author, seq) with another id (409)
│   ├── AuthorQuarantined      the author was quarantined for equivocation (403)
│   └── Contradicts            refused by a check the node added: contradicts what it holds (409)
├── BatchTooLarge              a batch over its byte or count limit (413)
├── AuthError                  a sync request failed RFC 9421 checks (401)
│   └── PeerNotApproved        valid signature, but the key is not an approved peer (403)
├── Misdirected                a request addressed (Host, signed @authority) to a name not this node's (421)
├── RateLimited                too many requests from one peer (429)
└── PeerUnreachable            an outbound sync call failed (transport or HTTP error)
"""

from __future__ import annotations


class SyncError(Exception):
    """Root of every error raised by sync/."""

    status = 500
    reason = "internal"


class EventRejected(SyncError):
    """An event failed validation and was not stored."""

    status = 422
    reason = "invalid"


class MalformedEvent(EventRejected):
    """Not parseable JSON, or wrong field names or types."""

    status = 400
    reason = "malformed"


class NonCanonical(EventRejected):
    """The bytes are not the RFC 8785 encoding of what they decode to."""

    status = 400
    reason = "non_canonical"


class FloatNotAllowed(EventRejected):
    """A number with a fraction or an exponent: events carry integers only."""

    status = 400
    reason = "float"


class OversizedEvent(EventRejected):
    """An event larger than the per-event limit."""

    status = 413
    reason = "oversized"


class UnknownKind(EventRejected):
    """No validator is registered for this kind."""

    status = 422
    reason = "unknown_kind"


class InvalidBody(EventRejected):
    """The kind's validator refused the body."""

    status = 422
    reason = "invalid_body"


class BodyHashMismatch(EventRejected):
    """The body does not hash to the header's body_hash."""

    status = 422
    reason = "body_hash"


class BadSignature(EventRejected):
    """The ed25519 signature over the event id does not verify."""

    status = 422
    reason = "bad_signature"


class FutureTimestamp(EventRejected):
    """The event claims a time too far in the future."""

    status = 422
    reason = "future_ts"


class Expired(EventRejected):
    """The event's expiry has passed and it still carries its body."""

    status = 422
    reason = "expired"


class Equivocation(EventRejected):
    """The author signed two different events with the same seq."""

    status = 409
    reason = "equivocation"


class AuthorQuarantined(EventRejected):
    """The author is quarantined after equivocating."""

    status = 403
    reason = "quarantined"


class Contradicts(EventRejected):
    """A check the node added (SyncEngine.admission) refused the event: it contradicts what the node holds."""

    status = 409
    reason = "contradicts"


class BatchTooLarge(SyncError):
    """A batch exceeds its byte or event-count limit."""

    status = 413
    reason = "batch_too_large"


class AuthError(SyncError):
    """A sync request is unsigned, badly signed, replayed or outside the clock-skew window."""

    status = 401
    reason = "unauthenticated"


class PeerNotApproved(AuthError):
    """The request is validly signed by a key that is not an approved peer."""

    status = 403
    reason = "not_approved"


class Misdirected(SyncError):
    """A request (its Host, and so its signed @authority) names another server than this node."""

    status = 421
    reason = "misdirected"


class RateLimited(SyncError):
    """The peer sent more requests than its allowance."""

    status = 429
    reason = "rate_limited"

    def __init__(self, message: str, retry_after: float, limit: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit  # the setting that sets the limit, if the caller named one


class PeerUnreachable(SyncError):
    """An outbound call to a peer failed."""

    status = 502
    reason = "peer_unreachable"
