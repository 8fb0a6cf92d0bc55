"""Sharing a time range of one camera as one bundle, through the node's API: a preview that records nothing, one
consent with one receipt and one audit entry, one bundle the agency downloads and verifies part by part, the
bounds (within the window, the caps) refused with the reason, and a withdrawal that releases every clip."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import pytest

from node.keys import AUDIT, CLIPS, DESK
from node.sharing import ranges
from node.sharing.manifest import utc_iso
from node.sharing.verify import verify_bundle
from tests.people import browser, call, claim
from tests.sharing.flow import HERE, Agency, add_clip, make_video, request_fields

OFFSETS = (120, 125, 900, 1500)   # seconds into the window: 2-second clips, the first two back to back-ish


@pytest.fixture
async def building(make_node, tmp_path):
    """A node with four clips of the yard and one of the gate in a 40-minute window, the manager, an agency and
    its request."""
    node = await make_node("b", node__latitude=HERE[0], node__longitude=HERE[1],
                           cameras__devices=[{"id": "yard", "url": "sim:", "detect_motion": False},
                                             {"id": "gate", "url": "sim:", "detect_motion": False}])
    start = float(int(time.time()) - 50 * 60)   # whole seconds, as the request's window is written
    video = make_video(tmp_path)
    clips = [await add_clip(node, video, start=start + offset) for offset in OFFSETS]
    await add_clip(node, video, start=start + 300, camera="gate")
    agency = Agency()
    fields = request_fields(start=start)
    async with browser() as manager:
        await claim(node, manager)
        status, body = await call(manager, "POST", node.url + "/api/agencies",
                                  json={"key": agency.id, "name": "Metro PD", "jurisdiction": "Metro City"})
        assert status == 201, body
        status, body = await agency.ask(node.url, fields)
        assert status == 201, body
        try:
            yield node, manager, agency, clips, start, fields["id"]
        finally:
            await agency.close()


async def test_a_range_is_one_consent_one_entry_one_bundle_the_agency_verifies(building, tmp_path):
    node, manager, agency, clips, start, request_id = building
    url = f"{node.url}/api/requests/{request_id}/ranges"
    entries = len(await node.app[AUDIT].entries())

    status, body = await call(manager, "POST", url + "/preview", json={"camera": "yard"})
    assert status == 200, body
    preview = body["range"]
    assert preview["clips"] == 4 and preview["footage_seconds"] == 8
    assert [p["uid"] for p in preview["parts"]] == [c.uid for c in clips]
    assert [(g["start"] - start, g["end"] - start) for g in preview["gaps"]] == [
        (0, 120), (122, 125), (127, 900), (902, 1500), (1502, 2400)]
    assert len(await node.app[AUDIT].entries()) == entries   # a preview leaves no trace

    status, body = await call(manager, "POST", url, json={"camera": "yard", "choice": "original"})
    assert status == 201, body
    given = body["consent"]
    assert given["clip_uid"].startswith("range-") and given["range"]["clips"] == 4
    await node.app[DESK].idle()
    consent = await node.app[DESK].store.consent(given["id"])
    assert consent["state"] == "ready", consent
    new = (await node.app[AUDIT].entries())[entries:]
    assert [e["action"] for e in new] == ["consent", "bundle_built"]
    assert new[0]["detail"]["range"] == {"camera": "yard", "start": utc_iso(start), "end": utc_iso(start + 2400),
                                         "clips": 4, "gaps": 5}
    for clip in clips:   # every clip of the range is held while the consent lasts
        assert [h["reason"] for h in await node.app[CLIPS].holds(clip)] == ["consent"]
    status, listed = await call(manager, "GET", node.url + "/api/requests")
    (shown,) = next(r for r in listed["requests"] if r["id"] == request_id)["ranges"]
    assert shown["state"] == "ready" and shown["clips"] == 4 and shown["camera_name"] == "yard"

    # Sharing the same range again is refused; the agency sees one bundle and verifies it offline.
    status, body = await call(manager, "POST", url, json={"camera": "yard"})
    assert status == 409 and "already shared" in body["error"]
    (bundle,) = (await agency.call("GET", node.url + "/api/agency/bundles"))[1]["bundles"]
    status, data = await agency.call("GET", node.url + bundle["url"], raw=True)
    assert status == 200
    await asyncio.to_thread(check_offline, data, tmp_path, agency, node.app[DESK].node_key,
                            [node.app[CLIPS].path(c.file) for c in clips])
    # Downloaded: it can no longer be withdrawn.
    status, body = await call(manager, "DELETE", f"{node.url}/api/requests/{request_id}/clips/{given['clip_uid']}/consent")
    assert status == 409 and "already downloaded" in body["error"]


def check_offline(data: bytes, folder: Path, agency: Agency, node_key: str, originals: list[Path]) -> None:
    """What the agency does with the file, offline: verify it, then play every picture of the joined video."""
    (folder / "case.nnbundle").write_bytes(data)
    result = verify_bundle(folder / "case.nnbundle", agency.keys, folder / "out", expected_node_key=node_key)
    assert [p.read_bytes() for p in result.parts] == [p.read_bytes() for p in originals]
    assert len(result.manifest["range"]["gaps"]) == 5
    with av.open(str(result.clip)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4 * 20


async def test_a_range_within_its_cooling_off_is_withdrawn_without_trace(building):
    node, manager, agency, clips, start, request_id = building
    node.app[DESK].consents.cooling_off = 3600
    entries = await node.app[AUDIT].entries()
    status, body = await call(manager, "POST", f"{node.url}/api/requests/{request_id}/ranges",
                              json={"camera": "yard", "start": start + 600, "end": start + 1600})
    assert status == 201, body
    given = body["consent"]
    assert given["range"]["clips"] == 2
    await node.app[DESK].idle()
    status, body = await call(manager, "DELETE",
                              f"{node.url}/api/requests/{request_id}/clips/{given['clip_uid']}/consent")
    assert status == 200 and body["consent"]["erased"], body
    assert await node.app[AUDIT].entries() == entries
    assert (await agency.call("GET", node.url + "/api/agency/bundles"))[1]["bundles"] == []
    for clip in clips:
        assert await node.app[CLIPS].holds(clip) == []
    assert not await asyncio.to_thread(lambda: list(node.app[DESK].delivery.folder.glob("*.nnbundle")))


async def test_ranges_out_of_bounds_are_refused_with_the_reason(building, monkeypatch):
    node, manager, agency, clips, start, request_id = building
    url = f"{node.url}/api/requests/{request_id}/ranges"
    for body, status, words in [
        ({"camera": "yard", "start": start - 60}, 400, "must lie within the request's window"),
        ({"camera": "yard", "start": start + 100, "end": start + 50}, 400, "must end after it starts"),
        ({"camera": "yard", "start": start + 1600, "end": start + 2000}, 409, "none of your matching clips"),
        ({"camera": "porch"}, 409, "camera 'porch'"),
        ({"camera": "yard", "start": "soon"}, 400, "request body: start"),
        ({"camera": "../x"}, 400, "request body: camera"),
        ({"camera": "yard", "choice": "raw"}, 400, "request body: choice"),
    ]:
        got, answer = await call(manager, "POST", url, json=body)
        assert (got, words in answer.get("error", "")) == (status, True), (body, answer)
    monkeypatch.setattr(ranges, "MAX_CLIPS", 3)
    got, answer = await call(manager, "POST", url + "/preview", json={"camera": "yard"})
    assert got == 413 and "holds 4 clips; one bundle joins at most 3" in answer["error"]
    got, answer = await call(manager, "POST", url, json={"camera": "yard", "start": start + 600})
    assert got == 201, answer   # two clips: within the cap
    assert len([e for e in await node.app[AUDIT].entries() if e["action"] == "consent"]) == 1
