"""Neighborhood Node: the appliance (config, CLI, app, storage) built on the sync/ federation library."""

__version__ = "0.1.0"
