"""What an official feed document holds, in every shape publishers ship: one CAP alert; the IPAWS-OPEN `<alerts>`
wrapper; Atom or RSS whose entries carry CAP inline, as escaped text, or only a link to the CAP file (the NWS, and
most publishers feeding Google Public Alerts). Linked files are fetched by node/safety/feeds.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

from node.safety.cap import ATOM, NS, CapError, _parse_xml, alert_from_element

IPAWS = "http://gov.fema.ipaws.services/feed"
CONTENT = "http://purl.org/rss/1.0/modules/content/"
CAP_TYPES = ("application/cap+xml", "application/common-alerting-protocol+xml")
MAX_ENTRIES = 5000          # entries read from one document; the rest are skipped, with the reason
_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*\?>")


@dataclass
class Reading:
    """One feed document read: its shape, its valid alerts, the CAP files its entries link to, what was skipped."""

    shape: str
    entries: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)          # (entry, URL)
    skipped: list[dict[str, str]] = field(default_factory=list)         # {"alert" or "entry", "reason"}


def read_feed(document: bytes) -> Reading:
    """Read a feed document; one that is not XML, is refused (DTDs, entities, size) or has no shape this node
    knows raises CapError naming what it found, and a bad entry is skipped with its reason."""
    root = _parse_xml(document)
    if root.tag == f"{{{NS}}}alert":
        return Reading("cap", 1, [alert_from_element(root)])
    if root.tag in (f"{{{IPAWS}}}alerts", "alerts"):
        reading = Reading("ipaws")
        for index, element in enumerate(root.findall(f"{{{NS}}}alert")):
            if _count(reading, f"alerts/alert[{index + 1}]"):
                _take(reading, element, f"alerts/alert[{index + 1}]")
        return reading
    if root.tag == f"{{{ATOM}}}feed":
        reading = Reading("atom")
        for index, entry in enumerate(root.findall(f"{{{ATOM}}}entry")):
            label = _label(entry.findtext(f"{{{ATOM}}}id"), f"feed/entry[{index + 1}]")
            if _count(reading, label):
                _entry(reading, entry, label, _escaped(entry, (f"{{{ATOM}}}content", f"{{{ATOM}}}summary")),
                       _atom_link(entry))
        return reading
    if root.tag == "rss":
        reading = Reading("rss")
        for index, item in enumerate(root.findall("channel/item")):
            label = _label(item.findtext("guid") or item.findtext("link"), f"rss/channel/item[{index + 1}]")
            if _count(reading, label):
                _entry(reading, item, label, _escaped(item, ("description", f"{{{CONTENT}}}encoded")),
                       _rss_link(item))
        return reading
    raise CapError(f"document: expected a CAP 1.2 <alert>, an Atom or RSS feed, or an IPAWS <alerts> feed, found "
                   f"<{root.tag}>")


def _label(text: str | None, default: str) -> str:
    return text.strip()[:200] if text and text.strip() else default


def _count(reading: Reading, label: str) -> bool:
    reading.entries += 1
    if reading.entries > MAX_ENTRIES:
        reading.skipped.append({"entry": label, "reason": f"over the limit of {MAX_ENTRIES} entries per document"})
        return False
    return True


def _take(reading: Reading, element: Element, where: str) -> None:
    """Keep one <alert> element's alert, or note why it was skipped."""
    try:
        reading.alerts.append(alert_from_element(element, where))
    except CapError as exc:
        identifier = element.findtext(f"{{{NS}}}identifier") or where
        reading.skipped.append({"alert": identifier.strip()[:200], "reason": str(exc)})


def _entry(reading: Reading, entry: Element, label: str, escaped: Element | str | None, link: str | None) -> None:
    inline = entry.findall(f".//{{{NS}}}alert")
    if inline:
        for i, element in enumerate(inline):
            _take(reading, element, f"{label}/alert[{i + 1}]")
    elif isinstance(escaped, Element):
        _take(reading, escaped, f"{label}/alert")
    elif isinstance(escaped, str):
        reading.skipped.append({"entry": label, "reason": escaped})
    elif link is not None:
        reading.links.append((label, link))
    else:
        reading.skipped.append({"entry": label, "reason": "no CAP alert in the entry, escaped or inline, and no "
                                "link to one"})


def _escaped(entry: Element, tags: tuple[str, ...]) -> Element | str | None:
    """A CAP alert carried as escaped text in one of `tags`; a string says why the text that looked like one was
    refused; None if there is none."""
    for tag in tags:
        text = entry.findtext(tag)
        if not text or NS not in text or "<" not in text:
            continue
        name = tag.rpartition("}")[2]
        try:
            root = _parse_xml(_DECLARATION.sub("", text).encode("utf-8"))
        except CapError as exc:
            return f"escaped CAP in <{name}>: {exc}"
        return root if root.tag == f"{{{NS}}}alert" else f"escaped XML in <{name}> is <{root.tag}>, not a CAP alert"
    return None


def _atom_link(entry: Element) -> str | None:
    """The entry's link to its CAP file: a link typed as CAP first, else its alternate (or untyped) link."""
    links = [(link.get("rel", "alternate"), link.get("type", ""), (link.get("href") or "").strip())
             for link in entry.findall(f"{{{ATOM}}}link")]
    for _rel, kind, href in links:
        if href and kind.split(";")[0].strip().lower() in CAP_TYPES:
            return href
    return next((href for rel, _, href in links if href and rel in ("alternate", "enclosure")), None)


def _rss_link(item: Element) -> str | None:
    """The item's link to its CAP file: an enclosure typed as CAP, else its <link>, else a permalink <guid>."""
    for enclosure in item.findall("enclosure"):
        if (enclosure.get("type") or "").lower() in CAP_TYPES and enclosure.get("url"):
            return str(enclosure.get("url")).strip()
    link = (item.findtext("link") or "").strip()
    if link:
        return link
    guid = item.find("guid")
    if guid is not None and guid.text and guid.get("isPermaLink", "true") != "false":
        return guid.text.strip()
    return None
