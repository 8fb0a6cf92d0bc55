"""XML-DSig signatures on CAP alerts (CAP 1.2 allows one enveloped <Signature> per alert): each is checked against
the sender's certificate configured for the feed, and the outcome travels with the alert, so it is shown and never
silently dropped. The checks are blocking (parsing, RSA/ECDSA): callers run `signatures` in a thread.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from lxml import etree
from signxml.exceptions import SignXMLException
from signxml.verifier import XMLVerifier

from node.safety.cap import DSIG, NS, CapError

VALID = "valid"
INVALID = "invalid"
UNSIGNED = "unsigned"
NO_CERTIFICATE = "no certificate configured"
STATUSES = (VALID, INVALID, UNSIGNED, NO_CERTIFICATE)
# Worst first: two copies of one alert in a document with different outcomes count as the worse.
_RANK = {INVALID: 0, VALID: 1, NO_CERTIFICATE: 2, UNSIGNED: 3}
_DECLARATION = re.compile(rb"\A\s*<\?xml[^>]*\?>")


def _parser() -> etree.XMLParser:
    # The document was already accepted by defusedxml (no DTD, no entities); this parser refuses them again.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def load_certificate(pem: bytes, where: str) -> bytes:
    """A PEM certificate as read from a file, checked to be one (raises CapError naming `where`)."""
    from cryptography import x509
    try:
        x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CapError(f"{where}: not a PEM X.509 certificate ({exc})") from exc
    return pem


def _key(element: Any) -> str:
    parts = [(element.findtext(f"{{{NS}}}{name}") or "").strip() for name in ("sender", "identifier", "sent")]
    return ",".join(parts)


def _verify(element: Any, certificate: bytes | None) -> tuple[str, str | None]:
    """One alert's outcome and, when invalid, why."""
    if element.find(f"{{{DSIG}}}Signature") is None:
        return UNSIGNED, None
    if certificate is None:
        return NO_CERTIFICATE, None
    alone = copy.deepcopy(element)   # its own document: the enveloped reference (URI="") is the alert itself
    try:
        result = XMLVerifier().verify(alone, x509_cert=certificate.decode("ascii"))
    except SignXMLException as exc:
        return INVALID, f"{exc.__class__.__name__}: {exc}"[:300]
    except UnicodeDecodeError:
        return INVALID, "the configured certificate is not ASCII PEM"
    if isinstance(result, list):
        return INVALID, "the signature has several references, not one over the alert"
    signed = result.signed_xml
    # A valid signature over some other element (signature wrapping) does not vouch for this alert.
    if signed is None or signed.tag != f"{{{NS}}}alert" or _key(signed) != _key(element):
        return INVALID, "the signature does not cover the whole alert"
    return VALID, None


def signatures(document: bytes, certificate: bytes | None) -> dict[str, tuple[str, str | None]]:
    """Each CAP alert of a document (itself, inline in a feed or a wrapper, or escaped in an entry's text) by its
    key "sender,identifier,sent": (outcome, why when invalid). Blocking."""
    try:
        root = etree.fromstring(document, _parser())
    except etree.XMLSyntaxError:
        return {}
    outcomes: dict[str, tuple[str, str | None]] = {}

    def keep(element: Any) -> None:
        key, outcome = _key(element), _verify(element, certificate)
        if key not in outcomes or _RANK[outcome[0]] < _RANK[outcomes[key][0]]:
            outcomes[key] = outcome

    for element in root.iter(f"{{{NS}}}alert"):
        keep(element)
    if root.tag != f"{{{NS}}}alert":
        for element in root.iter():
            text = element.text
            if isinstance(element.tag, str) and text and NS in text and "<" in text:
                try:
                    inner = etree.fromstring(_DECLARATION.sub(b"", text.strip().encode("utf-8")), _parser())
                except etree.XMLSyntaxError:
                    continue
                if inner.tag == f"{{{NS}}}alert":
                    keep(inner)
    return outcomes
