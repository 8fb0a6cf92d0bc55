"""The app's typed keys: every long-lived object of a running node, named once, with its real class.

A leaf of the import graph: it imports the classes it names (stores, engines, desks), never a handler or the app,
so any handler can import it without a cycle.
"""

from __future__ import annotations

import nacl.signing
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from node.camera.clips import ClipIndex
from node.camera.manager import Cameras
from node.config import Config
from node.names import Names
from node.people.accounts import Accounts
from node.people.claim import Claims
from node.push.sender import Pusher
from node.safety.basemap import Basemap
from node.safety.early import Announcer
from node.safety.feeds import FeedPoller
from node.safety.live import Hub
from node.safety.reports import Reports
from node.safety.sos import SosDesk
from node.sharing.agencies import Registry
from node.sharing.audit import AuditLog
from node.sharing.crosscheck import PeerCheck
from node.sharing.desk import SharingDesk
from node.sharing.heads import HeadBook
from node.sharing.limits import AgencyLimits
from node.tls.state import TlsState
from sync import Database, EventStore, PeerStore, RateLimiter, ReplayCache, SyncEngine, SyncServer

CONFIG = web.AppKey("config", Config)
KEY = web.AppKey("key", nacl.signing.SigningKey)
NAMES = web.AppKey("names", Names)                        # the Host names this node answers to
TLS = web.AppKey("tls", TlsState)                         # the HTTPS certificate, when http.tls is on
STARTED = web.AppKey("started", float)                    # time.time() when the app was made
SCHEDULER = web.AppKey("scheduler", AsyncIOScheduler)     # periodic work of every feature (node/periodic.py)
DB = web.AppKey("db", Database)
STORE = web.AppKey("store", EventStore)
PEERS = web.AppKey("peers", PeerStore)
ENGINE = web.AppKey("engine", SyncEngine)
SYNC_SERVER = web.AppKey("sync_server", SyncServer)
CLAIMS = web.AppKey("claims", Claims)
ACCOUNTS = web.AppKey("accounts", Accounts)
SIGN_IN_LIMITER = web.AppKey("sign_in_limiter", RateLimiter)  # per address, for invites and manager sign-in
FEEDS = web.AppKey("feeds", FeedPoller)
HUB = web.AppKey("hub", Hub)
ANNOUNCER = web.AppKey("announcer", Announcer)  # a manager's alert to the pages while it is written
BASEMAP = web.AppKey("basemap", Basemap)                # the offline street map (node/safety/basemap.py)
REPORTS = web.AppKey("reports", Reports)
SOS_DESK = web.AppKey("sos_desk", SosDesk)
PUSH = web.AppKey("push", Pusher)                         # Web Push to subscribed devices (node/push)
CLIPS = web.AppKey("clips", ClipIndex)
CAMERAS = web.AppKey("cameras", Cameras)
REGISTRY = web.AppKey("registry", Registry)
AUDIT = web.AppKey("audit", AuditLog)
DESK = web.AppKey("desk", SharingDesk)
AGENCY_REPLAY = web.AppKey("agency_replay", ReplayCache)  # agency signatures seen within the clock-skew window
AGENCY_LIMITS = web.AppKey("agency_limits", AgencyLimits)  # per-agency rate limits (node/sharing/limits.py)
AUDIT_HEADS = web.AppKey("audit_heads", HeadBook)         # other nodes' audit heads, kept append-only
PEER_CHECK = web.AppKey("peer_check", PeerCheck)          # this log against its peers' copies of its heads
