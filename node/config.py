"""Configuration: one settings table is the single source of keys, types, defaults and help.

A TOML file is validated strictly against it: an unknown key, a wrong type or a bad value is a ConfigError naming
the file, the key path and what was expected. `config.example.toml` is rendered from the table.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError

Check = Callable[[Any], str | None]  # returns what was expected, or None if fine


@dataclass(frozen=True)
class Setting:
    """One config key: dotted path, TOML type, default, help text and an optional value check."""

    path: str
    type: type
    default: Any
    help: str
    check: Check | None = None
    expected: str = ""


def _range(low: float, high: float | None = None, unit: str = "") -> Check:
    def check(value: Any) -> str | None:
        if value < low or (high is not None and value > high):
            upper = f" and <= {high}" if high is not None else ""
            return f"a number >= {low}{upper}{unit}"
        return None
    return check


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else "one of " + ", ".join(repr(c) for c in choices)
    return check


def _decimal_degrees(limit: int) -> Check:
    def check(value: str) -> str | None:
        if value == "":
            return None
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or abs(number) > limit or not re.fullmatch(r"-?\d+(\.\d+)?", value):
            return f'a decimal string in degrees between -{limit} and {limit}, like "40.7128", or ""'
        return None
    return check


def _positive_decimal(value: str) -> str | None:
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number <= 0 or not re.fullmatch(r"\d+(\.\d+)?", value):
        return 'a positive decimal string, like "0.5"'
    return None


def _hex_keys(value: list) -> str | None:
    if all(isinstance(k, str) and re.fullmatch(r"[0-9a-f]{64}", k) for k in value):
        return None
    return "a list of node keys (64 lowercase hex digits each)"


def _static_peers(value: list) -> str | None:
    expected = 'a list of tables {url = "http://host:port", key = "<64 hex digits>"}'
    for item in value:
        if (not isinstance(item, dict) or set(item) != {"url", "key"} or not isinstance(item["url"], str)
                or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", item["url"])
                or not isinstance(item["key"], str) or not re.fullmatch(r"[0-9a-f]{64}", item["key"])):
            return expected
    return None


def _networks(value: list) -> str | None:
    import ipaddress
    try:
        for item in value:
            ipaddress.ip_network(item)
    except (ValueError, TypeError):
        return 'a list of networks in CIDR form, like ["192.168.1.0/24", "fd00::/8"]'
    return None


def _url_or_empty(value: str) -> str | None:
    if value == "" or re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        return None
    return 'an http:// or https:// URL, or ""'


LOCAL_NETWORKS = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                  "fc00::/7", "fe80::/10"]


def _feed_urls(value: list) -> str | None:
    if (all(isinstance(u, str) and re.fullmatch(r"https?://[^\s/]+(/\S*)?", u) for u in value)
            and len(set(value)) == len(value)):
        return None
    return 'a list of distinct http:// or https:// URLs, like ["https://alerts.example.org/cap.atom"]'


def _tables(value: list) -> str | None:
    return None if all(isinstance(item, dict) for item in value) else "a list of tables ([[cameras.devices]])"


def _addresses(value: list) -> str | None:
    import ipaddress
    try:
        for item in value:
            ipaddress.IPv4Address(item)
    except (ValueError, TypeError):
        return "a list of IPv4 addresses of this host"
    return None


SETTINGS: list[Setting] = [
    Setting("node.name", str, "Neighborhood Node", "Name shown to peers and residents."),
    Setting("node.data_dir", str, "/var/lib/nnode", "Folder for the database and the node key (created by "
            "`nnode init`, mode 0700)."),
    Setting("node.latitude", str, "", "Building latitude as a decimal string; published to peers rounded to "
            "about 1 km. Empty: not published.", _decimal_degrees(90)),
    Setting("node.longitude", str, "", "Building longitude as a decimal string (see latitude).",
            _decimal_degrees(180)),
    Setting("http.host", str, "0.0.0.0", "Address the HTTP server listens on."),
    Setting("http.port", int, 8470, "TCP port of the HTTP server (API, web app and sync).", _range(1, 65535)),
    Setting("http.local_networks", list, LOCAL_NETWORKS, "Networks residents and the manager may use the web app "
            "and its API from (invites, sessions); requests from elsewhere are refused.", _networks),
    Setting("sos.emergency_number", str, "911", "The local emergency number the SOS page offers as a tel: link "
            "(the node never calls it)."),
    Setting("sos.ack_timeout", int, 60, "Seconds an SOS may stay unacknowledged by the on-call responders before "
            "it escalates to the webhook.", _range(1, 3600)),
    Setting("sos.webhook_url", str, "", "URL an unacknowledged SOS is POSTed to as JSON (a phone-call or paging "
            "service). Empty: skip this step.", _url_or_empty),
    Setting("sos.peer_escalation_after", int, 120, "Seconds after which a still unacknowledged SOS is published "
            "to nearby nodes as a signed event (without the resident's name or unit).", _range(1, 86400)),
    Setting("sos.hold_before", int, 300, "Seconds of camera footage before an SOS held from retention.",
            _range(0, 86400)),
    Setting("sos.hold_after", int, 600, "Seconds of camera footage after an SOS held from retention.",
            _range(0, 86400)),
    Setting("reports.max_photo_bytes", int, 8 * 1024 * 1024, "Largest photo a resident may attach to a report.",
            _range(65536, 64 * 1024 * 1024)),
    Setting("sync.anti_entropy_interval", int, 30, "Seconds between pulls from every approved peer, which "
            "repair whatever pushes missed.", _range(1, 86400, " (seconds)")),
    Setting("sync.push_batch", int, 200, "Most events sent in one push.", _range(1, 1000)),
    Setting("sync.pull_limit", int, 5000, "Most events asked for in one pull response.", _range(1, 10000)),
    Setting("sync.max_batch_events", int, 5000, "Most events accepted in one push or served in one pull.",
            _range(1, 10000)),
    Setting("sync.max_batch_bytes", int, 8 * 1024 * 1024, "Largest push body accepted, in bytes.",
            _range(65536, 256 * 1024 * 1024)),
    Setting("sync.max_clock_skew", int, 60, "Largest difference, in seconds, between a signed sync request's "
            "creation time and this node's clock.", _range(5, 3600)),
    Setting("sync.rate_limit", int, 50, "Sync requests per second allowed from one peer after its burst.",
            _range(1, 100000)),
    Setting("sync.rate_burst", int, 200, "Sync requests one peer may make at once.", _range(1, 100000)),
    Setting("sync.request_timeout", int, 30, "Seconds to wait on a peer's reply.", _range(1, 600)),
    Setting("sync.interest_radius_m", int, 0, "Area of interest, in metres around the building: keep and forward "
            "only events whose area touches it (alerts, SOS and agency requests carry areas; other kinds apply "
            "everywhere). 0 keeps everything, right for a neighborhood of tens of nodes; a city of thousands wants "
            "a few km (docs/scale.md). Needs node.latitude and node.longitude.", _range(0, 1_000_000, " (metres)")),
    Setting("sync.trusted_keys", list, [], "Node keys approved as soon as they are discovered on the LAN "
            "(others wait for `nnode peer approve`).", _hex_keys),
    Setting("sync.peers", list, [], "Peers on other networks, approved by being listed here: "
            '[{url = "http://host:8470", key = "<node key>"}].', _static_peers),
    Setting("discovery.enabled", bool, True, "Advertise this node and browse for others with mDNS "
            "(_nnode._tcp.local.)."),
    Setting("discovery.interfaces", list, [], "IPv4 addresses to advertise and browse on; empty: every "
            "non-loopback address.", _addresses),
    Setting("events.purge_interval", int, 300, "Seconds between purges of expired event bodies (headers and "
            "tombstones are kept).", _range(1, 86400)),
    Setting("log.level", str, "info", "Log level.", _one_of("debug", "info", "warning", "error")),
    Setting("log.format", str, "json", "Log format: one JSON object per line, or text for a terminal.",
            _one_of("json", "text")),
    Setting("alerts.feeds", list, [], "CAP 1.2 sources polled on a schedule: URLs of one alert or of an Atom/RSS "
            "feed of them. Alerts this node does not hold yet are published as signed events.", _feed_urls),
    Setting("alerts.poll_interval", int, 300, "Seconds between polls of every feed.",
            _range(30, 86400, " (seconds)")),
    Setting("alerts.max_feed_bytes", int, 5 * 1024 * 1024, "Largest feed download accepted, in bytes; a bigger "
            "one is refused for that poll.", _range(1024, 8 * 1024 * 1024)),
    Setting("alerts.fetch_timeout", int, 20, "Seconds one feed download may take in all.", _range(1, 600)),
    Setting("cameras.devices", list, [], "The building's cameras, one [[cameras.devices]] table each: id, url "
            "(rtsp://, http:// MJPEG, /dev/videoN, a file or sim:), and optionally name, transport, latitude, "
            "longitude, retention_days, pre_capture, post_capture, max_clip, viewers, privacy_masks, detect_motion "
            "and a [cameras.devices.motion] table (see docs/cameras.md).", _tables),
    Setting("cameras.min_free_mb", int, 512, "Free space (MiB) the free-space guard keeps on the data disk by "
            "purging the oldest footage that is not held.", _range(0, 1 << 20)),
    Setting("cameras.min_free_percent", int, 5, "Free space (percent of the data disk) the guard keeps as well; "
            "the larger of the two applies.", _range(0, 90)),
    Setting("cameras.check_interval", int, 30, "Seconds between retention and free-space checks (a clip being "
            "promoted is checked too).", _range(1, 3600)),
    Setting("cameras.live_viewers", int, 8, "Most live views of one camera open at once.", _range(1, 100)),
    Setting("cameras.upload_max_mb", int, 200, "Largest clip a resident may upload (MiB).", _range(1, 4096)),
    Setting("cameras.upload_max_seconds", int, 600, "Longest clip a resident may upload (seconds).",
            _range(1, 7200)),
    Setting("cameras.upload_retention_days", int, 30, "Days a resident's uploaded clip is kept unless held.",
            _range(1, 3650)),
    Setting("agencies.trust_anchors", list, [], "Keys of trust anchors (an accreditation body) whose signed agency "
            "credentials register an agency here without the manager adding it by hand (`nnode agency credential`).",
            _hex_keys),
    Setting("agencies.min_window_minutes", int, 15, "Shortest time window a footage request may ask for.",
            _range(1, 24 * 60)),
    Setting("agencies.max_window_hours", int, 12, "Longest time window a footage request may ask for.",
            _range(1, 24 * 30)),
    Setting("agencies.max_area_sq_mi", str, "0.5", "Largest area a footage request may cover, in square miles "
            "(a decimal string).", _positive_decimal),
    Setting("agencies.require_case_number", bool, True, "Refuse footage requests without a case number."),
    Setting("agencies.max_expiry_days", int, 90, "Longest a footage request may stay open.", _range(1, 365)),
    Setting("agencies.max_age_days", int, 365, "Oldest footage a request may ask for, in days before now.",
            _range(1, 3650)),
    Setting("agencies.hold_days", int, 30, "Days a shared clip and its bundle are kept after the agency's first "
            "download; then the bundle is deleted and the clip purged once its own retention has run out.",
            _range(0, 3650)),
]
_BY_PATH = {s.path: s for s in SETTINGS}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean (true or false)", list: "a list"}


@dataclass(frozen=True)
class StaticPeer:
    """A configured peer on another network."""

    url: str
    key: str


@dataclass(frozen=True)
class NodeSection:
    """[node]"""

    name: str
    data_dir: Path
    latitude: str
    longitude: str


@dataclass(frozen=True)
class HttpSection:
    """[http]"""

    host: str
    port: int
    local_networks: tuple[str, ...]


@dataclass(frozen=True)
class SyncSection:
    """[sync]"""

    anti_entropy_interval: int
    push_batch: int
    pull_limit: int
    max_batch_events: int
    max_batch_bytes: int
    max_clock_skew: int
    rate_limit: int
    rate_burst: int
    request_timeout: int
    interest_radius_m: int
    trusted_keys: tuple[str, ...]
    peers: tuple[StaticPeer, ...]


@dataclass(frozen=True)
class DiscoverySection:
    """[discovery]"""

    enabled: bool
    interfaces: tuple[str, ...]


@dataclass(frozen=True)
class EventsSection:
    """[events]"""

    purge_interval: int


@dataclass(frozen=True)
class SosSection:
    """[sos]"""

    emergency_number: str
    ack_timeout: int
    webhook_url: str
    peer_escalation_after: int
    hold_before: int
    hold_after: int


@dataclass(frozen=True)
class ReportsSection:
    """[reports]"""

    max_photo_bytes: int


@dataclass(frozen=True)
class AlertsSection:
    """[alerts]"""

    feeds: tuple[str, ...]
    poll_interval: int
    max_feed_bytes: int
    fetch_timeout: int


@dataclass(frozen=True)
class CamerasSection:
    """[cameras]"""

    devices: tuple[Any, ...]
    """node.camera.settings.CameraConfig, one per camera."""
    min_free_mb: int
    min_free_percent: int
    check_interval: int
    live_viewers: int
    upload_max_mb: int
    upload_max_seconds: int
    upload_retention_days: int


@dataclass(frozen=True)
class AgenciesSection:
    """[agencies]"""

    trust_anchors: tuple[str, ...]
    min_window_minutes: int
    max_window_hours: int
    max_area_sq_mi: str
    require_case_number: bool
    max_expiry_days: int
    max_age_days: int
    hold_days: int


@dataclass(frozen=True)
class LogSection:
    """[log]"""

    level: str
    format: str


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    node: NodeSection
    http: HttpSection
    sync: SyncSection
    discovery: DiscoverySection
    events: EventsSection
    sos: SosSection
    reports: ReportsSection
    log: LogSection
    alerts: AlertsSection
    cameras: CamerasSection
    agencies: AgenciesSection
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

    def replace(self, **sections: Any) -> "Config":
        """A copy with some sections' fields replaced: replace(node={"data_dir": Path(...)})."""
        changes = {name: dataclasses.replace(getattr(self, name), **fields) for name, fields in sections.items()}
        return dataclasses.replace(self, **changes)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]} ({type(value).__name__})"


def _check(source: str, setting: Setting, value: Any) -> Any:
    if type(value) is not setting.type:
        raise ConfigError(f"{source}: {setting.path}: expected {_TYPE_NAMES[setting.type]}, got {_describe(value)}")
    if setting.check is not None:
        expected = setting.check(value)
        if expected is not None:
            raise ConfigError(f"{source}: {setting.path}: expected {expected}, got {_describe(value)}")
    return value


def _flatten(source: str, table: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if path in _BY_PATH:
            flat[path] = _check(source, _BY_PATH[path], value)
        elif isinstance(value, dict) and any(p.startswith(path + ".") for p in _BY_PATH):
            flat.update(_flatten(source, value, path + "."))
        else:
            sections = sorted({p.split(".")[0] for p in _BY_PATH})
            known = [p for p in _BY_PATH if p.startswith(prefix)] if prefix else sections
            raise ConfigError(f"{source}: {path}: unknown key (expected one of: {', '.join(known)})")
    return flat


def build(values: dict[str, Any], source: str = "<defaults>") -> Config:
    """A Config from flat {path: value} overrides on top of the defaults."""
    merged = {s.path: s.default for s in SETTINGS} | values
    section = {name: {p.split(".", 1)[1]: v for p, v in merged.items() if p.startswith(name + ".")}
               for name in ("node", "http", "sync", "discovery", "events", "sos", "reports", "log", "alerts",
                            "cameras", "agencies")}
    section["node"]["data_dir"] = Path(section["node"]["data_dir"]).expanduser()
    section["sync"]["trusted_keys"] = tuple(section["sync"]["trusted_keys"])
    section["sync"]["peers"] = tuple(StaticPeer(**p) for p in section["sync"]["peers"])
    section["discovery"]["interfaces"] = tuple(section["discovery"]["interfaces"])
    section["alerts"]["feeds"] = tuple(section["alerts"]["feeds"])
    section["agencies"]["trust_anchors"] = tuple(section["agencies"]["trust_anchors"])
    section["http"]["local_networks"] = tuple(section["http"]["local_networks"])
    if bool(section["node"]["latitude"]) != bool(section["node"]["longitude"]):
        raise ConfigError(f"{source}: node.latitude: expected latitude and longitude both set or both empty")
    if section["sync"]["interest_radius_m"] and not section["node"]["latitude"]:
        raise ConfigError(f"{source}: sync.interest_radius_m: an area of interest is around the building: set "
                          "node.latitude and node.longitude, or leave the radius at 0 (keep everything)")
    if section["cameras"]["devices"]:
        from node.camera.settings import parse_devices  # OpenCV loads only when cameras are configured
        section["cameras"]["devices"] = parse_devices(source, section["cameras"]["devices"],
                                                      latitude=section["node"]["latitude"],
                                                      longitude=section["node"]["longitude"])
    else:
        section["cameras"]["devices"] = ()
    return Config(node=NodeSection(**section["node"]), http=HttpSection(**section["http"]),
                  sync=SyncSection(**section["sync"]), discovery=DiscoverySection(**section["discovery"]),
                  events=EventsSection(**section["events"]), alerts=AlertsSection(**section["alerts"]),
                  sos=SosSection(**section["sos"]), reports=ReportsSection(**section["reports"]), log=LogSection(**section["log"]),
                  cameras=CamerasSection(**section["cameras"]), agencies=AgenciesSection(**section["agencies"]),
                  source=source)


def load(path: Path | str | None) -> Config:
    """Load and validate a TOML config file; None gives the defaults."""
    if path is None:
        return build({})
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        table = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return build(_flatten(str(path), table), str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def render_example() -> str:
    """config.example.toml: every key with its help text and default."""
    out = ["# Neighborhood Node configuration. Every key is optional; the values shown are the defaults.",
           "# Generated from node/config.py (nnode config-example); a test keeps the two equal.", ""]
    section = None
    for setting in SETTINGS:
        name, key = setting.path.split(".", 1)
        if name != section:
            if section is not None:
                out.append("")
            out.append(f"[{name}]")
            section = name
        out.extend("# " + line for line in _wrap(setting.help))
        out.append(f"{key} = {_toml_value(setting.default)}")
    return "\n".join(out) + "\n"


def _wrap(text: str, width: int = 110) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line] if line else lines
