"""`nnode map`: load, show or remove the offline street map (an MBTiles file of raster tiles; node/safety/basemap.py).

These act on the node's data folder, so they work whether the node runs or not; a running node serves a newly
loaded map from its next request on.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from node.config import Config
from node.safety import basemap


def _summary(info: basemap.MapInfo) -> str:
    west, south, east, north = info.bounds
    return (f"{info.name}: {info.tiles} {info.format} tiles, zoom {info.minzoom}-{info.maxzoom}, "
            f"{info.size / 1e6:.1f} MB, bounds {west:.4f},{south:.4f} to {east:.4f},{north:.4f}"
            + (f"; {info.attribution}" if info.attribution else ""))


async def cmd_map(config: Config, args: argparse.Namespace) -> int:
    """Load, show or remove the street map residents see."""
    data_dir = config.node.data_dir
    if args.action == "load":
        info = await asyncio.to_thread(basemap.load, Path(args.file), data_dir)
        print(f"loaded {_summary(info)}")
        if not info.attribution:
            print("note: the file names no attribution; OpenStreetMap data needs \"© OpenStreetMap contributors\" "
                  "shown with the map (set the MBTiles metadata `attribution`)")
    elif args.action == "remove":
        removed = await asyncio.to_thread(basemap.remove, data_dir)
        print("removed the street map; residents see the plain map" if removed else "no street map is loaded")
    else:
        path = data_dir / "map" / basemap.FILE_NAME
        if not await asyncio.to_thread(path.exists):
            print("no street map is loaded (nnode map load FILE.mbtiles)")
        else:
            print(_summary(await asyncio.to_thread(basemap.inspect, path)))
    return 0


def add_commands(sub: Any) -> None:
    """Register `nnode map` on the `nnode` subparsers."""
    maps = sub.add_parser("map", help="load, show or remove the offline street map (MBTiles of raster tiles)")
    maps_sub = maps.add_subparsers(dest="action", required=True)
    load = maps_sub.add_parser("load", help="check an MBTiles file and make it the map residents see")
    load.add_argument("file")
    maps_sub.add_parser("show", help="what the loaded map covers")
    maps_sub.add_parser("remove", help="go back to the plain map")
    maps.set_defaults(func=cmd_map)
