"""Configuration: one frozen msgspec Struct per `[section]`, whose fields are the single source of keys, types,
defaults, limits and help.

A TOML file is decoded strictly into them (node/structs.py): an unknown key, a wrong type or a bad value is a
ConfigError naming the file, the key path and what was expected. `config.example.toml` is rendered from the fields.
"""

from __future__ import annotations

import ipaddress
import tomllib
import typing
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from node.camera.settings import CameraConfig, with_location
from node.errors import ConfigError
from node.safety.geocodes import check_entry
from node.structs import (
    DECIMAL,
    FieldError,
    HttpUrl,
    Latitude,
    Longitude,
    NodeKey,
    Strict,
    convert,
    degrees_ok,
    explain,
    fail,
    setting,
    struct_info,
)
from node.tls.settings import TlsSection
from sync import normal_authority

LOCAL_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                  "fc00::/7", "fe80::/10")
NodeKeys = Annotated[tuple[NodeKey, ...], setting(expected="a list of node keys (64 lowercase hex digits each)")]


class StaticPeer(Strict, frozen=True):
    """A configured peer on another network."""

    url: HttpUrl
    key: NodeKey


class NodeSection(Strict, frozen=True):
    """[node]"""

    name: Annotated[str, setting("Name shown to peers and residents.")] = "Neighborhood Node"
    data_dir: Annotated[Path, setting("Folder for the database and the node key (created by `nnode init`, mode "
                                      "0700).")] = Path("/var/lib/nnode")
    latitude: Annotated[Latitude, setting("Building latitude as a decimal string; published to peers rounded to "
                                          "about 1 km. Empty: not published.")] = ""
    longitude: Annotated[Longitude, setting("Building longitude as a decimal string (see latitude).")] = ""
    claim_file: Annotated[str, setting(
        "While the node is unclaimed, its current claim code is also written to this file (mode 0600, rewritten "
        "when the code renews, removed once claimed), for a manager without a screen: the appliance writes it in "
        "its data folder and copies it to the boot partition as nnode-claim.txt. Empty: no file.",
        expected='a file path, or ""')] = ""

    def __post_init__(self) -> None:
        """Expand `~` in the folder; degrees in range, both coordinates or none."""
        msgspec.structs.force_setattr(self, "data_dir", Path(self.data_dir).expanduser())
        for key, limit in (("latitude", 90), ("longitude", 180)):
            if not degrees_ok(getattr(self, key), limit):
                raise FieldError(key)
        if bool(self.latitude) != bool(self.longitude):
            raise FieldError("latitude", "expected latitude and longitude both set or both empty")


class HttpSection(Strict, frozen=True):
    """[http]"""

    host: Annotated[str, setting("Address the HTTP server listens on.")] = "0.0.0.0"
    port: Annotated[int, setting("TCP port of the HTTP server (API, web app and sync).", ge=1, le=65535)] = 8470
    local_networks: Annotated[tuple[str, ...], setting(
        "Networks residents and the manager may use the web app and its API from (invites, sessions); requests "
        "from elsewhere are refused.",
        expected='a list of networks in CIDR form, like ["192.168.1.0/24", "fd00::/8"]')] = LOCAL_NETWORKS

    metrics_networks: Annotated[tuple[str, ...], setting(
        "Networks that may read /metrics (a Prometheus scraper; its counters show each camera's motion as it "
        "happens). The signed-in manager may read it from the building's network as well.",
        expected='a list of networks in CIDR form, like ["127.0.0.0/8", "192.168.1.10/32"]')] = ("127.0.0.0/8",
                                                                                               "::1/128")
    names: Annotated[tuple[str, ...], setting(
        "Further names this node answers to, as host or host:port (a bare host means http.port): a LAN DNS name, "
        "or the public name and port peers and agencies reach it by. Always included: localhost, 127.0.0.1, [::1], "
        "this host's name and name.local, http.host and this host's addresses, at http.port, and the host of "
        "http.url. A request whose Host (for signed calls: whose signed @authority) is none of these is refused "
        "with 421.", expected='a list of host names or addresses, each with an optional :port, like '
                              '["nnode.lan", "node.example.org:443"]')] = ()
    url: Annotated[str, setting(
        "The address residents' phones open the node by, used in invite, sign-in and setup links. Empty: "
        "http://<http.host or this host's name.local>:<http.port>.", pattern=r"(https?://[^\s/?#@]+)?",
        expected='an http:// or https:// URL without a path, like "https://nnode.lan:8470", or ""')] = ""
    header_timeout: Annotated[int, setting(
        "Seconds a client has to send a request's line and headers, from when it connects or its previous "
        "answer ended; a slower one is disconnected. It is also how long an idle connection is kept open.",
        ge=1, le=300, unit="seconds")] = 20
    tls: TlsSection = msgspec.field(default_factory=TlsSection)

    def __post_init__(self) -> None:
        """Every network parses; every name is a host or host:port; HTTPS on a port of its own."""
        for key in ("local_networks", "metrics_networks"):
            try:
                for network in getattr(self, key):
                    ipaddress.ip_network(network)
            except (ValueError, TypeError):
                raise FieldError(key) from None
        for index, name in enumerate(self.names):
            if normal_authority(name, self.port) is None:
                raise FieldError(f"names[{index}]")
        if self.url and normal_authority(urlsplit(self.url).netloc) is None:
            raise FieldError("url")
        if self.tls.mode != "off" and self.tls.port == self.port:
            raise FieldError("tls.port", "expected a port other than http.port (plain HTTP stays there)")
        if self.tls.mode == "files" and not self.url.startswith("https://"):
            raise FieldError("url", 'http.tls.mode = "files" needs http.url: the https:// address the certificate '
                             'is for, like "https://node.example.org:8471"')


class SosSection(Strict, frozen=True):
    """[sos]"""

    emergency_number: Annotated[str, setting("The local emergency number the SOS page offers as a tel: link (the "
                                             "node never calls it).")] = "911"
    ack_timeout: Annotated[int, setting("Seconds an SOS may stay unacknowledged by the on-call responders before it "
                                        "escalates to the webhook.", ge=1, le=3600)] = 60
    webhook_url: Annotated[str, setting("URL an unacknowledged SOS is POSTed to as JSON (a phone-call or paging "
                                        "service). Empty: skip this step.", pattern=r"(https?://[^\s/]+(/\S*)?)?",
                                        expected='an http:// or https:// URL, or ""')] = ""
    peer_escalation_after: Annotated[int, setting(
        "Seconds after which a still unacknowledged SOS is published to nearby nodes as a signed event (without the "
        "resident's name or unit).", ge=1, le=86400)] = 120
    hold_before: Annotated[int, setting("Seconds of camera footage before an SOS held from retention.",
                                        ge=0, le=86400)] = 300
    hold_after: Annotated[int, setting("Seconds of camera footage after an SOS held from retention.",
                                       ge=0, le=86400)] = 600


class ReportsSection(Strict, frozen=True):
    """[reports]"""

    max_photo_bytes: Annotated[int, setting("Largest photo a resident may attach to a report.",
                                            ge=65536, le=64 * 1024 * 1024)] = 8 * 1024 * 1024
    hold_person_reports: Annotated[bool, setting("Hold every report that describes a person for the manager's "
                                                 "review before residents see it (reports that mention race or "
                                                 "ethnicity are always held).")] = True


PUSH_SERVICES = ("fcm.googleapis.com", "updates.push.services.mozilla.com", "push.apple.com", "notify.windows.com")


class PushSection(Strict, frozen=True):
    """[push]"""

    enabled: Annotated[bool, setting("Send Web Push notifications to residents' subscribed devices (alerts on a "
                                     "locked phone).")] = True
    contact: Annotated[str, setting("Who the push services may contact about this node's pushes (the VAPID "
                                    "`sub` claim): a mailto: or https: URL.", pattern=r"(mailto:\S+|https://\S+)",
                                    expected="a mailto: or https:// URL")] = "mailto:manager@nnode.invalid"
    services: Annotated[tuple[str, ...], setting(
        "Push services a device may subscribe through: host names, each also matching its subdomains (every "
        "endpoint is https).")] = PUSH_SERVICES
    loopback_endpoints: Annotated[bool, setting("Also accept http:// endpoints on 127.0.0.1 (tests and local "
                                                "development only).")] = False
    concurrency: Annotated[int, setting("Pushes in flight at once.", ge=1, le=256)] = 16
    timeout: Annotated[int, setting("Seconds one push may take.", ge=1, le=120)] = 10
    max_devices: Annotated[int, setting("Most subscribed devices one resident may have.", ge=1, le=100)] = 10

    def __post_init__(self) -> None:
        for index, host in enumerate(self.services):
            if ":" in host or normal_authority(host) is None:
                raise FieldError(f"services[{index}]", f"expected a host name like \"fcm.googleapis.com\", "
                                 f"got {host!r}")


class SyncSection(Strict, frozen=True):
    """[sync]"""

    anti_entropy_interval: Annotated[int, setting("Seconds between pulls from every approved peer, which repair "
                                                  "whatever pushes missed.", ge=1, le=86400, unit="seconds")] = 30
    push_batch: Annotated[int, setting("Most events sent in one push.", ge=1, le=1000)] = 200
    pull_limit: Annotated[int, setting("Most events asked for in one pull response.", ge=1, le=10000)] = 5000
    max_batch_events: Annotated[int, setting("Most events accepted in one push or served in one pull.",
                                             ge=1, le=10000)] = 5000
    max_batch_bytes: Annotated[int, setting("Largest push body accepted, in bytes.",
                                            ge=65536, le=256 * 1024 * 1024)] = 8 * 1024 * 1024
    max_clock_skew: Annotated[int, setting("Largest difference, in seconds, between a signed sync request's "
                                           "creation time and this node's clock.", ge=5, le=3600)] = 60
    rate_limit: Annotated[int, setting("Sync requests per second allowed from one peer after its burst.",
                                       ge=1, le=100000)] = 50
    rate_burst: Annotated[int, setting("Sync requests one peer may make at once.", ge=1, le=100000)] = 200
    request_timeout: Annotated[int, setting("Seconds to wait on a peer's reply.", ge=1, le=600)] = 30
    interest_radius_m: Annotated[int, setting(
        "Area of interest, in metres around the building: keep and forward only events whose area touches it "
        "(alerts, SOS and agency requests carry areas; other kinds apply everywhere). 0 keeps everything, right for "
        "a neighborhood of tens of nodes; a city of thousands wants a few km (docs/scale.md). Needs node.latitude "
        "and node.longitude.", ge=0, le=1_000_000, unit="metres")] = 0
    trusted_keys: Annotated[NodeKeys, setting("Node keys approved as soon as they are discovered on the LAN (others "
                                              "wait for `nnode peer approve`).")] = ()
    peers: Annotated[tuple[StaticPeer, ...], setting(
        'Peers on other networks, approved by being listed here: [{url = "http://host:8470", key = "<node key>"}].',
        expected='a list of tables {url = "http://host:port", key = "<64 hex digits>"}')] = ()


class DiscoverySection(Strict, frozen=True):
    """[discovery]"""

    enabled: Annotated[bool, setting("Advertise this node and browse for others with mDNS (_nnode._tcp.local.).")
                       ] = True
    interfaces: Annotated[tuple[str, ...], setting("IPv4 addresses to advertise and browse on; empty: every "
                                                   "non-loopback address.",
                                                   expected="a list of IPv4 addresses of this host")] = ()

    def __post_init__(self) -> None:
        """Every address is IPv4."""
        try:
            for address in self.interfaces:
                ipaddress.IPv4Address(address)
        except (ValueError, TypeError):
            raise FieldError("interfaces") from None


class EventsSection(Strict, frozen=True):
    """[events]"""

    purge_interval: Annotated[int, setting("Seconds between purges of expired event bodies and prunes of old "
                                           "headers (see keep_headers_days).", ge=1, le=86400)] = 300
    keep_headers_days: Annotated[int, setting(
        "Days an event's signed header is kept after the event expires (its body goes at expiry); then the header "
        "is pruned and its slot settled: the event is refused if a peer offers it again. Each author's latest "
        "event is always kept. Peers that keep headers longer or shorter still agree (docs/sync.md).",
        ge=0, le=3650)] = 30
    max_headers: Annotated[int, setting(
        "Most event headers kept: past it, expired headers go before keep_headers_days is up, the longest "
        "expired first (an event still in force is never pruned).", ge=1, le=1_000_000_000)] = 2_000_000


class LogSection(Strict, frozen=True):
    """[log]"""

    level: Annotated[Literal["debug", "info", "warning", "error"], setting("Log level.")] = "info"
    format: Annotated[Literal["json", "text"], setting("Log format: one JSON object per line, or text for a "
                                                       "terminal.")] = "json"


Host = Annotated[str, setting(pattern=r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?",
                              expected='a host name, optionally with a port, like "alerts.example.org:8443"')]
Sender = Annotated[str, setting(pattern=r"[^\s,<&]{1,200}", expected="a CAP sender, like w-nws.webmaster@noaa.gov")]


class FeedConfig(Strict, frozen=True):
    """An official feed with who may send through it (a table in alerts.feeds)."""

    url: HttpUrl
    senders: Annotated[tuple[Sender, ...], setting(
        "The CAP <sender>s this feed publishes as; an alert from any other is skipped. Empty: any sender.")] = ()
    link_hosts: Annotated[tuple[Host, ...], setting(
        "Hosts (host or host:port) linked CAP files may come from besides the feed's own.")] = ()
    certificate: Annotated[Path | None, setting(
        "PEM file of the X.509 certificate the feed's senders sign their CAP alerts with (XML-DSig): an alert "
        "whose signature it does not verify is refused. None: signatures are kept as not checked.")] = None


class AlertsSection(Strict, frozen=True):
    """[alerts]"""

    feeds: Annotated[tuple[HttpUrl | FeedConfig, ...], setting(
        "CAP 1.2 sources polled on a schedule: a URL of one alert, of an Atom/RSS feed carrying, escaping or linking "
        "to CAP files, or of an IPAWS-OPEN <alerts> feed; or a table {url, senders, link_hosts, certificate} naming "
        "the CAP senders the feed may publish as, other hosts its links may point to, and the PEM certificate its "
        "alerts' XML signatures must verify with. Alerts this node does not hold yet are published as signed "
        "events.",
        expected='a list of distinct http:// or https:// URLs or {url = "...", senders = ["..."]} tables, like '
                 '["https://alerts.example.org/cap.atom"]')] = ()
    max_linked: Annotated[int, setting("Most CAP files one poll fetches from the links of an index feed; the rest "
                                       "wait for the next poll.", ge=1, le=1000)] = 100
    poll_interval: Annotated[int, setting("Seconds between polls of every feed.", ge=30, le=86400,
                                          unit="seconds")] = 300
    max_feed_bytes: Annotated[int, setting("Largest feed download accepted, in bytes; a bigger one is refused for "
                                           "that poll.", ge=1024, le=8 * 1024 * 1024)] = 5 * 1024 * 1024
    fetch_timeout: Annotated[int, setting("Seconds one feed download may take in all.", ge=1, le=600)] = 20
    geocodes: Annotated[tuple[str, ...], setting(
        "The building's own codes, which official alerts name instead of a shape: SAME=036047 (SAME or FIPS "
        "county), UGC=NYZ075 (NWS zone or county), ZIP=11201, or a publisher's local code as NAME=value (like "
        "NYC-BOROUGH=Brooklyn). An alert area with a shape is matched by the shape when node.latitude is set; "
        "otherwise by these codes (docs/residents.md).",
        expected='a list of NAME=value codes, like ["SAME=036047", "UGC=NYZ075", "ZIP=11201"]')] = ()

    def __post_init__(self) -> None:
        """No feed twice; every geocode readable."""
        urls = [source.url for source in self.sources]
        if len(set(urls)) != len(urls):
            raise FieldError("feeds")
        if len(self.geocodes) > 100:
            raise FieldError("geocodes", "at most 100 geocodes")
        for index, entry in enumerate(self.geocodes):
            if (problem := check_entry(entry)) is not None:
                raise FieldError(f"geocodes[{index}]", problem)

    @property
    def sources(self) -> tuple[FeedConfig, ...]:
        """Every feed as a FeedConfig (a bare URL: any sender, links to its own host only)."""
        return tuple(FeedConfig(url=f) if isinstance(f, str) else f for f in self.feeds)


class CamerasSection(Strict, frozen=True):
    """[cameras]"""

    devices: Annotated[tuple[CameraConfig, ...], setting(
        "The building's cameras, one [[cameras.devices]] table each: id, url (rtsp://, http:// MJPEG, /dev/videoN, a "
        "file or sim:), and optionally name, transport, latitude, longitude, retention_days, pre_capture, "
        "post_capture, max_clip, viewers, privacy_masks, detect_motion and a [cameras.devices.motion] table (see "
        "docs/cameras.md).")] = ()
    min_free_mb: Annotated[int, setting("Free space (MiB) the free-space guard keeps on the data disk by purging the "
                                        "oldest footage that is not held.", ge=0, le=1 << 20)] = 512
    min_free_percent: Annotated[int, setting("Free space (percent of the data disk) the guard keeps as well; the "
                                             "larger of the two applies.", ge=0, le=90)] = 5
    check_interval: Annotated[int, setting("Seconds between retention and free-space checks (a clip being promoted "
                                           "is checked too).", ge=1, le=3600)] = 30
    live_viewers: Annotated[int, setting("Most live views of one camera open at once.", ge=1, le=100)] = 8
    upload_max_mb: Annotated[int, setting("Largest clip a resident may upload (MiB).", ge=1, le=4096)] = 200
    upload_max_seconds: Annotated[int, setting("Longest clip a resident may upload (seconds).", ge=1, le=7200)] = 600
    upload_retention_days: Annotated[int, setting("Days a resident's uploaded clip is kept unless held.",
                                                  ge=1, le=3650)] = 30

    def __post_init__(self) -> None:
        """Camera ids are unique."""
        for index, camera in enumerate(self.devices):
            if any(c.id == camera.id for c in self.devices[:index]):
                raise FieldError(f"devices[{index}].id", f"camera {camera.id!r} is defined twice")


class AgenciesSection(Strict, frozen=True):
    """[agencies]"""

    trust_anchors: Annotated[NodeKeys, setting(
        "Keys of trust anchors (an accreditation body) whose signed agency credentials register an agency here "
        "without the manager adding it by hand (`nnode agency credential`).")] = ()
    min_window_minutes: Annotated[int, setting("Shortest time window a footage request may ask for.",
                                               ge=1, le=24 * 60)] = 15
    max_window_hours: Annotated[int, setting("Longest time window a footage request may ask for.",
                                             ge=1, le=24 * 30)] = 12
    max_area_sq_mi: Annotated[str, setting("Largest area a footage request may cover, in square miles (a decimal "
                                           "string).", pattern=DECIMAL.removeprefix("-?"),
                                           expected='a positive decimal string, like "0.5"')] = "0.5"
    require_case_number: Annotated[bool, setting("Refuse footage requests without a case number.")] = True
    max_expiry_days: Annotated[int, setting("Longest a footage request may stay open.", ge=1, le=365)] = 90
    max_age_days: Annotated[int, setting("Oldest footage a request may ask for, in days before now.",
                                         ge=1, le=3650)] = 365
    hold_days: Annotated[int, setting("Days a shared clip and its bundle are kept after the agency's first "
                                      "download; then the bundle is deleted and the clip purged once its own "
                                      "retention has run out.", ge=0, le=3650)] = 30
    cooling_off_seconds: Annotated[int, setting(
        "Seconds a consent stays invisible to the agency and to peers (no bundle listed, no count, no audit "
        "entry); a withdrawal within them leaves no trace. Consents to emergency requests are visible at once.",
        ge=0, le=7 * 86400)] = 3600
    requests_per_hour: Annotated[int, setting(
        "Footage requests one agency may post per hour after its burst (POST /api/agency/requests, counted "
        "whatever the answer); more are refused with 429 and Retry-After.", ge=1, le=100_000)] = 30
    requests_burst: Annotated[int, setting("Footage requests one agency may post at once.", ge=1, le=10_000)] = 10
    alerts_per_hour: Annotated[int, setting(
        "Official alerts one agency may post per hour after its burst (POST /api/agency/alerts).",
        ge=1, le=100_000)] = 12
    alerts_burst: Annotated[int, setting("Official alerts one agency may post at once.", ge=1, le=10_000)] = 3
    downloads_per_hour: Annotated[int, setting(
        "Bundle downloads (each one audited and its head sent to peers) one agency may make per hour after its "
        "burst.", ge=1, le=100_000)] = 120
    downloads_burst: Annotated[int, setting("Bundle downloads one agency may make at once.", ge=1, le=10_000)] = 30
    calls_per_minute: Annotated[int, setting(
        "Signed calls of any kind (reads included) one agency may make per minute after its burst.",
        ge=1, le=1_000_000)] = 1200
    calls_burst: Annotated[int, setting("Signed calls one agency may make at once.", ge=1, le=100_000)] = 300

    def __post_init__(self) -> None:
        """The area is above zero."""
        try:
            positive = Decimal(self.max_area_sq_mi) > 0
        except InvalidOperation:
            positive = False
        if not positive:
            raise FieldError("max_area_sq_mi")


class Sections(Strict, frozen=True):
    """The sections of a config file, in the order the example file shows them."""

    node: NodeSection = msgspec.field(default_factory=NodeSection)
    http: HttpSection = msgspec.field(default_factory=HttpSection)
    sos: SosSection = msgspec.field(default_factory=SosSection)
    reports: ReportsSection = msgspec.field(default_factory=ReportsSection)
    push: PushSection = msgspec.field(default_factory=PushSection)
    sync: SyncSection = msgspec.field(default_factory=SyncSection)
    discovery: DiscoverySection = msgspec.field(default_factory=DiscoverySection)
    events: EventsSection = msgspec.field(default_factory=EventsSection)
    log: LogSection = msgspec.field(default_factory=LogSection)
    alerts: AlertsSection = msgspec.field(default_factory=AlertsSection)
    cameras: CamerasSection = msgspec.field(default_factory=CamerasSection)
    agencies: AgenciesSection = msgspec.field(default_factory=AgenciesSection)

    def __post_init__(self) -> None:
        """Checks across sections."""
        if self.sync.interest_radius_m and not self.node.latitude:
            raise FieldError("sync.interest_radius_m", "an area of interest is around the building: set "
                             "node.latitude and node.longitude, or leave the radius at 0 (keep everything)")


class Config(Sections, frozen=True):
    """The whole validated configuration, and the file it came from."""

    source: str = "<defaults>"

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.node.data_dir / "node.db"

    @property
    def key_path(self) -> Path:
        """The node's private key file (mode 0600)."""
        return self.node.data_dir / "node.key"

    @property
    def control_socket(self) -> Path:
        """The Unix socket the CLI uses to reach the running node."""
        return self.node.data_dir / "control.sock"

    def replace(self, **sections: dict[str, Any]) -> Config:
        """A copy with some sections' fields replaced: replace(node={"data_dir": Path(...)})."""
        changes = {name: msgspec.structs.replace(getattr(self, name), **fields) for name, fields in sections.items()}
        return msgspec.structs.replace(self, **changes)


def _sections(type_: type[Strict] = Sections) -> list[tuple[str, type[msgspec.Struct]]]:
    """(name, Struct class) of each section, in file order."""
    return [(f.name, typing.cast(msgspec.inspect.StructType, f.type).cls) for f in struct_info(type_).fields]


def _with_camera_location(table: dict[str, Any]) -> dict[str, Any]:
    """The table with every camera lacking coordinates placed at the building (node.latitude, node.longitude)."""
    cameras, node = table.get("cameras"), table.get("node")
    if not isinstance(cameras, dict) or "devices" not in cameras or not isinstance(node, dict):
        return table
    devices = with_location(cameras["devices"], node.get("latitude", ""), node.get("longitude", ""))
    return table | {"cameras": cameras | {"devices": devices}}


def build(values: dict[str, Any], source: str = "<defaults>") -> Config:
    """A Config from flat {"section.key": value} overrides on top of the defaults.

    The overrides are trusted (tests, the CLI): their types are coerced and every check across keys runs, but
    ranges are not enforced, so a test may bind port 0. Camera tables are decoded like a file's."""
    nested: dict[str, dict[str, Any]] = {name: {} for name, _ in _sections()}
    for path, value in values.items():
        name, _, key = path.partition(".")
        if name not in nested:
            raise ConfigError(f"{source}: {name}: unknown key")
        nested[name][key] = value
    nested = _with_camera_location(nested)
    sections: dict[str, Any] = {}
    for name, cls in _sections():
        hints = {f.name: f for f in msgspec.structs.fields(cls)}
        fields = {}
        for key, value in nested[name].items():
            if key not in hints:
                raise ConfigError(f"{source}: {name}.{key}: unknown key (expected one of: {', '.join(hints)})")
            fields[key] = convert(value, _plain(cls, key), where=source, error=ConfigError, base=f"{name}.{key}")
        try:
            sections[name] = cls(**fields)
        except FieldError as exc:
            fail(ConfigError, source, name, explain(cls, fields, exc))
    try:
        return Config(**sections, source=source)
    except FieldError as exc:
        fail(ConfigError, source, "", explain(Sections, nested, exc))


def _plain(cls: type, key: str) -> Any:
    """A field's type without its own range and pattern (a camera table, a Struct of its own, keeps its checks)."""
    return typing.get_type_hints(cls)[key]


def load(path: Path | str | None) -> Config:
    """Load and validate a TOML config file; None gives the defaults."""
    if path is None:
        return build({})
    path = Path(path)
    try:
        table = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    sections = convert(_with_camera_location(table), Sections, where=str(path), error=ConfigError)
    return Config(**msgspec.structs.asdict(sections), source=str(path))


def keys() -> list[str]:
    """Every key of the config file as "section.key" ("http.tls.mode" in a nested table), in the example's order."""
    def of(prefix: str, cls: type[msgspec.Struct]) -> list[str]:
        found: list[str] = []
        for field in struct_info(cls).fields:
            if isinstance(field.type, msgspec.inspect.StructType):
                found += of(f"{prefix}.{field.name}", field.type.cls)
            else:
                found.append(f"{prefix}.{field.name}")
        return found
    return [key for name, cls in _sections() for key in of(name, cls)]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, Path)):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def render_example() -> str:
    """config.example.toml: every key with its help text and default."""
    out = ["# Neighborhood Node configuration. Every key is optional; the values shown are the defaults.",
           "# Generated from node/config.py (nnode config-example); a test keeps the two equal."]
    for name, cls in _sections():
        out += _table(name, cls)
    return "\n".join(out) + "\n"


def _table(name: str, cls: type[msgspec.Struct]) -> list[str]:
    """One [table] of the example; a field that is a table of its own ([http.tls]) follows its parent's keys."""
    out, nested = ["", f"[{name}]"], []
    for field in struct_info(cls).fields:
        if isinstance(field.type, msgspec.inspect.StructType):
            nested.append((f"{name}.{field.name}", field.type.cls))
            continue
        help = typing.cast(msgspec.inspect.Metadata, field.type).extra_json_schema or {}
        out.extend("# " + line for line in _wrap(help["description"]))
        out.append(f"{field.name} = {_toml_value(field.default)}")
    for path, inner in nested:
        out += _table(path, inner)
    return out


def _wrap(text: str, width: int = 110) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line] if line else lines
