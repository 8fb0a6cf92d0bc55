"""The offline street map: an MBTiles file of raster tiles the manager loads, served by the node itself.

MBTiles (https://github.com/mapbox/mbtiles-spec, 1.3) is one SQLite file: a `metadata` table of name/value pairs and
a `tiles` table (zoom_level, tile_column, tile_row, tile_data) in the TMS scheme, whose rows count from the south,
so a web map's y is flipped. The manager exports the neighbourhood from an OpenStreetMap extract as PNG, JPEG or
WebP tiles (QGIS's "Generate XYZ tiles (MBTiles)" does this) and runs `nnode map load FILE`; the node checks the
file, copies it into its data folder (the old map stays until the new one is whole) and the residents' map draws
streets from it with no request leaving the building's network. Vector tiles (`pbf`) are refused with the reason.

The file is read, never written, by the node: each request opens nothing new (one read-only connection, reopened
when `nnode map load` replaced the file), runs in a worker thread and returns one tile.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from node.errors import BadRequest, NodeError, NotFound

FILE_NAME = "basemap.mbtiles"
MAX_FILE_BYTES = 4 << 30          # a neighbourhood to zoom 18 is tens of MB; a city, a few hundred
MAX_TILE_BYTES = 1 << 20          # one 256 or 512 px raster tile is a few to a few hundred KB
MAX_ZOOM = 22
FORMATS = {"png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
           "jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
           "jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
           "webp": ("image/webp", (b"RIFF",))}
SQLITE_MAGIC = b"SQLite format 3\x00"


class MapFileError(NodeError):
    """An MBTiles file the node cannot serve, with what was wrong."""


@dataclass(frozen=True)
class MapInfo:
    """What a loaded map covers: its tile format, zoom range, bounds and attribution, from its metadata."""

    name: str
    format: str
    minzoom: int
    maxzoom: int
    bounds: tuple[float, float, float, float]   # west, south, east, north, in degrees
    attribution: str
    tiles: int
    size: int

    @property
    def content_type(self) -> str:
        return FORMATS[self.format][0]

    def describe(self) -> dict[str, object]:
        """The JSON the residents' map reads (GET /api/map)."""
        return {"url": "/map/tiles/{z}/{x}/{y}", "name": self.name, "format": self.format, "minzoom": self.minzoom,
                "maxzoom": self.maxzoom, "bounds": list(self.bounds), "attribution": self.attribution}


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)


def _metadata(db: sqlite3.Connection, where: str) -> dict[str, str]:
    try:
        rows = db.execute("SELECT name, value FROM metadata").fetchall()
    except sqlite3.DatabaseError as exc:
        raise MapFileError(f"{where}: no readable MBTiles `metadata` table ({exc})") from exc
    return {str(name): str(value) for name, value in rows[:1000] if name is not None and value is not None}


def _bounds(text: str | None, where: str) -> tuple[float, float, float, float]:
    if not text:
        return (-180.0, -85.0511, 180.0, 85.0511)
    try:
        west, south, east, north = (float(part) for part in text.split(","))
    except ValueError:
        raise MapFileError(f"{where}: metadata `bounds` must be `west,south,east,north` in degrees, "
                           f"not {text[:80]!r}") from None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise MapFileError(f"{where}: metadata `bounds` {text[:80]!r} is not a box on the Earth "
                           "(west < east within ±180, south < north within ±90)")
    return (west, south, east, north)


def inspect(path: Path) -> MapInfo:
    """Check an MBTiles file and say what it holds; MapFileError says what is wrong (blocking: run in a thread)."""
    where = str(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            magic = file.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise MapFileError(f"{where}: {exc.strerror or exc}") from exc
    if magic != SQLITE_MAGIC:
        raise MapFileError(f"{where}: not an MBTiles file (an MBTiles file is an SQLite database)")
    if size > MAX_FILE_BYTES:
        raise MapFileError(f"{where}: {size} bytes, more than the {MAX_FILE_BYTES} bytes a node keeps for its map")
    db = _open(path)
    try:
        meta = _metadata(db, where)
        fmt = meta.get("format", "").lower()
        if fmt == "pbf":
            raise MapFileError(f"{where}: holds vector tiles (format pbf); the node draws raster tiles: export the "
                               "map as PNG, JPEG or WebP tiles")
        try:
            first = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles LIMIT 1").fetchone()
            low, high, count = db.execute("SELECT min(zoom_level), max(zoom_level), count(*) FROM tiles").fetchone()
        except sqlite3.DatabaseError as exc:
            raise MapFileError(f"{where}: no readable MBTiles `tiles` table with zoom_level, tile_column, tile_row "
                               f"and tile_data ({exc})") from exc
        if first is None:
            raise MapFileError(f"{where}: the `tiles` table is empty")
        data = first[3]
        if not isinstance(data, bytes):
            raise MapFileError(f"{where}: tile {first[0]}/{first[1]}/{first[2]} holds no image data")
        if not fmt:  # MBTiles 1.3 requires `format`; older files are recognised by their first tile
            fmt = next((name for name, (_, magics) in FORMATS.items() if data.startswith(magics)), "")
        if fmt not in FORMATS:
            raise MapFileError(f"{where}: tile format {meta.get('format', '(none)')!r} is not one the node serves "
                               f"({', '.join(sorted(set(FORMATS) - {'jpeg'}))})")
        if not data.startswith(FORMATS[fmt][1]):
            raise MapFileError(f"{where}: metadata says {fmt} but tile {first[0]}/{first[1]}/{first[2]} is not {fmt}")
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high <= MAX_ZOOM):
            raise MapFileError(f"{where}: zoom levels {low}..{high} are outside 0..{MAX_ZOOM}")
        return MapInfo(name=meta.get("name", path.stem)[:200], format=fmt, minzoom=low, maxzoom=high,
                       bounds=_bounds(meta.get("bounds"), where), attribution=meta.get("attribution", "")[:500],
                       tiles=int(count), size=size)
    finally:
        db.close()


def load(source: Path, data_dir: Path) -> MapInfo:
    """Check `source`, then copy it into the node's map folder, replacing the map atomically (blocking)."""
    inspect(source)
    folder = data_dir / "map"
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    partial = folder / f".{FILE_NAME}.partial"
    try:
        with source.open("rb") as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        info = inspect(partial)      # the copy, as the node will read it
        os.replace(partial, folder / FILE_NAME)
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return info
    except OSError as exc:
        raise MapFileError(f"{folder}: could not copy the map in ({exc.strerror or exc}); the old map is kept") \
            from exc
    finally:
        partial.unlink(missing_ok=True)


def remove(data_dir: Path) -> bool:
    """Remove the loaded map; False if there was none."""
    try:
        (data_dir / "map" / FILE_NAME).unlink()
    except FileNotFoundError:
        return False
    return True


class Basemap:
    """The loaded map as the node serves it: reopened when the file was replaced, closed at shutdown."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "map" / FILE_NAME
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._db: sqlite3.Connection | None = None
        self._info: MapInfo | None = None
        self._broken = ""

    def _current(self) -> sqlite3.Connection | None:
        """The connection to today's file, under the lock (blocking)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._close()
            return None
        stamp = (stat.st_ino, stat.st_mtime_ns)
        if stamp != self._stamp:
            self._close()
            self._stamp = stamp
            try:
                self._info = inspect(self.path)
                self._db = _open(self.path)
                self._broken = ""
            except MapFileError as exc:
                self._broken = str(exc)
        return self._db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db, self._info, self._stamp = None, None, None

    def _info_now(self) -> MapInfo | None:
        with self._lock:
            self._current()
            return self._info

    def _tile(self, z: int, x: int, y: int) -> tuple[bytes, str] | str:
        with self._lock:
            db = self._current()
            if db is None or self._info is None:
                return f"the loaded map is unreadable: {self._broken}" if self._broken else "no map is loaded"
            row = db.execute("SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                             (z, x, (1 << z) - 1 - y)).fetchone()
            if row is None or not isinstance(row[0], bytes):
                return f"no tile {z}/{x}/{y} in the loaded map"
            if len(row[0]) > MAX_TILE_BYTES:
                return f"tile {z}/{x}/{y} is over {MAX_TILE_BYTES} bytes; the node does not serve it"
            return row[0], self._info.content_type

    async def info(self) -> MapInfo | None:
        """What the loaded map covers, or None when no map is loaded (or the file became unreadable)."""
        return await asyncio.to_thread(self._info_now)

    async def tile(self, z: int, x: int, y: int) -> tuple[bytes, str] | str:
        """One tile's bytes and content type, in the web map's (XYZ) numbering, or why there is none."""
        return await asyncio.to_thread(self._tile, z, x, y)

    async def close(self) -> None:
        await asyncio.to_thread(self._locked_close)

    def _locked_close(self) -> None:
        with self._lock:
            self._close()


def _coordinate(request: web.Request) -> tuple[int, int, int]:
    values = []
    for name in ("z", "x", "y"):
        text = request.match_info[name].removesuffix(".png").removesuffix(".jpg").removesuffix(".webp")
        if not (text.isascii() and text.isdigit() and len(text) <= 8):
            raise BadRequest(f"tile {name} must be a whole number, not {text[:20]!r}")
        values.append(int(text))
    z, x, y = values
    if z > MAX_ZOOM or x >= 1 << z or y >= 1 << z:
        raise BadRequest(f"no tile {z}/{x}/{y}: zoom is 0..{MAX_ZOOM} and x and y are below 2^zoom")
    return z, x, y


async def serve_tile(basemap: Basemap, request: web.Request) -> web.Response:
    """GET /map/tiles/{z}/{x}/{y}: one tile of the loaded map."""
    z, x, y = _coordinate(request)
    found = await basemap.tile(z, x, y)
    if isinstance(found, str):
        raise NotFound(found)
    body, content_type = found
    return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "private, max-age=3600"})
