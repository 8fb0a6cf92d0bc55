"""Cameras in a running node: motion clips from a simulated camera, who may see them, live view, playback with range
requests, holds and deletion, resident uploads, camera state in the API and metrics."""

from __future__ import annotations

import asyncio
import subprocess
import time

import aiohttp
import av
import cv2
import numpy as np

from node.keys import CAMERAS, CLIPS
from tests.conftest import wait_until
from tests.firmware.tools import need
from tests.people import browser, call, claim, invite, join

# Someone crosses the picture for 1.5 s every 5 s; pre and post capture of 1 s.
SIM = {"id": "yard", "name": "Back yard", "url": "sim:?width=320&height=240&fps=10&period=5&walk=1.5",
       "pre_capture": 1, "post_capture": 1, "privacy_masks": [[[0, 0], [0.25, 0], [0.25, 0.25], [0, 0.25]]]}


async def clips_of(session, node, **query) -> list[dict]:
    status, body = await call(session, "GET", node.url + "/api/clips", params=query)
    assert status == 200, body
    return body["clips"]


async def first_clip(session, node, timeout: float = 40.0) -> dict:
    found: list = []

    async def some() -> bool:
        found[:] = await clips_of(session, node)
        return bool(found)
    await wait_until(some, timeout=timeout, interval=0.5)
    return found[-1]


async def test_motion_clip_is_recorded_indexed_and_played_with_ranges(make_node):
    node = await make_node("a", cameras__devices=[SIM])
    async with browser() as manager:
        await claim(node, manager)
        clip = await first_clip(manager, node)
        assert clip["camera"] == "yard" and clip["kind"] == "motion" and clip["motion_score"] > 0
        # pre + walk + post is about 3.5 s; segments are 3 s, so the clip covers it with whole segments
        assert 3.0 <= clip["duration"] <= 12.0 and abs(clip["end"] - clip["start"] - clip["duration"]) < 0.01
        assert time.time() - 60 < clip["start"] < time.time()
        row = await node.app[CLIPS].get(clip["uid"])
        path = node.app[CLIPS].path(row.file)
        data = path.read_bytes()
        assert len(data) == clip["size"] and clip["sha256"] == __import__("hashlib").sha256(data).hexdigest()
        assert data.find(b"moov") < data.find(b"mdat")  # faststart: plays before it is all downloaded
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
        # Playback: whole file, then a range as a browser seeks
        async with manager.get(node.url + clip["video"]) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp4"
            assert resp.headers["Accept-Ranges"] == "bytes" and await resp.read() == data
        async with manager.get(node.url + clip["video"], headers={"Range": "bytes=100-199"}) as resp:
            assert resp.status == 206 and await resp.read() == data[100:200]
            assert resp.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        async with manager.get(node.url + clip["thumbnail"]) as resp:
            picture = cv2.imdecode(np.frombuffer(await resp.read(), np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape[1] == 320
        # The privacy mask (top-left quarter) is black in the thumbnail, the rest is not.
        assert picture[:50, :70].max() < 40 and picture[100:, 100:].mean() > 60


async def test_nothing_is_visible_to_residents_until_the_manager_allows_it(make_node):
    node = await make_node("a", cameras__devices=[SIM])
    async with browser() as manager, browser() as resident, browser() as stranger:
        await claim(node, manager)
        await join(node, resident, (await invite(node, manager))["code"])
        clip = await first_clip(manager, node)
        status, body = await call(resident, "GET", node.url + "/api/cameras")
        assert status == 200 and body["cameras"] == []
        assert await clips_of(resident, node) == []
        for path in (clip["video"], clip["thumbnail"], f"/api/clips/{clip['uid']}", "/api/cameras/yard/snapshot",
                     "/api/cameras/yard/live"):
            async with resident.get(node.url + path) as resp:
                assert resp.status == 404, path  # exactly like a clip that does not exist
                assert b"ftyp" not in await resp.read()
        async with stranger.get(node.url + clip["video"]) as resp:
            assert resp.status == 401
        status, _ = await call(resident, "PUT", node.url + "/api/cameras/yard/access",
                               json={"residents": True, "responders": True})
        assert status == 403
        # The manager allows residents: now they see the camera and its clips, but cannot delete them.
        status, body = await call(manager, "PUT", node.url + "/api/cameras/yard/access",
                                  json={"residents": True, "responders": False})
        assert status == 200 and body["access"] == {"residents": True, "responders": False}
        assert [c["uid"] for c in await clips_of(resident, node)][-1:] == [clip["uid"]] or \
            clip["uid"] in [c["uid"] for c in await clips_of(resident, node)]
        async with resident.get(node.url + clip["video"], headers={"Range": "bytes=0-7"}) as resp:
            assert resp.status == 206 and (await resp.read())[4:8] == b"ftyp"
        status, _ = await call(resident, "DELETE", node.url + f"/api/clips/{clip['uid']}")
        assert status == 404
        status, body = await call(resident, "GET", node.url + "/api/cameras")
        assert [c["id"] for c in body["cameras"]] == ["yard"] and "source" not in body["cameras"][0]
        status, bad = await call(manager, "PUT", node.url + "/api/cameras/yard/access", json={"residents": "yes"})
        assert status == 400 and "residents" in bad["error"]
        status, bad = await call(manager, "GET", node.url + "/api/clips?limit=\u00b2")
        assert status == 400 and "limit" in bad["error"]


async def test_live_view_and_snapshot_black_out_privacy_masks(make_node):
    node = await make_node("a", cameras__devices=[SIM])
    async with browser() as manager:
        await claim(node, manager)
        async with manager.get(node.url + "/api/cameras/yard/snapshot") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "image/jpeg"
            picture = cv2.imdecode(np.frombuffer(await resp.read(), np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape[:2] == (240, 320)
        assert picture[:55, :75].max() < 40 and picture[80:200, 100:].mean() > 60
        async with manager.get(node.url + "/api/cameras/yard/live") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            frames, buffer, started = 0, b"", time.monotonic()
            while frames < 5 and time.monotonic() - started < 10:
                buffer += await resp.content.read(65536)
                while (start := buffer.find(b"\xff\xd8")) >= 0 and (end := buffer.find(b"\xff\xd9", start)) >= 0:
                    jpeg, buffer = buffer[start:end + 2], buffer[end + 2:]
                    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                    assert image is not None and image[:55, :75].max() < 40
                    frames += 1
            assert frames >= 5  # about 5 pictures a second
        await wait_until(lambda: node.app[CAMERAS].camera("yard").viewers == 0, timeout=10)  # counted out


async def test_holds_keep_clips_from_deletion_and_the_guard(make_node):
    node = await make_node("a", cameras__devices=[SIM])
    async with browser() as manager:
        await claim(node, manager)
        clip = await first_clip(manager, node)
        status, body = await call(manager, "POST", node.url + f"/api/clips/{clip['uid']}/hold",
                                  json={"note": "case 14"})
        assert status == 200 and body["holds"][0]["reason"] == "manager"
        status, body = await call(manager, "DELETE", node.url + f"/api/clips/{clip['uid']}")
        assert status == 409 and "held" in body["error"]
        # The guard wanting every byte of the disk purges everything it may, and never the held clip.
        cameras = node.app[CAMERAS]
        cameras.min_free_percent = 100
        assert not await cameras.ensure_space()
        cameras.min_free_percent = 0
        remaining = await clips_of(manager, node)
        assert [c["uid"] for c in remaining if c["held"]] == [clip["uid"]]
        assert all(c["held"] for c in remaining)
        status, body = await call(manager, "DELETE", node.url + f"/api/clips/{clip['uid']}/hold")
        assert status == 200 and body["released"] == 1
        status, _ = await call(manager, "DELETE", node.url + f"/api/clips/{clip['uid']}")
        assert status == 200
        assert not node.app[CLIPS].path(f"yard/{clip['uid']}.mp4").exists()
        status, _ = await call(manager, "GET", node.url + f"/api/clips/{clip['uid']}")
        assert status == 404


async def test_camera_state_in_api_and_metrics_and_a_dead_camera_keeps_the_node_up(make_node):
    dead = {"id": "gate", "url": "rtsp://127.0.0.1:9/none", "transport": "tcp"}
    node = await make_node("a", cameras__devices=[SIM, dead])
    async with browser() as manager:
        await claim(node, manager)

        async def states() -> dict:
            _, body = await call(manager, "GET", node.url + "/api/cameras")
            return {c["id"]: c for c in body["cameras"]}
        await wait_until(lambda: _status(states, "yard", "streaming"), timeout=20, interval=0.3)
        await wait_until(lambda: _status(states, "gate", "reconnecting", "error"), timeout=30, interval=0.3)
        gate = (await states())["gate"]
        assert "127.0.0.1:9" in gate["source"] and gate["state"]["reason"]
        async with manager.get(node.url + "/api/cameras/gate/snapshot") as resp:
            body = await resp.json()
            assert resp.status == 503 and "gate has no picture" in body["error"]
        async with aiohttp.ClientSession() as anyone:
            async with anyone.get(node.url + "/metrics") as resp:
                text = await resp.text()
        assert 'nnode_camera_up{camera="yard",status="streaming"} 1.0' in text
        assert 'nnode_camera_up{camera="gate"' in text and "nnode_camera_segments_total" in text


async def _status(states, camera: str, *wanted: str) -> bool:
    return (await states())[camera]["state"]["status"] in wanted


async def _segments(session, node, camera: str) -> bool:
    """True once the camera's ring holds a finished segment (a few seconds of footage)."""
    _, body = await call(session, "GET", node.url + "/api/cameras")
    return any(c["id"] == camera and c["state"]["segments"] > 0 for c in body["cameras"])


async def test_sos_holds_every_cameras_footage_around_it(make_node):
    node = await make_node("a", cameras__devices=[SIM | {"detect_motion": False}], sos__hold_before=2,
                           sos__hold_after=2)
    async with browser() as manager, browser() as resident:
        await claim(node, manager)
        await join(node, resident, (await invite(node, manager))["code"])
        await wait_until(lambda: _segments(manager, node, "yard"), timeout=30, interval=0.3)  # footage before the call
        status, _ = await call(resident, "POST", node.url + "/api/sos", json={})
        assert status == 201
        clip = await first_clip(manager, node, timeout=30)
        assert clip["kind"] == "sos" and clip["held"] and clip["note"].startswith("SOS ")
        status, body = await call(manager, "DELETE", node.url + f"/api/clips/{clip['uid']}")
        assert status == 409


def ffmpeg_clip(path, *args) -> None:
    need("ffmpeg")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
                    "-t", "2", *args, str(path)], check=True, timeout=60)


async def test_resident_upload_is_checked_and_private_to_its_owner(make_node, tmp_path):
    node = await make_node("a", cameras__upload_max_mb=1)
    good, fake = tmp_path / "door.webm", tmp_path / "door.mp4"
    ffmpeg_clip(good, "-c:v", "libvpx", "-b:v", "200k")
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not really a video" * 100)
    async with browser() as manager, browser() as ada, browser() as bob:
        await claim(node, manager)
        await join(node, ada, (await invite(node, manager, unit="1A"))["code"])
        await join(node, bob, (await invite(node, manager, unit="2B"))["code"])

        async def upload(session, path, **fields):
            form = aiohttp.FormData()
            for key, value in fields.items():
                form.add_field(key, value)
            form.add_field("clip", path.read_bytes(), filename=path.name)
            return await call(session, "POST", node.url + "/api/uploads", data=form)
        status, body = await upload(ada, fake)
        assert status == 415 and body["error"].startswith("upload: ")
        big = tmp_path / "big.mp4"
        big.write_bytes(b"\x00" * (1 << 20) + b"x")
        status, body = await upload(ada, big)
        assert status == 413 and "1 MiB" in body["error"]
        status, body = await upload(ada, good, recorded_at="2026-11-20")
        assert status == 400 and "time zone" in body["error"]
        status, body = await upload(ada, good, recorded_at="2026-11-20T21:15:00-05:00", note="porch")
        assert status == 201, body
        clip = body["clip"]
        assert clip["upload"] and clip["start"] == 1795227300.0 and 1.8 < clip["duration"] < 2.3
        assert [c["uid"] for c in await clips_of(ada, node)] == [clip["uid"]]
        assert await clips_of(bob, node) == [] and await clips_of(manager, node) == []
        for session in (bob, manager):
            async with session.get(node.url + clip["video"]) as resp:
                assert resp.status == 404
        async with ada.get(node.url + clip["video"]) as resp:
            data = await resp.read()
        with av.open(__import__("io").BytesIO(data)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            assert len(container.streams) == 1
        status, _ = await call(manager, "POST", node.url + "/api/uploads", data=aiohttp.FormData({"x": "y"}))
        assert status == 403
        status, _ = await call(ada, "DELETE", node.url + f"/api/clips/{clip['uid']}")
        assert status == 200 and await clips_of(ada, node) == []
        assert not any(p.is_file() for p in (node.config.node.data_dir / "clips").rglob("*"))


async def test_live_viewer_limit_holds_for_viewers_arriving_together_and_shutdown_ends_views(make_node):
    node = await make_node("a", cameras__devices=[SIM], cameras__live_viewers=1)
    async with browser() as manager:
        await claim(node, manager)
        responses = await asyncio.gather(*(manager.get(node.url + "/api/cameras/yard/live") for _ in range(4)))
        try:
            assert sorted(r.status for r in responses) == [200, 503, 503, 503]
            assert node.app[CAMERAS].camera("yard").viewers == 1
            started = time.monotonic()
            await node.stop()  # an open live view must not hold up the node's shutdown
            assert time.monotonic() - started < 15
        finally:
            for response in responses:
                response.close()


async def test_a_camera_with_a_detect_stream_makes_motion_clips_from_it(make_node):
    main = {**SIM, "id": "porch", "url": "sim:?width=640&height=360&fps=10&period=5&walk=1.5",
            "detect_url": "sim:?width=320&height=240&fps=5&period=5&walk=1.5"}
    node = await make_node("a", cameras__devices=[main])
    async with browser() as manager:
        await claim(node, manager)
        clip = await first_clip(manager, node)
        assert clip["camera"] == "porch" and clip["kind"] == "motion"
        status, body = await call(manager, "GET", node.url + "/api/cameras")
        assert status == 200, body
        (camera,) = body["cameras"]
        assert camera["state"]["detect"] == "streaming 320x240" and camera["state"]["width"] == 640
        assert "sim:?width=320" not in str(body)  # the detect stream's URL is not shown, like the main one's
