"""Federation: the node's event kinds and their areas, the sync engine's lifecycle, peers, discovery and metrics."""
