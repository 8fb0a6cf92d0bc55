/* Subscribers for bench/fanout.py, in C so that they are not what limits either system: MQTT ones for the Mosquitto
 * reference and SSE ones (/api/stream) for the node, the same loop for both.
 *
 * Built and started by fanout.py (gcc -O2), not by hand:  _fanout_subscribers mqtt|sse PORT CONNECTIONS ROUNDS
 * (SSE: the session cookie in NNODE_BENCH_COOKIE). Same protocol as _fanout_clients.py: `ready N` once every connection is subscribed, `got R` once every connection
 * has round R, and after `stop` on stdin one JSON line {"times": [[ns or null...]...], "extra", "duplicates",
 * "lost"}. Times are CLOCK_MONOTONIC in ns, taken as each read returns. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct { int fd; unsigned char *buf; size_t len, cap; int64_t *times; } conn_t;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) { printf("error %s: %s\n", what, strerror(errno)); fflush(stdout); exit(1); }

static void read_exactly(int fd, unsigned char *out, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, out + got, n - got, 0);
        if (r <= 0) die("subscribe");
        got += (size_t)r;
    }
}

static int subscribe(int port, int i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    char id[64];
    int idlen = snprintf(id, sizeof id, "fanout-c-%d-%d", (int)getpid(), i);
    unsigned char p[128] = {0x10, (unsigned char)(12 + idlen), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0,
                            0, (unsigned char)idlen};   /* keep-alive 0: off, the run lasts seconds */
    memcpy(p + 14, id, (size_t)idlen);
    if (send(fd, p, (size_t)(14 + idlen), 0) < 0) die("send");
    unsigned char ack[5];
    read_exactly(fd, ack, 4);
    if (ack[0] != 0x20 || ack[3] != 0) die("connack");
    static const unsigned char sub[] = {0x82, 17, 0, 1, 0, 12, 'a', 'l', 'e', 'r', 't', 's', '/', 'b', 'e', 'n',
                                        'c', 'h', 0};
    if (send(fd, sub, sizeof sub, 0) < 0) die("send");
    read_exactly(fd, ack, 5);
    if (ack[0] != 0x90 || ack[4] == 0x80) die("suback");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* An open event stream: the node has written its headers and `retry:`, so it holds this connection among its
 * subscribers. Bytes after the headers stay in c->buf. */
static int open_stream(int port, conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    const char *cookie = getenv("NNODE_BENCH_COOKIE");
    if (!cookie || strlen(cookie) > 512) { printf("error NNODE_BENCH_COOKIE missing or too long\n"); exit(1); }
    char request[1024];
    int len = snprintf(request, sizeof request, "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                       "Accept: text/event-stream\r\nCookie: nnode_session=%s\r\n\r\n", port, cookie);
    if (send(fd, request, (size_t)len, 0) < 0) die("send");
    for (;;) {
        if (c->cap - c->len < 4096) die("stream headers too long");
        ssize_t r = recv(fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (r <= 0) die("stream");
        c->len += (size_t)r;
        c->buf[c->len] = 0;
        unsigned char *body = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!body) continue;
        if (memcmp(c->buf, "HTTP/1.1 200", 12) != 0) { printf("error stream refused: %.80s\n", c->buf); exit(1); }
        body += 4;
        if (!memmem(body, c->len - (size_t)(body - c->buf), "retry:", 6)) continue;
        c->len -= (size_t)(body - c->buf);
        memmove(c->buf, body, c->len);
        break;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void record(conn_t *c, long number, int64_t at, int rounds, int n, int *per_round, long *extra,
                   long *duplicates) {
    if (number < 0 || number >= rounds) (*extra)++;
    else if (c->times[number]) (*duplicates)++;
    else {
        c->times[number] = at;
        if (++per_round[number] == n) { printf("got %ld\n", number); fflush(stdout); }
    }
}

/* Each round's marker `fanout#N#` in the chunked event stream; returns the bytes consumed (an unfinished tail,
 * a marker split across two reads, stays: chunk framing never splits one message). */
static size_t sse_scan(conn_t *c, int64_t at, int rounds, int n, int *per_round, long *extra, long *duplicates) {
    size_t off = 0;
    for (;;) {
        unsigned char *m = memmem(c->buf + off, c->len - off, "fanout#", 7);
        if (!m) break;
        unsigned char *p = m + 7, *end = c->buf + c->len;
        long number = 0;
        while (p < end && *p >= '0' && *p <= '9' && number < 100000000) number = number * 10 + (*p++ - '0');
        if (p >= end) { off = (size_t)(m - c->buf); return off; }
        if (*p == '#' && p > m + 7) record(c, number, at, rounds, n, per_round, extra, duplicates);
        off = (size_t)(p - c->buf);
    }
    size_t tail = c->len > 64 ? c->len - 64 : 0;
    return off > tail ? off : tail;
}

int main(int argc, char **argv) {
    if (argc != 5 || (strcmp(argv[1], "mqtt") && strcmp(argv[1], "sse"))) {
        fprintf(stderr, "usage: %s mqtt|sse PORT CONNECTIONS ROUNDS\n", argv[0]);
        return 2;
    }
    int sse = !strcmp(argv[1], "sse");
    int port = atoi(argv[2]), n = atoi(argv[3]), rounds = atoi(argv[4]);
    conn_t *conns = calloc((size_t)n, sizeof *conns);
    int *per_round = calloc((size_t)rounds, sizeof *per_round);
    long extra = 0, duplicates = 0, lost = 0;
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        conns[i].cap = 1 << 16;
        conns[i].buf = malloc(conns[i].cap);
        conns[i].fd = sse ? open_stream(port, &conns[i]) : subscribe(port, i);
        conns[i].times = calloc((size_t)rounds, sizeof(int64_t));
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    struct epoll_event in = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in);
    printf("ready %d\n", n);
    fflush(stdout);
    struct epoll_event events[256];
    int stop = 0;
    int64_t deadline = now_ns() + 300LL * 1000000000;
    while (!stop && now_ns() < deadline) {
        int k = epoll_wait(ep, events, 256, 1000);
        for (int e = 0; e < k; e++) {
            if (events[e].data.u32 == UINT32_MAX) { stop = 1; break; }
            conn_t *c = &conns[events[e].data.u32];
            if (c->cap - c->len < 1 << 15) { c->cap *= 2; c->buf = realloc(c->buf, c->cap); }
            ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
            int64_t at = now_ns();
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) { lost++; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); continue; }
            c->len += (size_t)r;
            size_t off = 0;
            if (sse) off = sse_scan(c, at, rounds, n, per_round, &extra, &duplicates);
            else for (;;) {   /* whole packets: type byte, remaining length (varint), body */
                size_t pos = off + 1, length = 0;
                int shift = 0, complete = 0;
                while (pos < c->len && shift <= 21) {
                    unsigned char d = c->buf[pos++];
                    length |= (size_t)(d & 0x7f) << shift;
                    if (!(d & 0x80)) { complete = 1; break; }
                    shift += 7;
                }
                if (!complete || pos + length > c->len) break;
                if (c->buf[off] >> 4 == 3) {
                    unsigned char *body = c->buf + pos, *end = body + length;
                    unsigned char *m = memmem(body, length, "fanout#", 7);
                    long number = -1;
                    if (m) {
                        number = 0;
                        for (m += 7; m < end && *m >= '0' && *m <= '9'; m++) number = number * 10 + (*m - '0');
                    }
                    record(c, number, at, rounds, n, per_round, &extra, &duplicates);
                }
                off = pos + length;
            }
            memmove(c->buf, c->buf + off, c->len - off);
            c->len -= off;
        }
    }
    printf("{\"times\":[");
    for (int i = 0; i < n; i++) {
        printf(i ? ",[" : "[");
        for (int j = 0; j < rounds; j++) {
            if (conns[i].times[j]) printf(j ? ",%lld" : "%lld", (long long)conns[i].times[j]);
            else printf(j ? ",null" : "null");
        }
        printf("]");
    }
    printf("],\"extra\":%ld,\"duplicates\":%ld,\"lost\":%ld}\n", extra, duplicates, lost);
    fflush(stdout);
    return 0;
}
