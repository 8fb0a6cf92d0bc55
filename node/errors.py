"""Errors of the appliance.

NodeError                 root of every error node/ raises
├── ConfigError           the config file is unreadable or invalid (CLI exit status 2)
├── NotInitialised        no data folder or key yet: run `nnode init`
├── NotFound              a requested record does not exist (404)
├── BadRequest            a request body or parameter is invalid (400)
├── SignInRequired        the route needs a session and the caller has none (401)
├── Forbidden             the caller's role, network or origin may not use the route (403)
├── Conflict              the request contradicts the stored state (409)
├── TooLarge              a body or upload is over its limit (413)
├── Unavailable           not possible right now: no picture yet, disk full, too many viewers (503)
└── CameraError           a camera cannot be opened or read (502; node/camera/sources.py)
"""

from __future__ import annotations


class NodeError(Exception):
    """Root of every error raised by node/."""

    status = 500
    reason = "internal"


class ConfigError(NodeError):
    """The config file is unreadable or invalid."""

    status = 500
    reason = "config"


class NotInitialised(NodeError):
    """The data folder, database or key does not exist yet."""

    status = 500
    reason = "not_initialised"


class NotFound(NodeError):
    """A requested record does not exist."""

    status = 404
    reason = "not_found"


class BadRequest(NodeError):
    """A request body or parameter is invalid."""

    status = 400
    reason = "bad_request"


class SignInRequired(NodeError):
    """The route needs a signed-in resident or manager."""

    status = 401
    reason = "sign_in"


class Forbidden(NodeError):
    """The caller may not use this route (role, network or origin)."""

    status = 403
    reason = "forbidden"


class Conflict(NodeError):
    """The request contradicts the stored state (already used, already decided...)."""

    status = 409
    reason = "conflict"


class TooLarge(NodeError):
    """A body or upload is over its limit."""

    status = 413
    reason = "too_large"


class Unavailable(NodeError):
    """The node cannot do it right now (a camera without a picture, a full disk, too many viewers)."""

    status = 503
    reason = "unavailable"
