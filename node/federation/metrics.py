"""Prometheus metrics, gathered from the store and the sync engine at scrape time."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from node.identity import short_id
from sync import EventStore, PeerStore, SyncEngine


class _Snapshot:
    """Metric families built by `render_metrics` and handed to the registry's collect()."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


def _by_reason(name: str, documentation: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    """A counter family with one sample per reason, in reason order."""
    family = CounterMetricFamily(name, documentation, labels=["reason"])
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], count)
    return family


async def render_metrics(engine: SyncEngine, store: EventStore, peers: PeerStore, started: float,
                         extra: Iterable[Metric] = ()) -> bytes:
    """The Prometheus text exposition of this node's metrics."""
    now = time.time()
    stats = engine.stats
    families: list[Metric] = []

    stored = GaugeMetricFamily("nnode_events_stored", "Events (headers) held, by kind.", labels=["kind"])
    for kind, count in sorted((await store.counts_by_kind()).items()):
        stored.add_metric([kind], count)
    families.append(stored)
    families.append(CounterMetricFamily("nnode_events_accepted", "Events stored since start (new or body filled).",
                                        value=stats.stored))
    families.append(CounterMetricFamily("nnode_events_duplicate", "Events received again and ignored (by id).",
                                        value=stats.duplicates))
    watermark, pruned = await store.horizon()
    families.append(CounterMetricFamily("nnode_events_pruned", "Expired event headers pruned by retention "
                                        "(their slots settled), over the store's life.", value=pruned))
    families.append(GaugeMetricFamily("nnode_events_horizon_timestamp_seconds", "Latest expiry among pruned headers: "
                                      "every header expired by then, but each author's latest, is pruned.", value=watermark))
    families.append(_by_reason("nnode_events_rejected", "Events refused since start, by reason.", stats.rejected))
    families.append(_by_reason("nnode_sync_requests_refused", "Sync requests refused (auth, approval, rate), "
                               "by reason.", stats.refused))
    families.append(CounterMetricFamily("nnode_push_dropped", "Events not pushed (peer down or outbox full); "
                                        "anti-entropy repairs them.", value=stats.push_dropped))
    families.append(_by_reason("nnode_sync_failed", "Syncs with a peer that failed (unreachable, too slow, an "
                               "answer too large or malformed), by reason.", stats.sync_failed))
    families.append(CounterMetricFamily("nnode_peer_false_claims", "Syncs after which a peer claimed to hold more "
                                        "of this node's own events than it sent (not believed).",
                                        value=stats.false_claims))
    families.append(CounterMetricFamily("nnode_out_of_area", "Events received and not kept, or not pushed to a peer, "
                                        "because they do not touch the area of interest.", value=stats.out_of_area))

    peer_list = await peers.list()
    by_state = GaugeMetricFamily("nnode_peers", "Known peers, by state.", labels=["state"])
    for state in ("approved", "pending"):
        by_state.add_metric([state], sum(1 for p in peer_list if p.state == state))
    families.append(by_state)
    last_sync = GaugeMetricFamily("nnode_peer_last_sync_timestamp_seconds", "Unix time of the last successful "
                                  "sync round with each approved peer.", labels=["peer", "name"])
    age = GaugeMetricFamily("nnode_peer_sync_age_seconds", "Seconds since the last successful sync round.",
                            labels=["peer", "name"])
    lag = GaugeMetricFamily("nnode_peer_sync_lag_events", "Events the peer held that this node lacked after the "
                            "last sync round.", labels=["peer", "name"])
    for peer in peer_list:
        if not peer.approved or peer.last_sync is None:
            continue
        labels = [short_id(peer.key), peer.name]
        last_sync.add_metric(labels, peer.last_sync)
        age.add_metric(labels, max(0.0, now - peer.last_sync))
        lag.add_metric(labels, peer.lag or 0)
    families += [last_sync, age, lag]
    families.append(GaugeMetricFamily("nnode_quarantined_authors", "Authors quarantined for equivocation.",
                                      value=len(await store.quarantined())))
    families.append(GaugeMetricFamily("nnode_uptime_seconds", "Seconds since the node started.", value=now - started))

    families += list(extra)
    snapshot = _Snapshot()
    snapshot.families = families
    registry = CollectorRegistry(auto_describe=False)
    registry.register(snapshot)
    return generate_latest(registry)
