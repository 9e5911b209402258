/* direct_ceiling.c: the raw ceiling for imbed's `direct` benchmark row.
 *
 * What it is: a single-threaded epoll WebSocket server in plain C that does
 * the wire work of protocol v1's direct messages (docs/PROTOCOL.md) and
 * nothing more: the HTTP/1.1 upgrade with dev auth (GET /ws?token=USER, a
 * real Sec-WebSocket-Accept), `welcome`, masked client frames (split across
 * reads or many in one read, UTF-8 checked, ping answered, close echoed),
 * and for each {"type":"send","id":..,"to":..,"body":..} an `ack` to the
 * sender and a `msg` to every session of the recipient (found by the `to`
 * name in a hash table) and the sender's other sessions, with a seq per
 * conversation `dm:a:b`. Every frame is read, its top-level JSON object
 * walked key by key, every reply built from the request, the body copied.
 * Replies are corked: appended to a per-connection buffer, then written with
 * one send() per connection per epoll_wait batch (EPOLLOUT when a socket is
 * full). Nothing is allocated per message in the steady state.
 *
 * What it leaves out, on purpose: persistence, authentication (the token is
 * the user), limits (rate, connections, output buffering; one frame is at
 * most 64 KiB), idempotency (a repeated id is a new message), every request
 * but `send` to a user, fragmented messages, compression, and full JSON
 * validation (nested values are checked for well-formed strings and
 * balanced brackets only).
 *
 * Why it exists: issue 18 asks that where a target is physically out of
 * reach on this machine, docs/BENCHMARKS.md shows the measurement that
 * proves it. This is the fastest one core can do the direct scenario's wire
 * work: imbed's direct row is read against it. Run it with
 * scripts/bench-ceiling, which builds it:
 *   cc -std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE \
 *      benches/ceiling/direct_ceiling.c -lcrypto -o build/direct-ceiling
 * Usage: direct-ceiling PORT (0 picks one); prints
 * `listening on ws://127.0.0.1:PORT/ws`.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef unsigned char u8;

#define MAX_FRAME (64 * 1024)  /* the largest client frame accepted */
#define MAX_REQUEST 8192       /* the largest upgrade request */
#define READ_SIZE (256 * 1024) /* one recv() at most */
#define MAX_CONNS (1 << 16)
#define MAX_EVENTS 1024
#define MAX_NAME 64

/* A hash table entry: the key follows the struct that embeds it. */
typedef struct entry { uint64_t hash; size_t len; const u8 *key; } entry;
typedef struct { entry **slots; size_t cap, count; } table;

typedef struct conn conn;
typedef struct { entry e; conn *sessions; } user;
typedef struct { entry e; uint64_t seq; } conversation;

struct conn {
    int fd;
    bool upgraded, dirty, closing, closed, watching_out;
    user *user;
    conn *next_session;
    u8 *in;  size_t in_len, in_cap;              /* an incomplete frame, kept between reads */
    u8 *out; size_t out_off, out_len, out_cap;   /* corked output */
};

static int ep;
static table users, conversations;
static conn *dirty[MAX_CONNS], *closed_now[MAX_CONNS];
static size_t n_dirty, n_closed, n_conns;
static uint64_t now_ms, sessions_opened;
/* One read: the connection's kept bytes, then what recv() brings. */
static u8 rbuf[MAX_FRAME + 14 + READ_SIZE];
/* One reply: the body, the id and the names fit in a frame of MAX_FRAME. */
static u8 scratch[MAX_FRAME + 1024];

/* ---- hash tables ---------------------------------------------------- */

static uint64_t hash_of(const u8 *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    while (n--) { h ^= *p++; h *= 1099511628211ULL; }
    return h;
}

static void grow(table *t) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    entry **slots = calloc(cap, sizeof *slots);
    if (!slots) abort();
    for (size_t i = 0; i < t->cap; i++) {
        entry *e = t->slots[i];
        if (!e) continue;
        size_t j = e->hash & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = e;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
}

/* The entry named key; if absent, a new zeroed one of `size` bytes, or NULL
 * when size is 0. */
static entry *lookup(table *t, const u8 *key, size_t len, size_t size) {
    if (t->count * 2 >= t->cap) grow(t);
    uint64_t h = hash_of(key, len);
    size_t mask = t->cap - 1, i = h & mask;
    for (entry *e; (e = t->slots[i]); i = (i + 1) & mask)
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) return e;
    if (!size) return NULL;
    entry *e = calloc(1, size + len);
    if (!e) abort();
    e->hash = h; e->len = len; e->key = (u8 *)e + size;
    memcpy((u8 *)e + size, key, len);
    t->slots[i] = e;
    t->count++;
    return e;
}

/* ---- output --------------------------------------------------------- */

static u8 *put(u8 *p, const void *s, size_t n) { memcpy(p, s, n); return p + n; }
#define PUT(p, lit) put(p, lit, sizeof lit - 1)

static u8 *put_u64(u8 *p, uint64_t v) {
    u8 digits[20];
    int n = 0;
    do digits[n++] = '0' + v % 10; while (v /= 10);
    while (n) *p++ = digits[--n];
    return p;
}

static void mark_dirty(conn *c) {
    if (!c->dirty) { c->dirty = true; dirty[n_dirty++] = c; }
}

/* Room for n more bytes of output; the buffer only grows, so a busy
 * connection stops allocating once it has seen its largest batch. */
static u8 *out_space(conn *c, size_t n) {
    if (c->out_len + n > c->out_cap && c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n) cap *= 2;
        if (!(c->out = realloc(c->out, cap))) abort();
        c->out_cap = cap;
    }
    mark_dirty(c);
    return c->out + c->out_len;
}

static void send_raw(conn *c, const void *p, size_t n) {
    memcpy(out_space(c, n), p, n);
    c->out_len += n;
}

static void send_frame(conn *c, u8 opcode, const u8 *payload, size_t n) {
    u8 *start = out_space(c, n + 10), *p = start;
    *p++ = 0x80 | opcode;
    if (n < 126) *p++ = (u8)n;
    else if (n < 65536) { *p++ = 126; *p++ = (u8)(n >> 8); *p++ = (u8)n; }
    else { *p++ = 127; for (int s = 56; s >= 0; s -= 8) *p++ = (u8)(n >> s); }
    memcpy(p, payload, n);
    c->out_len += (size_t)(p - start) + n;
}

/* Sends a close frame with `code`; the connection closes once it is written. */
static void fail(conn *c, unsigned code) {
    u8 status[2] = {(u8)(code >> 8), (u8)code};
    send_frame(c, 0x8, status, 2);
    c->closing = true;
}

static void close_conn(conn *c) {
    if (c->closed) return;
    c->closed = true;
    close(c->fd);
    if (c->user)
        for (conn **s = &c->user->sessions; *s; s = &(*s)->next_session)
            if (*s == c) { *s = c->next_session; break; }
    closed_now[n_closed++] = c; /* freed after the batch: events may still name it */
}

static void watch_out(conn *c, bool on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->watching_out = on;
}

/* One send() per connection with output, after the whole batch is handled. */
static void flush_all(void) {
    for (size_t i = 0; i < n_dirty; i++) {
        conn *c = dirty[i];
        c->dirty = false;
        if (c->closed || c->out_off == c->out_len) continue;
        ssize_t sent = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (sent < 0 && errno != EAGAIN && errno != EINTR) { close_conn(c); continue; }
        if (sent > 0) c->out_off += (size_t)sent;
        if (c->out_off < c->out_len) {
            if (!c->watching_out) watch_out(c, true);
            continue;
        }
        c->out_off = c->out_len = 0;
        if (c->closing) close_conn(c);
        else if (c->watching_out) watch_out(c, false);
    }
    n_dirty = 0;
}

/* ---- JSON: just enough to find the fields of one request ------------ */

typedef struct { const u8 *p; size_t n; } span;
typedef struct { span type, id, to, body; } request;

static const u8 *skip_ws(const u8 *p, const u8 *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* p is past the opening quote; returns past the closing one. */
static const u8 *skip_string(const u8 *p, const u8 *e) {
    while (p < e) {
        if (*p == '"') return p + 1;
        if (*p == '\\') p += 2;
        else if (*p < 0x20) return NULL;
        else p++;
    }
    return NULL;
}

static const u8 *skip_value(const u8 *p, const u8 *e) {
    if (p >= e) return NULL;
    if (*p == '"') return skip_string(p + 1, e);
    if (*p == '{' || *p == '[') {
        size_t depth = 0;
        while (p < e) {
            u8 ch = *p++;
            if (ch == '"') { if (!(p = skip_string(p, e))) return NULL; }
            else if (ch == '{' || ch == '[') depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0) return p;
        }
        return NULL;
    }
    const u8 *start = p; /* a number, true, false or null */
    while (p < e && ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                     *p == '-' || *p == '+' || *p == '.' || *p == 'E'))
        p++;
    return p > start ? p : NULL;
}

/* Walks the top-level object, keeping the raw spans of the known keys. */
static bool parse(const u8 *p, const u8 *e, request *r) {
    memset(r, 0, sizeof *r);
    p = skip_ws(p, e);
    if (p >= e || *p++ != '{') return false;
    p = skip_ws(p, e);
    if (p < e && *p == '}') return skip_ws(p + 1, e) == e;
    for (;;) {
        if (p >= e || *p != '"') return false;
        const u8 *key = p + 1, *after = skip_string(key, e);
        if (!after) return false;
        size_t key_len = (size_t)(after - 1 - key);
        p = skip_ws(after, e);
        if (p >= e || *p++ != ':') return false;
        const u8 *value = p = skip_ws(p, e);
        if (!(p = skip_value(p, e))) return false;
        span s = {value, (size_t)(p - value)};
        if (key_len == 4 && !memcmp(key, "type", 4)) r->type = s;
        else if (key_len == 2 && !memcmp(key, "id", 2)) r->id = s;
        else if (key_len == 2 && !memcmp(key, "to", 2)) r->to = s;
        else if (key_len == 4 && !memcmp(key, "body", 4)) r->body = s;
        p = skip_ws(p, e);
        if (p < e && *p == ',') { p = skip_ws(p + 1, e); continue; }
        return p < e && *p == '}' && skip_ws(p + 1, e) == e;
    }
}

/* A user id: 1 to 64 characters of [A-Za-z0-9_.@-], as imbed requires. */
static bool valid_name(const u8 *p, size_t n) {
    if (n == 0 || n > MAX_NAME) return false;
    for (size_t i = 0; i < n; i++) {
        u8 ch = p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '@' || ch == '-'))
            return false;
    }
    return true;
}

/* ---- protocol ------------------------------------------------------- */

static void error_reply(conn *c, span id) {
    u8 *p = PUT(scratch, "{\"type\":\"error\",");
    if (id.n >= 2 && id.p[0] == '"') { p = PUT(p, "\"id\":"); p = put(p, id.p, id.n); *p++ = ','; }
    p = PUT(p, "\"code\":\"bad_request\"}");
    send_frame(c, 0x1, scratch, (size_t)(p - scratch));
}

static void send_direct(conn *c, const request *r) {
    const u8 *from = c->user->e.key, *to = r->to.p + 1;
    size_t from_len = c->user->e.len, to_len = r->to.n - 2;
    /* The conversation: dm: and the two ids sorted bytewise. */
    const u8 *a = from, *b = to;
    size_t a_len = from_len, b_len = to_len;
    int cmp = memcmp(a, b, a_len < b_len ? a_len : b_len);
    if (cmp > 0 || (cmp == 0 && a_len > b_len)) { a = to; a_len = to_len; b = from; b_len = from_len; }
    u8 conv[4 + 2 * MAX_NAME], *q = PUT(conv, "dm:");
    q = put(q, a, a_len);
    *q++ = ':';
    q = put(q, b, b_len);
    size_t conv_len = (size_t)(q - conv);
    conversation *cv = (conversation *)lookup(&conversations, conv, conv_len, sizeof *cv);
    uint64_t seq = ++cv->seq;

    u8 *m = PUT(scratch, "{\"type\":\"msg\",\"conv\":\""); m = put(m, conv, conv_len);
    m = PUT(m, "\",\"seq\":"); m = put_u64(m, seq);
    m = PUT(m, ",\"from\":\""); m = put(m, from, from_len);
    m = PUT(m, "\",\"to\":"); m = put(m, r->to.p, r->to.n);
    m = PUT(m, ",\"id\":"); m = put(m, r->id.p, r->id.n);
    m = PUT(m, ",\"body\":"); m = put(m, r->body.p, r->body.n);
    m = PUT(m, ",\"ts\":"); m = put_u64(m, now_ms);
    *m++ = '}';
    size_t msg_len = (size_t)(m - scratch);
    /* Every session of the recipient, and the sender's other sessions. */
    user *dest = (user *)lookup(&users, to, to_len, 0);
    if (dest)
        for (conn *s = dest->sessions; s; s = s->next_session)
            if (s != c) send_frame(s, 0x1, scratch, msg_len);
    if (dest != c->user)
        for (conn *s = c->user->sessions; s; s = s->next_session)
            if (s != c) send_frame(s, 0x1, scratch, msg_len);

    u8 *k = PUT(scratch, "{\"type\":\"ack\",\"id\":"); k = put(k, r->id.p, r->id.n);
    k = PUT(k, ",\"conv\":\""); k = put(k, conv, conv_len);
    k = PUT(k, "\",\"seq\":"); k = put_u64(k, seq);
    k = PUT(k, ",\"ts\":"); k = put_u64(k, now_ms);
    *k++ = '}';
    send_frame(c, 0x1, scratch, (size_t)(k - scratch));
}

static void on_text(conn *c, const u8 *p, size_t n) {
    request r;
    if (parse(p, p + n, &r) && r.type.n == 6 && !memcmp(r.type.p, "\"send\"", 6) &&
        r.id.n >= 2 && r.id.p[0] == '"' && r.to.n >= 2 && r.to.p[0] == '"' &&
        valid_name(r.to.p + 1, r.to.n - 2) && r.body.n)
        send_direct(c, &r);
    else
        error_reply(c, r.id);
}

/* RFC 3629 UTF-8, eight ASCII bytes at a time while it lasts. */
static bool utf8_ok(const u8 *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint64_t v;
        if (i + 8 <= n && (memcpy(&v, s + i, 8), !(v & 0x8080808080808080ULL))) { i += 8; continue; }
        u8 ch = s[i];
        if (ch < 0x80) { i++; continue; }
        size_t more;
        uint32_t cp;
        if ((ch & 0xE0) == 0xC0) { more = 1; cp = ch & 0x1F; }
        else if ((ch & 0xF0) == 0xE0) { more = 2; cp = ch & 0x0F; }
        else if ((ch & 0xF8) == 0xF0) { more = 3; cp = ch & 0x07; }
        else return false;
        if (i + more >= n) return false;
        for (size_t j = 1; j <= more; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += more + 1;
    }
    return true;
}

static void unmask(u8 *p, size_t n, const u8 *key) {
    uint32_t k;
    memcpy(&k, key, 4);
    uint64_t k8 = (uint64_t)k << 32 | k;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k8;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] ^= key[i & 3];
}

/* Handles the complete frames in buf; returns the bytes they took. */
static size_t on_frames(conn *c, u8 *buf, size_t n) {
    size_t at = 0;
    while (!c->closing && n - at >= 2) {
        u8 *f = buf + at;
        uint64_t len = f[1] & 0x7f;
        size_t header = 2;
        if (!(f[1] & 0x80) || (f[0] & 0x70)) { fail(c, 1002); break; } /* unmasked, or RSV bits */
        if (len == 126) {
            if (n - at < 4) break;
            len = (uint64_t)f[2] << 8 | f[3];
            header = 4;
        } else if (len == 127) {
            if (n - at < 10) break;
            len = 0;
            for (int i = 2; i < 10; i++) len = len << 8 | f[i];
            header = 10;
        }
        if (len > MAX_FRAME) { fail(c, 1009); break; }
        if (n - at < header + 4 + len) break;
        u8 *payload = f + header + 4, opcode = f[0] & 0x0f;
        bool fin = f[0] & 0x80;
        unmask(payload, len, f + header);
        at += header + 4 + len;
        if (opcode == 0x1 && fin) {
            if (utf8_ok(payload, len)) on_text(c, payload, len);
            else fail(c, 1007);
        } else if (opcode == 0x9 && fin && len <= 125) {
            send_frame(c, 0xA, payload, len);
        } else if (opcode == 0x8) {
            send_frame(c, 0x8, payload, len >= 2 ? 2 : 0);
            c->closing = true;
        } else if (opcode != 0xA) {
            fail(c, 1003); /* binary, fragments, bad control frames */
        }
    }
    return at;
}

static void refuse(conn *c, const char *status) {
    u8 *p = PUT(scratch, "HTTP/1.1 "); p = put(p, status, strlen(status));
    p = PUT(p, "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    send_raw(c, scratch, (size_t)(p - scratch));
    c->closing = true;
}

/* The upgrade request, once complete; returns the bytes it took. */
static size_t on_request(conn *c, const u8 *buf, size_t n) {
    const u8 *end = memmem(buf, n, "\r\n\r\n", 4);
    if (!end) {
        if (n > MAX_REQUEST) close_conn(c);
        return 0;
    }
    size_t used = (size_t)(end - buf) + 4;
    const u8 *line_end = memmem(buf, used, "\r\n", 2), *space = NULL;
    if (line_end - buf > 8) space = memchr(buf + 7, ' ', (size_t)(line_end - buf) - 7);
    if (!space || memcmp(buf, "GET /ws", 7) || (buf[7] != '?' && buf[7] != ' ')) {
        refuse(c, "404 Not Found");
        return used;
    }
    /* The token parameter of the query. */
    const u8 *token = NULL, *token_end = NULL;
    for (const u8 *p = buf + 8; p < space;) {
        const u8 *amp = memchr(p, '&', (size_t)(space - p));
        if (!amp) amp = space;
        if (amp - p >= 6 && !memcmp(p, "token=", 6)) { token = p + 6; token_end = amp; }
        p = amp + 1;
    }
    if (!token || !valid_name(token, (size_t)(token_end - token))) { refuse(c, "401 Unauthorized"); return used; }
    /* Sec-WebSocket-Key, among the headers. */
    const u8 *key = NULL;
    size_t key_len = 0;
    for (const u8 *line = line_end + 2; line < end;) {
        const u8 *next = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        if ((size_t)(next - line) > 18 && !strncasecmp((const char *)line, "sec-websocket-key:", 18)) {
            key = line + 18;
            while (key < next && *key == ' ') key++;
            key_len = (size_t)(next - key);
            while (key_len && key[key_len - 1] == ' ') key_len--;
        }
        line = next + 2;
    }
    if (!key || key_len == 0 || key_len > 64) { refuse(c, "400 Bad Request"); return used; }
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    u8 keyed[64 + sizeof guid], digest[EVP_MAX_MD_SIZE], accept_value[32];
    unsigned digest_len = 0;
    memcpy(keyed, key, key_len);
    memcpy(keyed + key_len, guid, sizeof guid - 1);
    EVP_Digest(keyed, key_len + sizeof guid - 1, digest, &digest_len, EVP_sha1(), NULL);
    int accept_len = EVP_EncodeBlock(accept_value, digest, (int)digest_len);

    u8 *p = PUT(scratch, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Accept: ");
    p = put(p, accept_value, (size_t)accept_len);
    p = PUT(p, "\r\n\r\n");
    send_raw(c, scratch, (size_t)(p - scratch));
    c->upgraded = true;
    c->user = (user *)lookup(&users, token, (size_t)(token_end - token), sizeof(user));
    c->next_session = c->user->sessions;
    c->user->sessions = c;
    p = PUT(scratch, "{\"type\":\"welcome\",\"user\":\""); p = put(p, token, (size_t)(token_end - token));
    p = PUT(p, "\",\"session\":\"s-"); p = put_u64(p, ++sessions_opened);
    p = PUT(p, "\",\"server_time\":"); p = put_u64(p, now_ms);
    *p++ = '}';
    send_frame(c, 0x1, scratch, (size_t)(p - scratch));
    return used;
}

/* One recv() per readiness (level triggered): what is left is read at the
 * next epoll_wait, without a recv() that only says EAGAIN. */
static void on_readable(conn *c) {
    size_t kept = c->in_len;
    if (kept) memcpy(rbuf, c->in, kept);
    ssize_t got = recv(c->fd, rbuf + kept, sizeof rbuf - kept, 0);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (got <= 0) { close_conn(c); return; }
    if (c->closing) return; /* input after a close is dropped */
    size_t n = kept + (size_t)got, used = 0;
    if (!c->upgraded) used = on_request(c, rbuf, n);
    if (c->upgraded && !c->closing) used += on_frames(c, rbuf + used, n - used);
    if (c->closed) return;
    c->in_len = n - used;
    if (c->in_len > c->in_cap) {
        c->in_cap = c->in_len < 256 ? 256 : c->in_len * 2;
        if (!(c->in = realloc(c->in, c->in_cap))) abort();
    }
    memcpy(c->in, rbuf + used, c->in_len);
}

static void accept_all(int listener) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (n_conns >= MAX_CONNS) { close(fd); continue; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        if (!c) abort();
        c->fd = fd;
        n_conns++;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0, one = 1;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit limit;
    if (!getrlimit(RLIMIT_NOFILE, &limit)) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addr_len = sizeof addr;
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 4096) ||
        getsockname(listener, (struct sockaddr *)&addr, &addr_len)) {
        perror("direct-ceiling: listen");
        return 1;
    }
    printf("listening on ws://127.0.0.1:%d/ws\n", ntohs(addr.sin_port));
    fflush(stdout);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, events[MAX_EVENTS];
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    for (;;) {
        int ready = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            perror("direct-ceiling: epoll_wait");
            return 1;
        }
        struct timespec ts; /* one clock reading per batch: every ts in it */
        clock_gettime(CLOCK_REALTIME, &ts);
        now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        for (int i = 0; i < ready; i++) {
            conn *c = events[i].data.ptr;
            if (!c) { accept_all(listener); continue; }
            if (c->closed) continue;
            if (events[i].events & EPOLLOUT) mark_dirty(c);
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
        flush_all();
        for (size_t i = 0; i < n_closed; i++) {
            free(closed_now[i]->in);
            free(closed_now[i]->out);
            free(closed_now[i]);
        }
        n_conns -= n_closed;
        n_closed = 0;
    }
}
