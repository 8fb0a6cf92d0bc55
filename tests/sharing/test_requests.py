"""Agency requests: signature, form and policy checks (each refusal names its field and reason), and area geometry."""

import copy
import secrets

import nacl.public
import nacl.signing
import pytest

from node.sharing.agency_keys import AgencyKey
from node.sharing.geometry import SQUARE_MILE_M2, haversine_m
from node.sharing.requests import Area, Policy, RequestError, format_time, parse_area, parse_request, sign_request

NOW = 1_795_300_000.0  # 2026-11-21
AGENCY = AgencyKey(nacl.signing.SigningKey(bytes(range(32))), nacl.public.PrivateKey(bytes(range(1, 33))))


def request(**changes) -> dict:
    fields = {"v": 1, "id": secrets.token_hex(16), "case_number": "2026-004512", "reason": "burglary at 12 Elm St",
              "window": {"start": format_time(NOW - 86400), "end": format_time(NOW - 86400 + 40 * 60)},
              "area": {"circle": {"lat": "40.7128", "lon": "-74.0060", "radius_m": 300}},
              "urgency": "normal", "contact": "Det. R. Diaz", "expires": format_time(NOW + 7 * 86400),
              "created": format_time(NOW - 60)}
    fields.update(changes)
    return sign_request(fields, AGENCY)


def test_a_signed_request_in_policy_is_accepted():
    parsed = parse_request(request(), now=NOW)
    assert parsed.agency == AGENCY.verify_key.encode().hex() and parsed.end - parsed.start == 2400
    assert parsed.area.contains(40.7130, -74.0062) and not parsed.area.contains(40.7200, -74.0060)
    assert parsed.public()["case_number"] == "2026-004512" and "contact" not in parsed.public()


@pytest.mark.parametrize("changes, message", [
    ({"window": {"start": format_time(NOW - 86400), "end": format_time(NOW - 86400 + 600)}},
     "out of policy: the window is 10 min; it must be from 15 min to 12 h"),
    ({"window": {"start": format_time(NOW - 86400), "end": format_time(NOW - 86400 + 13 * 3600)}},
     "out of policy: the window is 13 h"),
    ({"area": {"circle": {"lat": "40.7128", "lon": "-74.0060", "radius_m": 800}}},
     "out of policy: the area is 0.78 square miles; at most 0.5"),
    ({"case_number": "  "}, "out of policy: a case number is required"),
    ({"expires": format_time(NOW - 1)}, "expires: the request expired"),
    ({"expires": format_time(NOW + 200 * 86400)}, "at most 90 days"),
    ({"window": {"start": format_time(NOW + 3600), "end": format_time(NOW + 7200)}}, "cannot be requested for the "
     "future"),
    ({"window": {"start": "yesterday", "end": format_time(NOW)}}, "window.start: expected a UTC time"),
    ({"urgency": "urgent"}, "urgency: expected 'normal' or 'emergency'"),
    ({"area": {"square": 1}}, "area: expected"),
    ({"area": {"circle": {"lat": "40.7.1", "lon": "-74.0060", "radius_m": 300}}}, "area.circle.lat: expected "
     "degrees"),
    ({"area": {"polygon": [["40.71", "-74.00"], ["40.72", "-74.00"]]}}, "area.polygon: expected 3 to 64"),
    ({"area": {"polygon": [["40.710", "-74.000"], ["40.712", "-74.002"], ["40.710", "-74.002"],
                           ["40.712", "-74.000"]]}}, "edges 1 and 3 cross"),
    ({"v": 2}, "v: this node reads request format 1"),
    ({"reason": "x" * 501}, "reason: expected text of at most 500"),
    ({"priority": 1}, "unknown field 'priority'"),
])
def test_bad_or_out_of_policy_requests_are_refused_with_the_reason(changes, message):
    with pytest.raises(RequestError) as caught:
        parse_request(request(**changes), now=NOW)
    assert message in str(caught.value)


def test_a_float_anywhere_is_refused_before_the_signature_is_checked():
    signed = request()
    signed["area"] = {"circle": {"lat": 40.7128, "lon": "-74.0060", "radius_m": 300}}
    with pytest.raises(RequestError, match="area.circle.lat: expected degrees as a decimal string"):
        parse_request(signed, now=NOW)


def test_any_change_after_signing_breaks_the_signature():
    signed = request()
    for path in (("reason",), ("window", "end"), ("area", "circle", "radius_m"), ("case_number",)):
        forged = copy.deepcopy(signed)
        target = forged
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = 250 if path[-1] == "radius_m" else target[path[-1]] + "0" if path[-1] != "end" else \
            format_time(NOW - 86400 + 41 * 60)
        with pytest.raises(RequestError, match="sig: the signature does not match"):
            parse_request(forged, now=NOW)
    other = nacl.signing.SigningKey.generate()
    resigned = dict(signed, sig=other.sign(b"x").signature.hex())
    with pytest.raises(RequestError, match="signature does not match"):
        parse_request(resigned, now=NOW)
    with pytest.raises(RequestError, match="missing field 'sig'"):
        parse_request({k: v for k, v in signed.items() if k != "sig"}, now=NOW)


def test_policy_is_configurable():
    wide = request(area={"circle": {"lat": "40.7128", "lon": "-74.0060", "radius_m": 800}}, case_number="")
    parse_request(wide, now=NOW, policy=Policy(max_area_sq_mi=1.0, require_case_number=False))


def test_area_geometry():
    # A 0.5 mile square near the equator and at 60 degrees north: both half a square mile... each side 804.67 m.
    for lat in (0.0, 60.0):
        side_lat = 804.672 / 111_195.0
        side_lon = side_lat / __import__("math").cos(__import__("math").radians(lat))
        pts = [[f"{lat:.7f}", "10.0000000"], [f"{lat + side_lat:.7f}", "10.0000000"],
               [f"{lat + side_lat:.7f}", f"{10 + side_lon:.7f}"], [f"{lat:.7f}", f"{10 + side_lon:.7f}"]]
        area = parse_area({"polygon": pts})
        assert area.square_metres() / SQUARE_MILE_M2 == pytest.approx(0.25, rel=0.01)
        assert area.contains(lat + side_lat / 2, 10 + side_lon / 2)
        assert not area.contains(lat - side_lat, 10)
        assert area.contains(lat - side_lat * 0.5, 10 + side_lon / 2, margin_m=500)
    assert haversine_m(40.7128, -74.0060, 40.7128, -74.0060) == 0
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195, rel=1e-3)
    circle = Area(circle=(40.7128, -74.0060, 300.0))
    assert circle.distance_m(40.7128 + 400 / 111_195, -74.0060) == pytest.approx(100, abs=1)
