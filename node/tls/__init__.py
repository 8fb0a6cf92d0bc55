"""HTTPS on the building's network: the node-local certificate authority residents install once, or the manager's
own certificate, served beside plain HTTP (docs/operations.md)."""
