"""JSON request bodies are declared once (Structs in each feature's models.py): a wrong one is refused naming the
key and what was expected, the route table names each route's body, and the OpenAPI description is drawn from it."""

from __future__ import annotations

import inspect
import re
from typing import get_args

from node.routes import route_table
from node.safety import cap
from node.safety.models import Category, Certainty, Severity, Urgency
from tests.people import browser, call, claim, invite, join


async def test_wrong_bodies_are_refused_naming_the_key(make_node):
    node = await make_node("b")
    async with browser() as manager, browser() as resident:
        await claim(node, manager)
        code = (await invite(node, manager, unit="4B"))["code"]
        await join(node, resident, code)
        resident_id = (await call(manager, "GET", node.url + "/api/residents"))[1]["residents"][0]["id"]
        refused = [
            # a wrong type, and a bool where an integer (or an int where a bool) belongs
            (manager, f"/api/residents/{resident_id}/on-call", {"on_call": 1},
             "request body: on_call: expected true or false, got 1 (int)"),
            (manager, "/api/invites", {"unit": 4}, "request body: unit: expected text of at most 32 characters, "
                                                   "got 4 (int)"),
            (manager, "/api/alerts", {"event": "Gas leak", "expires_hours": True},
             "request body: expires_hours: expected a whole number of hours from 1 to 72, got True (bool)"),
            (manager, "/api/alerts", {"event": "Gas leak", "severity": "Bad"}, "request body: severity: expected "
                                                                               "one of 'Extreme', "),
            # a key no client of ours sends
            (manager, "/api/invites", {"unit": "5C", "role": "manager"},
             "request body: role: unknown key (expected one of: unit, name)"),
            # too long
            (manager, "/api/invites", {"unit": "x" * 33}, "request body: unit: expected text of at most 32 "
                                                          "characters, got 'xxx"),
            (resident, "/api/sos", {"note": "x" * 501}, "request body: note: expected text of at most 500 "
                                                        "characters"),
            # a required key left out
            (manager, "/api/alerts", {"headline": "no event"}, "request body: missing required key 'event'"),
            # not an object at all
            (manager, "/api/invites", ["4B"], "request body must be a JSON object"),
        ]
        for session, path, body, message in refused:
            status, answer = await call(session, "POST", node.url + path, json=body)
            assert status == 400 and answer["reason"] == "bad_request", (path, body, answer)
            assert answer["error"].startswith(message), (path, body, answer["error"])
        # Nothing a refusal touched was made or changed.
        _, listed = await call(manager, "GET", node.url + "/api/invites")
        assert len(listed["invites"]) == 1
        _, residents = await call(manager, "GET", node.url + "/api/residents")
        assert residents["residents"][0]["on_call"] is False
        # A body that may be left out still may; a right one still works.
        async with resident.post(node.url + "/api/sos") as resp:
            assert resp.status == 201, await resp.text()
        status, answer = await call(manager, "POST", f"{node.url}/api/residents/{resident_id}/on-call",
                                    json={"on_call": True})
        assert status == 200, answer


async def test_the_openapi_request_bodies_are_the_structs(make_node):
    node = await make_node("b")
    async with browser() as client, client.get(node.url + "/api/openapi.json") as resp:
        document = await resp.json()
    schemas = document["components"]["schemas"]
    on_call = schemas["OnCallBody"]
    assert on_call["properties"]["on_call"]["type"] == "boolean" and on_call["required"] == ["on_call"]
    assert on_call["additionalProperties"] is False
    assert schemas["SosBody"]["properties"]["note"]["anyOf"][0]["maxLength"] == 500
    for route in route_table():
        if route.body is None:
            continue
        body = document["paths"][route.path][route.method.lower()]["requestBody"]
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/"
                                                                         f"{route.body.__name__}"}
        assert body["required"] is not route.body.OPTIONAL


def test_each_handler_reads_the_body_its_route_declares():
    declared = 0
    for route in route_table():
        source = inspect.getsource(route.handler)
        read = set(re.findall(r"(?:read_body\(request|body_of\(.*), (\w+Body)\)", source))
        assert read == ({route.body.__name__} if route.body else set()), f"{route.method} {route.path}: {read}"
        declared += route.body is not None
    assert declared >= 14


def test_the_alert_choices_are_cap_values():
    assert set(get_args(Category)) == set(cap.CATEGORY)
    assert set(get_args(Urgency)) == set(cap.URGENCY)
    assert set(get_args(Severity)) == set(cap.SEVERITY)
    assert set(get_args(Certainty)) == set(cap.CERTAINTY)
