"""Neighborhood Node federation library: signed events, their store, the sync protocol and discovery.

sync/ knows nothing of cameras, residents or agencies; node/ registers its event kinds and uses this package.
"""

from ._area import EARTH_RADIUS_M, Circle, distance_m, touches, touches_any
from ._canonical import MAX_SAFE_INT, canonical, decode
from ._client import BadAnswer, PeerClient, peer_session
from ._db import Database, DatabaseError, Migration, SchemaTooNew
from ._descriptor import BadDescriptor, check_descriptor, make_descriptor
from ._discovery import SERVICE_TYPE, Discovery
from ._engine import SyncEngine, SyncSettings, add_discovered
from ._errors import (
    AuthError,
    AuthorQuarantined,
    BadSignature,
    BatchTooLarge,
    BodyHashMismatch,
    Contradicts,
    Equivocation,
    EventRejected,
    Expired,
    FloatNotAllowed,
    FutureTimestamp,
    InvalidBody,
    MalformedEvent,
    Misdirected,
    NonCanonical,
    OversizedEvent,
    PeerNotApproved,
    PeerUnreachable,
    RateLimited,
    SyncError,
    UnknownKind,
)
from ._event import (
    MAX_EVENT_BYTES,
    MAX_FUTURE_SKEW,
    SIGNATURE_DOMAIN,
    Event,
    create_event,
    parse_event,
    sha256_hex,
    verify_signature,
)
from ._httpsig import (
    ReplayCache,
    check_authority,
    check_content_digest,
    normal_authority,
    sign_request,
    verify_request,
)
from ._kinds import TOMBSTONE, KindRegistry, require_fields
from ._peers import APPROVED, PENDING, Peer, PeerStore
from ._ratelimit import RateLimiter
from ._results import IngestResult
from ._retention import Retention
from ._schema import SCHEMA_COMPONENT, SCHEMA_MIGRATIONS, setup_schema
from ._server import ENDPOINTS as SYNC_ENDPOINTS
from ._server import SyncServer
from ._store import EventStore

__all__ = [
    "APPROVED", "EARTH_RADIUS_M", "MAX_EVENT_BYTES", "MAX_FUTURE_SKEW", "MAX_SAFE_INT", "PENDING", "SERVICE_TYPE",
    "SIGNATURE_DOMAIN", "SYNC_ENDPOINTS", "TOMBSTONE", "AuthError", "AuthorQuarantined", "BadAnswer", "BadDescriptor",
    "BadSignature", "BatchTooLarge", "BodyHashMismatch", "Circle", "Contradicts", "Database", "DatabaseError",
    "Discovery", "Equivocation", "Event", "EventRejected", "EventStore", "Expired", "FloatNotAllowed",
    "FutureTimestamp", "IngestResult", "InvalidBody", "KindRegistry", "MalformedEvent", "Migration", "Misdirected",
    "NonCanonical", "OversizedEvent", "Peer", "PeerClient", "PeerNotApproved", "PeerStore", "PeerUnreachable",
    "RateLimited", "RateLimiter", "ReplayCache", "Retention", "SCHEMA_COMPONENT", "SCHEMA_MIGRATIONS", "SchemaTooNew",
    "SyncEngine", "SyncError", "SyncServer", "SyncSettings",
    "UnknownKind", "add_discovered", "canonical", "check_authority", "check_content_digest", "check_descriptor",
    "create_event", "decode", "distance_m", "make_descriptor", "normal_authority", "parse_event", "peer_session",
    "require_fields", "setup_schema", "sha256_hex", "sign_request", "touches", "touches_any", "verify_request",
    "verify_signature",
]
