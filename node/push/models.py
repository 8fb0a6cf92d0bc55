"""The JSON bodies of the push routes: a device's subscription (as the browser's `PushSubscription.toJSON()` gives
it, plus what wakes the device) and an unsubscription."""

from __future__ import annotations

from typing import Annotated, Literal

from node.structs import Body, Flag, Strict, setting

Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Endpoint = Annotated[str, setting("the push service URL the browser gave", max_length=2048,
                                  pattern=r"https?://[^\s/]+/\S*", expected="the subscription's endpoint URL")]


class SubscriptionKeys(Strict, frozen=True):
    """The device's keys for RFC 8291 (base64url, as the browser writes them)."""

    p256dh: Annotated[str, setting("the device's P-256 public key", pattern="[A-Za-z0-9_-]{86,88}={0,2}",
                                   expected="a base64url P-256 public key (65 bytes)")]
    auth: Annotated[str, setting("the device's authentication secret", pattern="[A-Za-z0-9_-]{22,24}={0,2}",
                                 expected="a base64url 16-byte secret")]


class SubscribeBody(Body, frozen=True):
    """POST /api/push/subscriptions: subscribe this device, and choose what wakes it (on-call responders also get
    SOS calls)."""

    endpoint: Endpoint
    keys: SubscriptionKeys
    expirationTime: Annotated[float | None, setting("when the browser says the subscription ends (ignored)",
                                                  expected="a number or null")] = None
    min_severity: Annotated[Severity, setting("the least severe official alert that wakes the device")] = "Severe"
    alerts: Annotated[Flag, setting("official alerts wake the device (from min_severity up)")] = True
    reports: Annotated[Flag, setting("neighbors' reports wake the device")] = False


class UnsubscribeBody(Body, frozen=True):
    """DELETE /api/push/subscriptions: stop pushing to this device."""

    endpoint: Endpoint
