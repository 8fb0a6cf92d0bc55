"""The OpenAPI description: served by the node, true to the route table, and fuzzed against a live node."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import nacl.signing
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from yarl import URL

from node.openapi import OPERATIONS
from node.routes import route_table
from node.sharing.routes import AGENCY_TAG
from sync import sign_request
from tests.people import browser, claim, invite, join

SIM = {"id": "yard", "name": "Back yard", "url": "sim:?width=160&height=120&fps=5&period=4&walk=1.0"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 12}
# NDJSON (the sync push body) is lines of text: the fuzzer sends what it makes up as they are.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
# Calls that end the fuzzer's own sign-in go last, so they do not cut the other operations short.
LAST = ("/revoke", "/api/logout")


async def test_openapi_is_served_and_describes_every_route(make_node):
    node = await make_node("home")
    async with aiohttp.ClientSession() as client, client.get(node.url + "/api/openapi.json") as resp:
        assert resp.status == 200
        document = await resp.json()
    assert document["openapi"] == "3.1.0"
    described = {(method.upper(), path) for path, methods in document["paths"].items() for method in methods}
    routes = {(route.method, route.path) for route in route_table()}
    assert described == routes
    assert set(OPERATIONS) == routes, f"described but not routed: {sorted(set(OPERATIONS) - routes)}"
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            route = next(r for r in route_table() if r.path == path and r.method == method.upper())
            assert op["x-roles"] == sorted(route.roles), f"{method} {path}"
            assert "4XX" in op["responses"] and any(code < "300" for code in op["responses"])
    # The document is one schemathesis accepts as OpenAPI 3.1 (it validates it on loading).
    schema = schemathesis.openapi.from_dict(document)
    assert sum(1 for result in schema.get_all_operations() if result.ok()) == len(routes)


class Signer(requests.auth.AuthBase):
    """Signs each request the fuzzer sends (RFC 9421), as an agency or a peer node signs its calls."""

    def __init__(self, key: nacl.signing.SigningKey, tag: str) -> None:
        self.key, self.tag = key, tag

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        request.headers.update(sign_request(self.key, request.method, request.url, body or None, tag=self.tag))
        return request


def _fuzz(operation, session: requests.Session, base_url: str) -> list[str]:
    """Run positive and negative cases for one operation; the first failure of each mode, as text."""
    failures = []
    for mode, count in EXAMPLES.items():
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=count, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=30)

        try:
            run()
        except Unsatisfiable:
            continue  # nothing in this operation can be made invalid (no body, no typed parameter)
        except Exception as exc:  # a failed check: keep the report, go on with the other operations
            failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {exc}"[:3000])
    return failures


@pytest.mark.timeout(900)
async def test_fuzzing_a_live_node_finds_no_server_error_and_no_answer_off_its_description(make_node):
    node = await make_node("home", cameras__devices=[SIM], node__name="Elm Street 12")
    peer = await make_node("peer")
    await node.approve(peer)
    agency_key = nacl.signing.SigningKey.generate()
    async with browser() as manager, browser() as resident:
        await claim(node, manager)
        code = (await invite(node, manager, unit="4B", name="Ada"))["code"]
        await join(node, resident, code)
        async with manager.post(node.url + "/api/agencies", json={
                "key": agency_key.verify_key.encode().hex(), "name": "Metro PD", "jurisdiction": "Metro"}) as resp:
            assert resp.status == 201, await resp.text()
        async with manager.get(node.url + "/api/openapi.json") as resp:
            document = await resp.json()
        cookies = {"manager": manager.cookie_jar.filter_cookies(URL(node.url))["nnode_session"].value,
                   "resident": resident.cookie_jar.filter_cookies(URL(node.url))["nnode_session"].value}

    sessions = {}
    for who in ("manager", "resident", "agency", "peer"):
        sessions[who] = requests.Session()
        if who in cookies:
            sessions[who].cookies.set("nnode_session", cookies[who], domain="127.0.0.1")
    sessions["agency"].auth = Signer(agency_key, AGENCY_TAG)
    sessions["peer"].auth = Signer(peer.key, "nnode-sync")

    schema = schemathesis.openapi.from_dict(document)
    # The fuzzer signs in as above; who may call what without that is tests/test_authorization.py's job.
    schema.config.generation.update(with_security_parameters=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: next((i + 1 for i, end in enumerate(LAST) if op.path.endswith(end)), 0))
    fuzzed, failures = 0, []
    with ThreadPoolExecutor(1, thread_name_prefix="fuzz") as pool:
        loop = asyncio.get_running_loop()
        for op in operations:
            raw = op.definition.raw
            if raw.get("x-stream"):
                continue  # open-ended streams (live view, SSE): their access is in test_authorization.py
            roles = set(raw["x-roles"])
            who = ("agency" if "agency" in roles else "peer" if "peer" in roles
                   else "resident" if roles == {"resident"} else "manager")
            failures += await loop.run_in_executor(pool, _fuzz, op, sessions[who], node.url)
            fuzzed += 1
    for session in sessions.values():
        session.close()
    assert fuzzed >= len(operations) - 2
    assert not failures, "\n\n".join(failures)
