"""Subscriber processes for bench/fanout.py: many SSE or MQTT connections in one epoll loop, timing each message.

Started by fanout.py, not by hand:

    python bench/_fanout_clients.py sse|mqtt PORT CONNECTIONS ROUNDS     (SSE: cookie in NNODE_BENCH_COOKIE)

Prints `ready N` once every connection is subscribed, `got R` once every connection has round R, and after `stop` on
stdin one JSON line of receive times. Times are `time.monotonic_ns()`: CLOCK_MONOTONIC is one system-wide clock
on Linux, so they compare with the publisher's, taken in another process. Each message is stamped as its bytes are
read, by a loop kept as lean as Python allows, so the clients add as little as they can to what is measured.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import select
import socket
import struct
import sys
import time

MARKER = re.compile(rb"fanout#(\d+)#")   # in the alert's headline, and in the MQTT payload built from it
TOPIC = "alerts/bench"
CONNECT_ATTEMPTS = 5
CONNECT_TIMEOUT = 10.0     # seconds for one connection to be subscribed
SETUP_TIMEOUT = 60.0       # seconds for all of them
STOP_TIMEOUT = 300.0       # a client whose parent vanished gives up after this
KEEPALIVE = 60             # MQTT keep-alive, seconds; subscribers ping at half of it


# -- MQTT 3.1.1, just what the bench needs ---------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def mqtt_connect(client_id: str, keepalive: int = KEEPALIVE) -> bytes:
    """CONNECT with a clean session and no credentials."""
    return _packet(0x10, _string("MQTT") + bytes([4, 0x02]) + struct.pack(">H", keepalive) + _string(client_id))


def mqtt_subscribe(packet_id: int, topic: str) -> bytes:
    """SUBSCRIBE to one topic at QoS 0."""
    return _packet(0x82, struct.pack(">H", packet_id) + _string(topic) + b"\x00")


def mqtt_publish(topic: str, payload: bytes) -> bytes:
    """PUBLISH at QoS 0 (no packet id, no acknowledgement)."""
    return _packet(0x30, _string(topic) + payload)


PINGREQ = b"\xc0\x00"


def mqtt_split(buf: bytes | bytearray, start: int) -> tuple[int, bytes | bytearray, int] | None:
    """(packet type, body, next offset) of the packet at `start`, or None if it has not fully arrived."""
    length, shift, pos = 0, 0, start + 1
    while True:
        if pos >= len(buf) or shift > 21:
            return None
        digit = buf[pos]
        length |= (digit & 0x7F) << shift
        pos += 1
        if not digit & 0x80:
            break
        shift += 7
    if pos + length > len(buf):
        return None
    return buf[start] >> 4, buf[pos:pos + length], pos + length


# -- subscribers -------------------------------------------------------------------------------------------------

class Tally:
    """What one process has received, across its connections."""

    def __init__(self, connections: int, rounds: int) -> None:
        self.rounds = rounds
        self.connections = connections
        self.per_round = [0] * rounds
        self.extra = 0        # markers outside 0..rounds-1, or PUBLISHes without one
        self.duplicates = 0
        self.lost = 0         # connections that ended before `stop`

    def record(self, times: list[int | None], number: int, at: int) -> None:
        if not 0 <= number < self.rounds:
            self.extra += 1
        elif times[number] is not None:
            self.duplicates += 1
        else:
            times[number] = at
            self.per_round[number] += 1
            if self.per_round[number] == self.connections:
                print(f"got {number}", flush=True)


class Connection:
    """One subscribed socket, its unparsed bytes and the receive time of each round."""

    def __init__(self, sock: socket.socket, pending: bytes, rounds: int) -> None:
        self.sock = sock
        self.buf = bytearray(pending)
        self.times: list[int | None] = [None] * rounds


def _recv_until(sock: socket.socket, buf: bytearray, done) -> None:
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while not done(buf):
        if time.monotonic() > deadline:
            raise TimeoutError("no answer in time")
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed while subscribing, after {bytes(buf[:200])!r}")
        buf += data


def open_sse(port: int, request: bytes, source: str | None = None) -> tuple[socket.socket, bytes]:
    """A stream the node has added to its subscribers (it writes `retry:` first), and the bytes after its headers;
    `source` is the loopback address to call from."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT,
                                    source_address=(source, 0) if source else None)
    try:
        sock.sendall(request)
        buf = bytearray()
        _recv_until(sock, buf, lambda b: b"retry:" in b.partition(b"\r\n\r\n")[2])
        head, _, body = bytes(buf).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"stream refused: {head[:200]!r}")
        return sock, body
    except BaseException:
        sock.close()
        raise


def ready_poller(conns) -> tuple[select.epoll, int]:
    """An epoll over the connections and stdin (where `stop` arrives); then say `ready N` to the parent."""
    poller = select.epoll()
    for fd in conns:
        poller.register(fd, select.EPOLLIN)
    stdin = sys.stdin.fileno()
    poller.register(stdin, select.EPOLLIN)
    # What is left was made to last: the collector need not walk it while the clients count.
    gc.collect()
    gc.freeze()
    print(f"ready {len(conns)}", flush=True)
    return poller, stdin


def reads(conns: dict, sock_of, until: float, every: float = 0.0, tick=None):
    """After `ready_poller`: yield (fd, data, receive time in ns) for each read from the connections, data b"" once
    one closes (it is then left out), until `stop` on stdin or monotonic time `until`; `tick()` every `every` s."""
    poller, stdin = ready_poller(conns)
    next_tick = time.monotonic() + every
    while time.monotonic() < until:
        for fd, _ in poller.poll(1.0):
            if fd == stdin:
                return    # `stop`, or the parent is gone
            try:
                data = sock_of(conns[fd]).recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            at = time.monotonic_ns()
            if not data:
                poller.unregister(fd)
            yield fd, data, at
        if tick is not None and time.monotonic() > next_tick:
            next_tick = time.monotonic() + every
            tick()


def open_mqtt(port: int, client_id: str) -> tuple[socket.socket, bytes]:
    """A connection whose SUBSCRIBE the broker has acknowledged, and any bytes after the SUBACK."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
    try:
        sock.sendall(mqtt_connect(client_id))
        buf = bytearray()
        _recv_until(sock, buf, lambda b: mqtt_split(b, 0) is not None)
        kind, body, end = mqtt_split(buf, 0)
        if kind != 2 or body[1] != 0:
            raise ConnectionError(f"CONNACK refused: {bytes(buf[:end])!r}")
        del buf[:end]
        sock.sendall(mqtt_subscribe(1, TOPIC))
        _recv_until(sock, buf, lambda b: mqtt_split(b, 0) is not None)
        kind, body, end = mqtt_split(buf, 0)
        if kind != 9 or body[2] == 0x80:
            raise ConnectionError(f"SUBSCRIBE refused: {bytes(buf[:end])!r}")
        return sock, bytes(buf[end:])
    except BaseException:
        sock.close()
        raise


def _with_retries(opener, *args) -> tuple[socket.socket, bytes]:
    error: Exception | None = None
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return opener(*args)
        except (OSError, ConnectionError) as exc:   # TimeoutError is an OSError
            error = exc
            time.sleep(0.1 * (attempt + 1))
    raise ConnectionError(f"could not subscribe after {CONNECT_ATTEMPTS} attempts: {error!r}")


def sse_received(conn: Connection, tally: Tally, at: int) -> None:
    """Find each round's marker in the chunked event stream."""
    buf = conn.buf
    end = 0
    for match in MARKER.finditer(buf):
        tally.record(conn.times, int(match[1]), at)
        end = match.end()
    # Keep only an unfinished tail: a marker split across two reads (chunk framing never splits one message).
    del buf[:max(end, len(buf) - 64)]


def mqtt_received(conn: Connection, tally: Tally, at: int) -> None:
    """One timestamp per PUBLISH; PINGRESPs are skipped."""
    buf = conn.buf
    offset = 0
    while (packet := mqtt_split(buf, offset)) is not None:
        kind, body, offset = packet
        if kind == 3:       # PUBLISH at QoS 0: topic, then payload
            (topic_length,) = struct.unpack_from(">H", body)
            if (match := MARKER.search(body, 2 + topic_length)) is not None:
                tally.record(conn.times, int(match[1]), at)
            else:
                tally.extra += 1
        elif kind != 13:
            raise ConnectionError(f"unexpected MQTT packet type {kind}")
    del buf[:offset]


def run(kind: str, port: int, connections: int, rounds: int) -> int:
    """Open the connections, report readiness, collect until told to stop, print the times.

    Set-up uses blocking sockets, one connection after another; receiving is one epoll loop over non-blocking
    sockets, so a message costs a recv, a clock read and a regex search, and no event-loop machinery.
    """
    tally = Tally(connections, rounds)
    setup_deadline = time.monotonic() + SETUP_TIMEOUT
    conns: dict[int, Connection] = {}
    try:
        for i in range(connections):
            if time.monotonic() > setup_deadline:
                raise TimeoutError(f"only {i} of {connections} connections subscribed in {SETUP_TIMEOUT:.0f} s")
            if kind == "sse":
                request = (f"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
                           f"Cookie: nnode_session={os.environ['NNODE_BENCH_COOKIE']}\r\n\r\n").encode()
                sock, pending = _with_retries(open_sse, port, request)
            else:
                sock, pending = _with_retries(open_mqtt, port, f"fanout-{os.getpid()}-{i}")
            sock.setblocking(False)
            conns[sock.fileno()] = Connection(sock, pending, rounds)
    except (OSError, ConnectionError) as exc:
        print(f"error {exc!r}", flush=True)
        return 1
    on_data = sse_received if kind == "sse" else mqtt_received

    def ping() -> None:
        for conn in conns.values():
            with contextlib.suppress(OSError):
                conn.sock.send(PINGREQ)

    for fd, data, at in reads(conns, lambda c: c.sock, time.monotonic() + STOP_TIMEOUT, KEEPALIVE / 2,
                              ping if kind == "mqtt" else None):
        conn = conns[fd]
        if not data:
            tally.lost += 1
            continue
        conn.buf += data
        on_data(conn, tally, at)
    print(json.dumps({"times": [c.times for c in conns.values()], "extra": tally.extra,
                      "duplicates": tally.duplicates, "lost": tally.lost}), flush=True)
    for conn in conns.values():
        conn.sock.close()
    return 0


if __name__ == "__main__":
    kind, port, connections, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if kind not in ("sse", "mqtt"):
        raise SystemExit(f"first argument must be sse or mqtt, got {kind!r}")
    sys.exit(run(kind, port, connections, rounds))
