"""The JSON bodies people's routes take (the first-boot claim, joining, signing in, the manager's people console),
declared once: the handlers decode them with node.http.read_body and node/openapi.py describes them from here.

The accounts store keeps its own checks (a required text that is blank, whitespace folded before its length)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from msgspec import UNSET, Meta, UnsetType

from node.people.accounts import MAX_NAME, MAX_UNIT
from node.structs import Body, Flag, setting

SIGN_IN_BYTES = 4096   # a code, a password or a token, and a name: nothing a sign-in needs is bigger

Name = Annotated[Annotated[str, Meta(max_length=MAX_NAME)] | None,
                 setting(f"how the resident is shown (at most {MAX_NAME} characters)",
                         expected=f"text of at most {MAX_NAME} characters")]


class ClaimBody(Body, frozen=True):
    """POST /setup/claim: the one-time code on the node's screen and the manager's new password."""

    MAX_BYTES: ClassVar[int] = SIGN_IN_BYTES

    code: str
    password: str


class JoinBody(Body, frozen=True):
    """POST /api/join: an invite code and, if the resident likes, the name to show."""

    MAX_BYTES: ClassVar[int] = SIGN_IN_BYTES

    code: Annotated[str, setting("the invite code from the building's manager")]
    name: Name = None


class LoginBody(Body, frozen=True):
    """POST /api/login: the manager's password, or a one-time token from `nnode admin-link` (which wins)."""

    MAX_BYTES: ClassVar[int] = SIGN_IN_BYTES

    password: str | UnsetType = UNSET
    token: str | UnsetType = UNSET


class OnCallBody(Body, frozen=True):
    """POST /api/residents/{id}/on-call: whether the resident answers SOS calls."""

    on_call: Flag


class InviteBody(Body, frozen=True):
    """POST /api/invites (and the control socket's invite): the unit invited and, optionally, the resident's name."""

    unit: Annotated[str, setting(f"the resident's unit (at most {MAX_UNIT} characters)", max_length=MAX_UNIT,
                                 expected=f"text of at most {MAX_UNIT} characters")]
    name: Name = None


class LanguageBody(Body, frozen=True):
    """POST /api/account/language: the language the caller's account is shown in on every device (null: follow
    each browser's language)."""

    language: Annotated[Literal["en", "es", "zh"] | None,
                        setting("the interface language: en, es or zh; null to follow the browser")]
