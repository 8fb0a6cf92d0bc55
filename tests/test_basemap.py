"""The offline street map: the manager loads an MBTiles extract with `nnode map load`, the node checks it and serves
its tiles to signed-in residents, and the residents' map (Leaflet, shipped with the node) draws streets from it with
the node, its peers and the alert areas on top, with no request leaving the node. The extract is made here: PNG
tiles of a street grid around the building, in the TMS numbering MBTiles uses."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from node.safety import basemap
from tests.people import browser as http_client
from tests.people import call, claim, invite, join
from tests.test_browser import HERE, PHONE, chromium, shot  # noqa: F401  (chromium is a fixture)
from tests.test_reports import form

LAT, LON = float(HERE["node__latitude"]), float(HERE["node__longitude"])
STREET = (40, 40, 40)          # BGR of the drawn streets
GROUND = (235, 242, 245)


def tile_of(lat: float, lon: float, z: int) -> tuple[int, int]:
    """The XYZ (web map) tile holding a point."""
    n = 1 << z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def street_tile(x: int, y: int, z: int, fmt: str = ".png") -> bytes:
    """A 256 px tile: light ground crossed by dark streets every 64 px, numbered so a wrong tile is visible."""
    image = np.full((256, 256, 3), GROUND, np.uint8)
    for at in range(32, 256, 64):
        cv2.line(image, (at, 0), (at, 255), STREET, 6)
        cv2.line(image, (0, at), (255, at), STREET, 6)
    cv2.putText(image, f"{z}/{x}/{y}", (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 200), 1)
    ok, data = cv2.imencode(fmt, image)
    assert ok
    return data.tobytes()


def make_mbtiles(path: Path, zooms=(14, 15, 16), *, fmt: str = "png", metadata: dict | None = None,
                 around: int = 2) -> dict[tuple[int, int, int], bytes]:
    """An MBTiles file of street tiles around the building; returns the tiles by their XYZ numbers."""
    tiles = {}
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        db.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
        meta = {"name": "Lower Manhattan", "format": fmt, "bounds": f"{LON - 0.03},{LAT - 0.02},{LON + 0.03},"
                f"{LAT + 0.02}", "attribution": "© OpenStreetMap contributors", "minzoom": str(min(zooms)),
                "maxzoom": str(max(zooms))}
        meta.update(metadata or {})
        db.executemany("INSERT INTO metadata VALUES (?, ?)", [(k, v) for k, v in meta.items() if v is not None])
        for z in zooms:
            cx, cy = tile_of(LAT, LON, z)
            for x in range(cx - around, cx + around + 1):
                for y in range(cy - around, cy + around + 1):
                    tiles[(z, x, y)] = data = street_tile(x, y, z, ".jpg" if fmt == "jpg" else ".png")
                    db.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, (1 << z) - 1 - y, data))
    db.close()
    return tiles


def nnode(node, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", "--data-dir", str(node.config.node.data_dir), *args],
                          capture_output=True, text=True, timeout=120)


# -- the file's checks ------------------------------------------------------------------------------------------


def _sqlite(path: Path, *statements: str) -> Path:
    db = sqlite3.connect(path)
    with db:
        for statement in statements:
            db.execute(statement)
    db.close()
    return path


@pytest.mark.parametrize("make, words", [
    (lambda p: (p.write_text("<html>a page, not a map</html>"), p)[1], "not an MBTiles file"),
    (lambda p: _sqlite(p, "CREATE TABLE other (a)"), "no readable MBTiles `metadata` table"),
    (lambda p: _sqlite(p, "CREATE TABLE metadata (name, value)"), "no readable MBTiles `tiles` table"),
    (lambda p: _sqlite(p, "CREATE TABLE metadata (name, value)", "CREATE TABLE tiles (zoom_level, tile_column, "
                       "tile_row, tile_data)"), "the `tiles` table is empty"),
    (lambda p: make_mbtiles(p, metadata={"format": "pbf"}) and p, "vector tiles (format pbf)"),
    (lambda p: make_mbtiles(p, metadata={"format": "tiff"}) and p, "tile format 'tiff' is not one the node serves"),
    (lambda p: make_mbtiles(p, fmt="jpg", metadata={"format": "png"}) and p, "metadata says png but tile"),
    (lambda p: make_mbtiles(p, metadata={"bounds": "north of here"}) and p, "metadata `bounds` must be"),
    (lambda p: make_mbtiles(p, metadata={"bounds": "10,10,5,20"}) and p, "is not a box on the Earth"),
    (lambda p: make_mbtiles(p, zooms=(23,), around=0) and p, "zoom levels 23..23 are outside 0..22"),
])
def test_a_file_that_is_not_a_raster_map_is_refused_with_the_reason(tmp_path, make, words):
    path = make(tmp_path / "upload.mbtiles")
    with pytest.raises(basemap.MapFileError) as caught:
        basemap.inspect(path)
    assert words in str(caught.value) and str(path) in str(caught.value), caught.value


def test_a_map_without_format_metadata_is_known_by_its_tiles(tmp_path):
    path = tmp_path / "old.mbtiles"
    make_mbtiles(path, fmt="jpg", metadata={"format": None, "bounds": None})
    info = basemap.inspect(path)
    assert (info.format, info.content_type, info.minzoom, info.maxzoom) == ("jpg", "image/jpeg", 14, 16)
    assert info.bounds == (-180.0, -85.0511, 180.0, 85.0511)


# -- loading and serving ----------------------------------------------------------------------------------------


async def test_the_manager_loads_a_map_and_residents_get_its_tiles(make_node, tmp_path):
    node = await make_node("home", **HERE)
    extract = tmp_path / "lower-manhattan.mbtiles"
    tiles = await asyncio.to_thread(make_mbtiles, extract)
    async with http_client() as manager, http_client() as resident, http_client() as stranger:
        await claim(node, manager)
        await join(node, resident, (await invite(node, manager))["code"])
        _, answer = await call(resident, "GET", node.url + "/api/map")
        assert answer["basemap"] is None
        status, refused = await call(resident, "GET", node.url + "/map/tiles/15/9647/12320")
        assert status == 404 and refused["error"] == "no map is loaded"

        result = await asyncio.to_thread(nnode, node, "map", "load", str(extract))
        assert result.returncode == 0, result.stderr
        assert "loaded Lower Manhattan: 75 png tiles, zoom 14-16" in result.stdout
        _, answer = await call(resident, "GET", node.url + "/api/map")
        assert answer["basemap"] == {"url": "/map/tiles/{z}/{x}/{y}", "name": "Lower Manhattan", "format": "png",
                                     "minzoom": 14, "maxzoom": 16, "attribution": "© OpenStreetMap contributors",
                                     "bounds": [LON - 0.03, LAT - 0.02, LON + 0.03, LAT + 0.02]}
        (z, x, y), expected = next(iter(tiles.items()))
        async with resident.get(node.url + f"/map/tiles/{z}/{x}/{y}") as resp:
            assert resp.status == 200 and resp.content_type == "image/png"
            assert await resp.read() == expected       # the XYZ row, not the TMS one
        status, missing = await call(resident, "GET", node.url + "/map/tiles/15/1/1")
        assert status == 404 and missing["error"] == "no tile 15/1/1 in the loaded map"
        for bad, words in (("23/0/0", "zoom is 0..22"), ("3/8/0", "below 2^zoom"), ("3/-1/0", "whole number"),
                           ("3/0/1e3", "whole number"), ("3/0/99999999999", "whole number")):
            status, refused = await call(resident, "GET", node.url + f"/map/tiles/{bad}")
            assert status == 400 and words in refused["error"], (bad, refused)
        async with stranger.get(node.url + f"/map/tiles/{z}/{x}/{y}") as resp:
            assert resp.status == 401       # the building's map is for its residents

        # A bad file is refused with the reason and the loaded map stays.
        broken = tmp_path / "broken.mbtiles"
        await asyncio.to_thread(make_mbtiles, broken, metadata={"format": "pbf"})
        result = await asyncio.to_thread(nnode, node, "map", "load", str(broken))
        assert result.returncode == 1 and "vector tiles (format pbf)" in result.stderr, result.stderr
        async with resident.get(node.url + f"/map/tiles/{z}/{x}/{y}") as resp:
            assert resp.status == 200 and await resp.read() == expected

        # A new map replaces the old one while the node runs; removing it goes back to the plain map.
        smaller = tmp_path / "smaller.mbtiles"
        new_tiles = await asyncio.to_thread(make_mbtiles, smaller, zooms=(15,), fmt="jpg", around=1)
        assert (await asyncio.to_thread(nnode, node, "map", "load", str(smaller))).returncode == 0
        (z, x, y), expected = next(iter(new_tiles.items()))
        async with resident.get(node.url + f"/map/tiles/{z}/{x}/{y}") as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg" and await resp.read() == expected
        shown = await asyncio.to_thread(nnode, node, "map", "show")
        assert "9 jpg tiles, zoom 15-15" in shown.stdout
        assert "removed the street map" in (await asyncio.to_thread(nnode, node, "map", "remove")).stdout
        _, answer = await call(resident, "GET", node.url + "/api/map")
        assert answer["basemap"] is None


# -- in the browser ---------------------------------------------------------------------------------------------


async def test_the_residents_map_draws_streets_from_the_loaded_extract(make_node, chromium, tmp_path):  # noqa: F811
    from playwright.async_api import expect

    node = await make_node("home", **HERE, node__name="Elm Street 12")
    extract = tmp_path / "extract.mbtiles"
    await asyncio.to_thread(make_mbtiles, extract)
    assert (await asyncio.to_thread(nnode, node, "map", "load", str(extract))).returncode == 0
    errors: list[str] = []
    requests: list[str] = []
    async with http_client() as manager:
        await claim(node, manager)
        status, _ = await call(manager, "POST", node.url + "/api/alerts", json={
            "event": "Water main break", "severity": "Severe", "radius_km": 0.4})
        assert status == 200
        code = (await invite(node, manager))["code"]
        async with http_client() as neighbour:
            await join(node, neighbour, (await invite(node, manager, unit="2A"))["code"])
            status, _ = await call(neighbour, "POST", node.url + "/api/reports", data=form(
                what="Someone tried every car door on the street around 2 am.", category="crime"))
            assert status == 201
    context = await chromium.new_context(**PHONE)
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: requests.append(request.url))
    await page.goto(node.url + f"/join#code={code}")
    await page.click("#join-submit")
    await page.wait_for_url(node.url + "/")
    await page.click('#tabs button[data-view="map"]')
    streets = page.locator("#map-canvas .map-streets")
    await expect(streets).to_be_visible()
    # Every tile shown came from the node and decoded as a picture: the streets are drawn.
    await page.wait_for_function("""() => {
        const tiles = [...document.querySelectorAll('#map-canvas img.leaflet-tile')];
        return tiles.length >= 4 && tiles.every(t => t.complete && t.naturalWidth === 256);
    }""", timeout=20_000)
    await expect(page.locator("#map-canvas path.map-area-street")).to_have_count(1)
    await expect(page.locator("#map-canvas path.map-node-street")).to_have_count(1)
    await expect(page.locator(".leaflet-control-attribution")).to_contain_text("OpenStreetMap contributors")
    await expect(page.locator("#map-list")).to_contain_text("Water main break")
    # The report is placed at its building (a report has no position of its own), and lists what it says.
    report = page.locator("#map-canvas .map-report-street")
    await expect(report).to_have_text("1")
    await expect(page.locator("#map-list")).to_contain_text("crime at Elm Street 12: Someone tried every car door")
    await report.click()
    await expect(page.locator(".leaflet-popup .map-report-list")).to_contain_text("tried every car door")
    await shot(page, "map-streets")
    # The screenshot holds the streets' dark lines (the plain map has none).
    picture = cv2.imdecode(np.frombuffer(await streets.screenshot(), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert (picture < 70).mean() > 0.02, (picture < 70).mean()
    assert all(url.startswith(node.url) for url in requests), [u for u in requests if not u.startswith(node.url)]
    assert any("/map/tiles/" in url for url in requests)
    assert not errors, errors
    await context.close()
