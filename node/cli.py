"""The `nnode` command line: set up, run and manage a node.

This module finds the config and assembles the parser; the commands live in node/commands/, one module per group of
what they act on, each registering its own subcommands.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from node import __version__
from node.commands import appliance, federation, maps, people, safety, sharing
from node.commands.appliance import initialise
from node.config import Config, load
from node.errors import ConfigError, NodeError
from node.logs import setup_logging

__all__ = ["DEFAULT_CONFIG", "DEFAULT_CONFIGS", "build_parser", "initialise", "main"]

# Where the config is looked for, first found wins: the appliance keeps its settings on the data partition, which
# updates never write (first boot seeds it from the image's /etc/nnode/config.toml.default); a hand-made install
# puts its config in /etc.
DEFAULT_CONFIGS = (Path("/var/lib/nnode/config.toml"), Path("/etc/nnode/config.toml"))
DEFAULT_CONFIG = DEFAULT_CONFIGS[0]

Command = Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]
OfflineCommand = Callable[[argparse.Namespace], int]


def _config(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get("NNODE_CONFIG")
    if path is None:
        path = next((candidate for candidate in DEFAULT_CONFIGS if candidate.exists()), None)
    config = load(path)
    if args.data_dir:
        config = config.replace(node={"data_dir": Path(args.data_dir).expanduser().resolve()})
    return config


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: the global options, then each group's subcommands in the order `--help` lists them."""
    parser = argparse.ArgumentParser(prog="nnode", description="Neighborhood Node: a privacy-first "
                                     "neighborhood safety appliance.")
    parser.add_argument("--config", help="config file (default: $NNODE_CONFIG, else the first present of "
                        f"{', '.join(map(str, DEFAULT_CONFIGS))})")
    parser.add_argument("--data-dir", help="override node.data_dir")
    parser.add_argument("--version", action="version", version=f"nnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    appliance.add_node_commands(sub)
    federation.add_commands(sub)
    appliance.add_backup_commands(sub)
    safety.add_commands(sub)
    maps.add_commands(sub)
    people.add_commands(sub)
    appliance.add_upkeep_commands(sub)
    sharing.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nnode` console script."""
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # the database, key and socket are for the node's user only
    if getattr(args, "offline", False):
        # Agencies run these on their own machines: no config file, data folder or node is read.
        offline: OfflineCommand = args.func
        try:
            return offline(args)
        except KeyboardInterrupt:
            return 130
    command: Command = args.func
    try:
        config = _config(args)
        if args.command == "demo" and not args.data_dir and config.source == "<defaults>":
            config = appliance.demo_config(config, args.port or appliance.DEMO_PORT)
        setup_logging(config.log.level, config.log.format)
        return asyncio.run(command(config, args))
    except ConfigError as exc:
        print(f"nnode: config error: {exc}", file=sys.stderr)
        return 2
    except NodeError as exc:
        print(f"nnode: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
