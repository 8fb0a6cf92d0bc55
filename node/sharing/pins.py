"""Node keys the agency client has pinned: trust on first use, kept in the agency's own folder (docs/agencies.md).

A node's descriptor comes over the same connection as its bundles, so on its own it proves nothing against a man in
the middle who serves his own key and bundles signed with it. The client therefore remembers each node's key the
first time it meets the node (or the key the agency was given, `--node-key`) and refuses a different key later,
naming both. The file is JSON, one entry per node address:

    {"v": 1, "nodes": {"http://node-a.example:8470": {"key": "<64 hex>", "since": "2026-12-03T14:05:09Z",
                                                      "source": "first contact"}}}
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.errors import NodeError
from node.sharing.requests import format_time

FILE_NAME = "known-nodes.json"
"""The default file, in the folder of the agency key file."""

FIRST_CONTACT = "first contact"
COMMAND_LINE = "command line"
MAX_FILE = 4 * 1024 * 1024


class PinError(NodeError):
    """The pinned-keys file cannot be read or written, or is not what this module writes."""


class NodeKeyChanged(NodeError):
    """The node answered with a key other than the one pinned for it (or given on the command line)."""


@dataclass(frozen=True)
class Expected:
    """The key a node's bundles must be signed by, and where the client got it."""

    key: str
    origin: str
    """For the report: "pinned on 2026-12-03T14:05:09Z (first contact)", "given on the command line", or
    "first contact now, unverified"."""


def _hex_key(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise PinError(f"{where}: expected 64 lowercase hex digits of an ed25519 public key, got {value!r}")
    return value


class KnownNodes:
    """The pinned node keys in one file (blocking file calls: run them in a thread from async code)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, dict[str, str]]:
        """The pins by node address (none if the file does not exist yet)."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(MAX_FILE + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise PinError(f"{self.path}: cannot read the pinned node keys: {exc.strerror or exc}") from exc
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise PinError(f"{self.path}: not JSON ({exc}); it holds the node keys this agency pinned") from None
        if len(raw) > MAX_FILE or not isinstance(value, dict) or value.get("v") != 1 or \
                not isinstance(value.get("nodes"), dict):
            raise PinError(f'{self.path}: expected {{"v": 1, "nodes": {{...}}}} as `nnode agency-client` writes')
        nodes: dict[str, dict[str, str]] = {}
        for address, entry in value["nodes"].items():
            if not isinstance(entry, dict):
                raise PinError(f"{self.path}: nodes[{address!r}]: expected an object")
            nodes[address] = {"key": _hex_key(entry.get("key"), f"{self.path}: nodes[{address!r}].key"),
                              "since": str(entry.get("since", "")), "source": str(entry.get("source", ""))}
        return nodes

    def _save(self, nodes: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.part")
        data = json.dumps({"v": 1, "nodes": nodes}, indent=2, sort_keys=True).encode() + b"\n"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise PinError(f"{self.path}: cannot write the pinned node keys: {exc.strerror or exc}") from exc

    def expect(self, address: str, served: str, given: str | None = None, now: float | None = None) -> Expected:
        """The key to verify `address`'s bundles against, given the key its descriptor `served` now.

        With `given` (the agency's own knowledge, `--node-key`): the node must serve it, and it becomes the pin.
        Else a pinned key must equal the served one (NodeKeyChanged naming both otherwise). Else this is the first
        contact: the served key is pinned, and the report says it is unverified."""
        stamp = format_time(time.time() if now is None else now)
        nodes = self.load()
        pinned = nodes.get(address)
        if given is not None:
            if served != given:
                raise NodeKeyChanged(f"{address} answers with node key {served}, not the node key {given} given "
                                     "on the command line: refused (a man in the middle, or the wrong node)")
            if pinned is None or pinned["key"] != given:
                nodes[address] = {"key": given, "since": stamp, "source": COMMAND_LINE}
                self._save(nodes)
            return Expected(given, "given on the command line")
        if pinned is not None:
            if served != pinned["key"]:
                raise NodeKeyChanged(
                    f"{address} answers with node key {served}, but node key {pinned['key']} was pinned for it on "
                    f"{pinned['since']} ({pinned['source']}): refused. If its manager confirms the node has a new "
                    f"key, fetch again with --node-key {served} (or remove its entry from {self.path})")
            return Expected(pinned["key"], f"pinned on {pinned['since']} ({pinned['source']})")
        nodes[address] = {"key": served, "since": stamp, "source": FIRST_CONTACT}
        self._save(nodes)
        return Expected(served, "first contact now, unverified: pinned from the node's own answer; compare it "
                                "with the key its manager gives you")
