/*
 * imbed-host: runs an imbed server from the command line.
 *
 * stdout: the first line is "listening on ws://HOST:PORT/ws" (wss:// with
 * --tls-cert); then every host
 * event, and every reply to a stdin command, as one JSON object per line.
 * stderr: the engine's logs and fatal errors.
 * stdin: one command per line (see USAGE): messages ("send", "group"), reading
 * ("history"), administration ("create-group", "add", "remove", "members",
 * "kick", "online", "devices", "stats"), push requests ("pushes", "push-done"),
 * "restart" and "quit". Each command answers with one JSON line.
 * SIGINT and SIGTERM stop the server cleanly; so does "quit". End of input
 * does not: the host may run with stdin closed and keeps serving.
 *
 * Events arrive in one of two ways, with the same output. By default the
 * engine's event thread calls this program's listener. With --poll, or
 * "events":{"delivery":"poll"} in the --config file, there is no event
 * thread and no callback: the main thread's poll() watches stdin, the stop
 * signals and the server's event descriptor, and prints the events it takes
 * between commands, the way a host with its own loop embeds imbed.
 *
 * The configuration is the engine's JSON (docs/C-API.md), built from three
 * layers: this program's defaults, then the --config file, then the flags
 * given (USAGE, "configuration", has the rule). The engine merges them;
 * this program parses no JSON.
 *
 * The stdin/stdout/signal plumbing it shares with imbed-client is in
 * examples/console.c; this file holds the flags, the config and the commands.
 *
 * Build (POSIX.1-2008, nothing beyond it):
 *   cc -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -Iinclude \
 *      examples/host.c examples/console.c target/release/libimbed.a \
 *      -lpthread -ldl -lm -o build/imbed-host
 */
#include "console.h"
#include "imbed.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PROGRAM_NAME "imbed-host"
#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_DB_PATH ":memory:"
#define DEFAULT_LOG_LEVEL "info"
#define EXIT_USAGE 2
#define DEFAULT_HISTORY_LIMIT 50
/* Messages "search" prints. */
#define DEFAULT_SEARCH_LIMIT 20
#define DEFAULT_WEB_ROOT "examples/web"

static const char USAGE[] =
    "usage: " PROGRAM_NAME " [--config FILE] (--dev-auth | --jwt-secret-file PATH | --jwt-secret SECRET) [options]\n"
    "\n"
    "  --config FILE        the engine's JSON configuration: any key of docs/C-API.md, such as the rate\n"
    "                       limits, retention or events.queue_capacity (examples/imbed-host.json is one);\n"
    "                       the flags below override it (see \"configuration\"). When FILE cannot be\n"
    "                       read, is not a JSON object or is refused by the engine, the host names it\n"
    "                       and exits with status 2\n"
    "  --listen HOST:PORT   listen: address to serve on (default " DEFAULT_LISTEN "; port 0 picks one)\n"
    "  --db PATH            store.path: SQLite file that stores the messages (default " DEFAULT_DB_PATH ",\n"
    "                       which keeps nothing)\n"
    "  --postgres URL       store.postgres: keep the messages in the PostgreSQL database at URL\n"
    "                       (postgres://user:password@host:port/db) instead of --db's file\n"
    "  --redis URL          cluster.redis: one node of several sharing --postgres's database, with\n"
    "                       Redis at URL (redis://host:port) between them (docs/CLUSTER.md)\n"
    "  --node-id ID         cluster.node_id: this node's name among them (default: a new one each start)\n"
    "  --dev-auth           auth, all of it: the token is the user id (demos and tests only)\n"
    "  --jwt-secret-file PATH  auth.mode and auth.secret: accept HS256 JWTs signed with the secret in\n"
    "                       PATH (one trailing newline is not part of it); at least 32 bytes\n"
    "  --jwt-secret SECRET  the same with the secret on the command line, where other users of the\n"
    "                       machine can read it (ps); prefer the file or IMBED_JWT_SECRET\n"
    "  --workers N          workers: engine worker threads (default: the engine's, 2)\n"
    "  --max-connections N  limits.max_connections: refuse connections beyond N with HTTP 503 (default:\n"
    "                       the engine's, 10000)\n"
    "  --handshake-timeout-ms N  limits.handshake_timeout_ms: upgrade plus authentication must finish\n"
    "                       within N ms (default 10000)\n"
    "  --allow-origin ORIGIN  origins.allowed: accept browsers from ORIGIN only (repeatable; default:\n"
    "                       any origin)\n"
    "  --allowed-host NAME  http.allowed_hosts: answer only requests whose Host header names NAME (its\n"
    "                       port aside), others get HTTP 421, against DNS rebinding (repeatable; default:\n"
    "                       any Host)\n"
    "  --max-connections-per-user N  limits.max_connections_per_user: sessions one user may have open at\n"
    "                       once (default: the engine's, 16)\n"
    "  --max-watches N      limits.max_watches: distinct users one session may watch for presence\n"
    "                       (default: the engine's, 1000)\n"
    "  --tls-cert PATH      tls.cert_path: serve wss:// with this PEM certificate chain (needs --tls-key)\n"
    "  --tls-key PATH       tls.key_path: the PEM private key of --tls-cert\n"
    "  --web DIR            web_root: serve DIR's files on the same port (default " DEFAULT_WEB_ROOT " when it\n"
    "                       exists)\n"
    "  --no-web             web_root, removed: serve no files, only /ws, /healthz and /metrics\n"
    "  --quiet              events.messages false: do not receive or print message events (load tests)\n"
    "  --push               push.enabled true: a message to a user with no session in the foreground\n"
    "                       records a push request, printed as a \"push\" event and offered again (also\n"
    "                       after a restart) until \"push-done\" ends it; the --config file's push\n"
    "                       section keeps its other keys (direct, groups, mentions_only_above...)\n"
    "  --files DIR          files.dir: accept uploads at POST /files and serve them at GET /files/<id>,\n"
    "                       keeping them in DIR (created if missing); without it there are no files\n"
    "  --poll               events.delivery \"poll\": no event thread and no callbacks; the host's main\n"
    "                       thread waits in poll() for stdin and the server's event descriptor and\n"
    "                       prints the events it takes, as they are printed without it\n"
    "  --log-level LEVEL    log_level: off, error, warn, info, debug or trace (default " DEFAULT_LOG_LEVEL ")\n"
    "  --host-id ID         host_ids, as [ID]: the sender id of messages sent with \"send\" and \"group\",\n"
    "                       which no user can sign in as (default: the first of host_ids, host)\n"
    "  --help               show this help\n"
    "\n"
    "configuration:\n"
    "  Each key takes its value from the first of: the flags given, IMBED_JWT_SECRET, the --config\n"
    "  file, the defaults above, the engine's defaults (docs/C-API.md). A flag sets only the keys\n"
    "  named before its description, and the file's other keys stay: --jwt-secret(-file) keeps the\n"
    "  file's auth.issuer and auth.audience, while --dev-auth replaces the whole auth section (dev mode\n"
    "  takes no other key); a repeatable flag's list replaces the file's list. Authentication comes\n"
    "  from a flag, IMBED_JWT_SECRET or the file's \"auth\"; --tls-cert and --tls-key go together, over\n"
    "  a file's tls too.\n"
    "\n"
    "environment:\n"
    "  IMBED_JWT_SECRET     with no --dev-auth or --jwt-secret* flag: auth.mode and auth.secret, as\n"
    "                       --jwt-secret would set them\n"
    "\n"
    "commands on stdin, one per line:\n"
    "  send USER JSON-BODY    send JSON-BODY to USER from the host id\n"
    "  group GROUP JSON-BODY  send JSON-BODY to the members of GROUP from the host id\n"
    "  history CONV [N]       print the N newest messages of CONV (default 50), such as dm:alice:bob or g:team\n"
    "  delete CONV SEQ        delete message SEQ of CONV for everyone, as the host id (moderation)\n"
    "  search WORDS...        print the 20 newest messages of any conversation with every one of WORDS\n"
    "  file ID                print where the uploaded file ID is, its size and its type\n"
    "  create-group GROUP [open|closed]\n"
    "                         create GROUP (default open), or make an existing one open or closed;\n"
    "                         users cannot join a closed group, only the host adds its members, so\n"
    "                         making a group closed removes the members it had\n"
    "  add GROUP USER         add USER to GROUP\n"
    "  remove GROUP USER      remove USER from GROUP\n"
    "  members GROUP          print whether GROUP is closed and its members\n"
    "  kick USER              close every session of USER\n"
    "  online                 print the users with at least one session\n"
    "  devices                print the devices with a session, by user, each foreground or background\n"
    "  pushes                 print the push requests not done yet, oldest first\n"
    "  push-done ID [failed [REASON]]\n"
    "                         end push request ID, delivered (or failed, for REASON, which is logged and\n"
    "                         counted): it is never offered again\n"
    "  stats                  print the server's counters\n"
    "  restart                stop the server and start a new one on the same configuration and database,\n"
    "                         in this process; the reply names the port (a new one if listen had port 0);\n"
    "                         exits with status 1 if the server cannot start again\n"
    "  quit                   stop the server and exit\n";

typedef enum auth_mode { AUTH_UNSET, AUTH_DEV, AUTH_JWT } auth_mode;

/* More --allow-origin flags than any deployment needs; more is a usage error. */
#define MAX_ALLOWED_ORIGINS 32
/* The same for --allowed-host. */
#define MAX_ALLOWED_HOSTS 32
/* The longest JWT secret file read; HS256 needs 32 bytes, a longer key adds nothing past 64. */
#define MAX_SECRET_FILE_BYTES 4096
/* The largest --config file read: every key with its value fits in a few KiB; a larger file is a mistake. */
#define MAX_CONFIG_FILE_BYTES (1024 * 1024)
#define JWT_SECRET_ENV "IMBED_JWT_SECRET"
/* The sender id when the configuration names none (the engine's default host_ids, ["host"]). */
#define DEFAULT_HOST_ID "host"
/* Events taken per imbed_server_next_events call, with --poll. */
#define EVENT_BATCH_SIZE 64
/*
 * Batches taken per wake-up before the loop looks at stdin and the stop
 * signals again, so that a flood of events cannot hold off "quit" or
 * SIGTERM. The event descriptor stays readable while events wait: the rest
 * are taken on the next turn.
 */
#define EVENT_BATCHES_PER_TURN 16

/*
 * The command line. A NULL or 0 stands for a flag not given, which leaves
 * its keys to the --config file and the defaults: the flags layer of the
 * configuration holds the given flags only.
 */
typedef struct host_options {
    const char *config_path;   /* --config */
    const char *listen;
    const char *db_path;
    auth_mode auth;
    const char *jwt_secret;    /* from a flag, its file or the environment, with AUTH_JWT */
    unsigned long workers;
    unsigned long max_connections;
    unsigned long handshake_timeout_ms;
    const char *allowed_origins[MAX_ALLOWED_ORIGINS];
    size_t allowed_origin_count;
    const char *allowed_hosts[MAX_ALLOWED_HOSTS];
    size_t allowed_host_count;
    unsigned long max_connections_per_user;
    unsigned long max_watches;
    const char *tls_cert;
    const char *tls_key;
    const char *web_root;      /* with web_root_given; NULL for --no-web */
    bool web_root_given;       /* --web or --no-web */
    bool quiet;
    bool poll;                 /* --poll */
    bool push;                 /* --push */
    const char *files_dir;     /* --files */
    const char *postgres;      /* --postgres */
    const char *redis;         /* --redis */
    const char *node_id;       /* --node-id */
    const char *log_level;
    const char *host_id;
} host_options;

/* The configuration the server runs on, and what this program itself needs of it. */
typedef struct host_config {
    char *json;                /* the layers merged; imbed_string_free */
    const char *path;          /* the --config file, NULL without one; named in messages */
    char *listen_host;         /* HOST of listen, echoed in the banner */
    bool tls;                  /* wss:// in the banner */
    char *host_id;             /* the sender of "send" and "group": the first of host_ids */
} host_config;

/* The name console.c puts before its stderr lines, as this file does. */
const char console_program_name[] = PROGRAM_NAME;

/* What a stdin command runs against. */
typedef struct host_context {
    imbed_server *server;
    const host_config *config;
    bool polling;              /* events.delivery "poll": the main loop takes the events */
} host_context;

/* Prints the reason and the usage to stderr and exits with the usage status. */
static void fail_usage(const char *reason, const char *flag)
{
    fprintf(stderr, PROGRAM_NAME ": %s%s\n\n%s", reason, flag, USAGE);
    exit(EXIT_USAGE);
}

/* Appends an unsigned number in decimal. */
static void text_append_unsigned(text_buffer *text, uint64_t number)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%" PRIu64, number);
    text_append(text, digits);
}

/* Checks HOST:PORT (split at its last colon, so "[::1]:0" works); exits on a malformed address. */
static void check_listen_address(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || colon == listen) {
        fail_usage("--listen needs HOST:PORT, got ", listen);
    }
    const char *port = colon + 1;
    size_t digit_count = strspn(port, "0123456789");
    if (digit_count == 0 || digit_count > 5 || port[digit_count] != '\0' || strtoul(port, NULL, 10) > 65535) {
        fail_usage("--listen needs a port from 0 to 65535, got ", listen);
    }
}

/* Parses the value of a numeric flag: a positive decimal number of at most
   6 digits; the engine enforces its own bounds. */
static unsigned long parse_positive(const char *flag, const char *value)
{
    size_t digit_count = strspn(value, "0123456789");
    unsigned long workers = strtoul(value, NULL, 10);
    if (digit_count == 0 || digit_count > 6 || value[digit_count] != '\0' || workers == 0) {
        char reason[64];
        snprintf(reason, sizeof reason, "%s needs a positive number, got ", flag);
        fail_usage(reason, value);
    }
    return workers;
}

/* Returns the value following flag argv[*index] and advances past it; exits if there is none. */
static const char *take_flag_value(int argc, char **argv, int *index)
{
    if (*index + 1 >= argc) {
        fail_usage("missing value for ", argv[*index]);
    }
    *index += 1;
    return argv[*index];
}

/*
 * Reads the JWT secret of --jwt-secret-file: the file's bytes less one
 * trailing newline ("\n" or "\r\n"), as an editor or `echo` leaves it. Exits
 * on a file that cannot be read, is longer than MAX_SECRET_FILE_BYTES or holds
 * a NUL byte; the engine judges the secret itself (its length included).
 */
static const char *read_secret_file(const char *path)
{
    static char secret[MAX_SECRET_FILE_BYTES + 2];
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fail_usage("cannot open --jwt-secret-file ", path);
    }
    size_t length = fread(secret, 1, sizeof secret - 1, file);
    bool failed = ferror(file) != 0;
    fclose(file);
    if (failed) {
        fail_usage("cannot read --jwt-secret-file ", path);
    }
    if (length > MAX_SECRET_FILE_BYTES) {
        fail_usage("--jwt-secret-file is longer than 4096 bytes: ", path);
    }
    if (memchr(secret, '\0', length) != NULL) {
        fail_usage("--jwt-secret-file holds a NUL byte: ", path);
    }
    if (length > 0 && secret[length - 1] == '\n') {
        length--;
        if (length > 0 && secret[length - 1] == '\r') {
            length--;
        }
    }
    secret[length] = '\0';
    return secret;
}

/* Parses the command line into `options`; exits 0 for --help and 2 for any misuse. */
static void parse_options(int argc, char **argv, host_options *options)
{
    *options = (host_options){0};
    for (int index = 1; index < argc; index++) {
        const char *flag = argv[index];
        if (strcmp(flag, "--help") == 0) {
            fputs(USAGE, stdout);
            exit(0);
        } else if (strcmp(flag, "--config") == 0) {
            options->config_path = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--listen") == 0) {
            options->listen = take_flag_value(argc, argv, &index);
            check_listen_address(options->listen);
        } else if (strcmp(flag, "--db") == 0) {
            options->db_path = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--postgres") == 0) {
            options->postgres = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--redis") == 0) {
            options->redis = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--node-id") == 0) {
            options->node_id = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--dev-auth") == 0) {
            if (options->auth == AUTH_JWT) {
                fail_usage("choose one of --dev-auth and --jwt-secret(-file)", "");
            }
            options->auth = AUTH_DEV;
        } else if (strcmp(flag, "--jwt-secret") == 0 || strcmp(flag, "--jwt-secret-file") == 0) {
            if (options->auth == AUTH_DEV) {
                fail_usage("choose one of --dev-auth and --jwt-secret(-file)", "");
            }
            options->auth = AUTH_JWT;
            const char *value = take_flag_value(argc, argv, &index);
            options->jwt_secret = strcmp(flag, "--jwt-secret") == 0 ? value : read_secret_file(value);
        } else if (strcmp(flag, "--workers") == 0) {
            options->workers = parse_positive(flag, take_flag_value(argc, argv, &index));
        } else if (strcmp(flag, "--handshake-timeout-ms") == 0) {
            options->handshake_timeout_ms = parse_positive(flag, take_flag_value(argc, argv, &index));
        } else if (strcmp(flag, "--max-connections") == 0) {
            options->max_connections = parse_positive(flag, take_flag_value(argc, argv, &index));
        } else if (strcmp(flag, "--max-connections-per-user") == 0) {
            options->max_connections_per_user = parse_positive(flag, take_flag_value(argc, argv, &index));
        } else if (strcmp(flag, "--max-watches") == 0) {
            options->max_watches = parse_positive(flag, take_flag_value(argc, argv, &index));
        } else if (strcmp(flag, "--allowed-host") == 0) {
            if (options->allowed_host_count == MAX_ALLOWED_HOSTS) {
                fail_usage("too many --allowed-host flags", "");
            }
            options->allowed_hosts[options->allowed_host_count++] = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--allow-origin") == 0) {
            if (options->allowed_origin_count == MAX_ALLOWED_ORIGINS) {
                fail_usage("too many --allow-origin flags", "");
            }
            options->allowed_origins[options->allowed_origin_count++] = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--tls-cert") == 0) {
            options->tls_cert = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--tls-key") == 0) {
            options->tls_key = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--web") == 0) {
            options->web_root = take_flag_value(argc, argv, &index);
            options->web_root_given = true;
        } else if (strcmp(flag, "--no-web") == 0) {
            options->web_root = NULL;
            options->web_root_given = true;
        } else if (strcmp(flag, "--quiet") == 0) {
            options->quiet = true;
        } else if (strcmp(flag, "--poll") == 0) {
            options->poll = true;
        } else if (strcmp(flag, "--push") == 0) {
            options->push = true;
        } else if (strcmp(flag, "--files") == 0) {
            options->files_dir = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--log-level") == 0) {
            options->log_level = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--host-id") == 0) {
            options->host_id = take_flag_value(argc, argv, &index);
        } else {
            fail_usage("unknown argument ", flag);
        }
    }
    /* The environment keeps the secret off the command line, which ps shows to everyone. */
    const char *secret_from_environment = getenv(JWT_SECRET_ENV);
    if (options->auth == AUTH_UNSET && secret_from_environment != NULL) {
        options->auth = AUTH_JWT;
        options->jwt_secret = secret_from_environment;
    }
    /* A certificate without its own key (or the reverse) is a mistake even when a file has the other. */
    if ((options->tls_cert == NULL) != (options->tls_key == NULL)) {
        fail_usage("--tls-cert and --tls-key go together", "");
    }
}

/*
 * Appends `"key":` to the JSON object `json` is building, after a comma
 * unless it is the object's first member (the object was just opened).
 */
static void append_key(text_buffer *json, const char *key)
{
    if (json->data[json->length - 1] != '{') {
        text_append(json, ",");
    }
    text_append_json_string(json, key);
    text_append(json, ":");
}

/* Appends `"key":"value"`, the value escaped, to the object `json` is building. */
static void append_string_member(text_buffer *json, const char *key, const char *value)
{
    append_key(json, key);
    text_append_json_string(json, value);
}

/* Appends `"key":["value",...]` to the object `json` is building. */
static void append_strings_member(text_buffer *json, const char *key, const char *const *values, size_t count)
{
    append_key(json, key);
    text_append(json, "[");
    for (size_t i = 0; i < count; i++) {
        text_append(json, i == 0 ? "" : ",");
        text_append_json_string(json, values[i]);
    }
    text_append(json, "]");
}

/* This program's defaults, the lowest layer: the values it documents in USAGE. */
static char *build_defaults_json(void)
{
    text_buffer json = {0};
    text_append(&json, "{");
    append_string_member(&json, "listen", DEFAULT_LISTEN);
    append_key(&json, "store");
    text_append(&json, "{");
    append_string_member(&json, "path", DEFAULT_DB_PATH);
    text_append(&json, "}");
    append_string_member(&json, "log_level", DEFAULT_LOG_LEVEL);
    /* The default web client is found from the repository root, where make run starts. */
    struct stat web_root;
    if (stat(DEFAULT_WEB_ROOT, &web_root) == 0 && S_ISDIR(web_root.st_mode)) {
        append_string_member(&json, "web_root", DEFAULT_WEB_ROOT);
    }
    text_append(&json, "}");
    return json.data;
}

/*
 * The top layer: the keys of the flags given, and only those, so that the
 * file's keys stand for every flag left out. A null removes a key in the
 * merge (JSON Merge Patch, RFC 7386).
 */
static char *build_flags_json(const host_options *options)
{
    text_buffer json = {0};
    text_append(&json, "{");
    if (options->listen != NULL) {
        append_string_member(&json, "listen", options->listen);
    }
    if (options->db_path != NULL || options->postgres != NULL) {
        append_key(&json, "store");
        text_append(&json, "{");
        if (options->db_path != NULL) {
            append_string_member(&json, "path", options->db_path);
        }
        if (options->postgres != NULL) {
            append_string_member(&json, "postgres", options->postgres);
        }
        text_append(&json, "}");
    }
    if (options->redis != NULL || options->node_id != NULL) {
        append_key(&json, "cluster");
        text_append(&json, "{");
        if (options->redis != NULL) {
            append_string_member(&json, "redis", options->redis);
        }
        if (options->node_id != NULL) {
            append_string_member(&json, "node_id", options->node_id);
        }
        text_append(&json, "}");
    }
    if (options->auth == AUTH_DEV) {
        /* Dev mode takes no other key: the nulls clear a file's JWT settings, which it would refuse. */
        append_key(&json, "auth");
        text_append(&json, "{\"mode\":\"dev\",\"secret\":null,\"issuer\":null,\"audience\":null}");
    } else if (options->auth == AUTH_JWT) {
        /* A file's issuer and audience stay: they go with the secret, not against it. */
        append_key(&json, "auth");
        text_append(&json, "{\"mode\":\"jwt\"");
        append_string_member(&json, "secret", options->jwt_secret);
        text_append(&json, "}");
    }
    if (options->workers != 0) {
        append_key(&json, "workers");
        text_append_unsigned(&json, options->workers);
    }
    const struct {
        const char *key;
        unsigned long value;
    } limits[] = {
        {"max_connections", options->max_connections},
        {"handshake_timeout_ms", options->handshake_timeout_ms},
        {"max_connections_per_user", options->max_connections_per_user},
        {"max_watches", options->max_watches},
    };
    bool limits_open = false;
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        if (limits[i].value != 0) {
            if (!limits_open) {
                append_key(&json, "limits");
                text_append(&json, "{");
                limits_open = true;
            }
            append_key(&json, limits[i].key);
            text_append_unsigned(&json, limits[i].value);
        }
    }
    if (limits_open) {
        text_append(&json, "}");
    }
    if (options->host_id != NULL) {
        append_strings_member(&json, "host_ids", &options->host_id, 1);
    }
    if (options->allowed_host_count > 0) {
        append_key(&json, "http");
        text_append(&json, "{");
        append_strings_member(&json, "allowed_hosts", options->allowed_hosts, options->allowed_host_count);
        text_append(&json, "}");
    }
    if (options->allowed_origin_count > 0) {
        append_key(&json, "origins");
        text_append(&json, "{");
        append_strings_member(&json, "allowed", options->allowed_origins, options->allowed_origin_count);
        text_append(&json, "}");
    }
    if (options->tls_cert != NULL) {
        append_key(&json, "tls");
        text_append(&json, "{");
        append_string_member(&json, "cert_path", options->tls_cert);
        append_string_member(&json, "key_path", options->tls_key);
        text_append(&json, "}");
    }
    if (options->quiet || options->poll) {
        append_key(&json, "events");
        text_append(&json, "{");
        if (options->quiet) {
            append_key(&json, "messages");
            text_append(&json, "false");
        }
        if (options->poll) {
            append_string_member(&json, "delivery", "poll");
        }
        text_append(&json, "}");
    }
    if (options->push) {
        /* Only "enabled": the policy (direct, groups, retry_after_ms...) stays the file's. */
        append_key(&json, "push");
        text_append(&json, "{\"enabled\":true}");
    }
    if (options->files_dir != NULL) {
        append_key(&json, "files");
        text_append(&json, "{");
        append_string_member(&json, "dir", options->files_dir);
        text_append(&json, "}");
    }
    if (options->web_root_given) {
        append_key(&json, "web_root");
        if (options->web_root != NULL) {
            text_append_json_string(&json, options->web_root);
        } else {
            text_append(&json, "null");
        }
    }
    if (options->log_level != NULL) {
        append_string_member(&json, "log_level", options->log_level);
    }
    text_append(&json, "}");
    return json.data;
}

/* Exits with the usage status after a one-line message about the --config file. */
static void fail_config_file(const char *path, const char *problem)
{
    fprintf(stderr, PROGRAM_NAME ": --config %s: %s\n", path, problem);
    exit(EXIT_USAGE);
}

/*
 * Reads the --config file into a NUL-terminated string (the caller frees
 * it). Exits on a file that cannot be read, is larger than
 * MAX_CONFIG_FILE_BYTES or holds a NUL byte, which would cut the text short
 * unseen; whether it is JSON is the merge's to say.
 */
static char *read_config_file(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fail_config_file(path, strerror(errno));
    }
    char *text = malloc(MAX_CONFIG_FILE_BYTES + 2);
    if (text == NULL) {
        fail_config_file(path, "out of memory");
    }
    size_t length = fread(text, 1, MAX_CONFIG_FILE_BYTES + 1, file);
    int read_error = ferror(file) != 0 ? errno : 0;
    fclose(file);
    if (read_error != 0) {
        fail_config_file(path, strerror(read_error));
    }
    if (length > MAX_CONFIG_FILE_BYTES) {
        fail_config_file(path, "larger than 1 MiB");
    }
    if (memchr(text, '\0', length) != NULL) {
        fail_config_file(path, "holds a NUL byte");
    }
    text[length] = '\0';
    return text;
}

/*
 * imbed_config_merge for layers whose failure is a bug of this program
 * (every layer it merges but the file's is its own JSON object, or a merge
 * of one): reports it and exits with status 1.
 */
static char *merge_own_layers(const char *base, const char *overlay)
{
    char *merged = NULL;
    imbed_status status = imbed_config_merge(base, overlay, &merged);
    if (status != IMBED_OK) {
        print_failure(status);
        exit(1);
    }
    return merged;
}

/* The defaults with the --config file laid over them; exits with the usage status if it is not a JSON object. */
static char *merge_config_file(const char *defaults, const char *path)
{
    char *text = read_config_file(path);
    char *merged = NULL;
    imbed_status status = imbed_config_merge(defaults, text, &merged);
    free(text);
    if (status == IMBED_ERR_INVALID_UTF8) {
        fail_config_file(path, "not UTF-8");
    }
    if (status != IMBED_OK) {
        /* The engine names the layer ("overlay: "); the file's name says more. */
        const char *message = imbed_last_error();
        const char *layer = "overlay: ";
        if (strncmp(message, layer, strlen(layer)) == 0) {
            message += strlen(layer);
        }
        fail_config_file(path, message);
    }
    return merged;
}

/* A JSON object with one member, `"key":` followed by `value` as JSON text; the caller frees it. */
static char *single_member_object(const char *key, const char *value)
{
    text_buffer json = {0};
    text_append(&json, "{");
    append_key(&json, key);
    text_append(&json, value);
    text_append(&json, "}");
    return json.data;
}

/*
 * Whether `config`, a merged configuration, has the top-level `key`. This
 * program parses no JSON, so the engine's merge answers: removing the key
 * changes the text only when the key is there.
 */
static bool config_has(const char *config, const char *key)
{
    char *removal = single_member_object(key, "null");
    char *without = merge_own_layers(config, removal);
    char *unchanged = merge_own_layers(config, "{}");
    bool has = strcmp(without, unchanged) != 0;
    free(removal);
    imbed_string_free(without);
    imbed_string_free(unchanged);
    return has;
}

/*
 * The JSON text of the top-level `key`'s value in `config`, a merged
 * configuration, or NULL when it has none; for a string, array or object
 * value. The engine has no call that reports its configuration and this
 * program parses no JSON, so the merge finds the value: setting it to 0
 * leaves the rest of the text as it was, so the value is what lies between
 * the first and the last byte where the two texts differ (no string, array
 * or object begins or ends the way 0 does). The caller frees the result.
 */
static char *config_value_text(const char *config, const char *key)
{
    if (!config_has(config, key)) {
        return NULL;
    }
    char *zeroing = single_member_object(key, "0");
    char *zeroed = merge_own_layers(config, zeroing);
    char *unchanged = merge_own_layers(config, "{}");
    size_t zeroed_length = strlen(zeroed);
    size_t length = strlen(unchanged);
    size_t prefix = 0;
    while (prefix < zeroed_length && unchanged[prefix] == zeroed[prefix]) {
        prefix++;
    }
    size_t suffix = 0;
    while (suffix < zeroed_length - prefix && unchanged[length - 1 - suffix] == zeroed[zeroed_length - 1 - suffix]) {
        suffix++;
    }
    char *value = strndup(unchanged + prefix, length - prefix - suffix);
    free(zeroing);
    imbed_string_free(zeroed);
    imbed_string_free(unchanged);
    if (value == NULL) {
        fputs(PROGRAM_NAME ": out of memory\n", stderr);
        exit(1);
    }
    return value;
}

/*
 * Builds the configuration: this program's defaults, the --config file
 * over them, the flags given over both. Exits with the usage status when
 * the file cannot be used or nothing configures authentication (the
 * engine's default, a host callback, is one this program does not have).
 */
static void build_config(const host_options *options, host_config *config)
{
    *config = (host_config){.path = options->config_path};
    char *defaults = build_defaults_json();
    char *below_flags = NULL;
    if (options->config_path != NULL) {
        below_flags = merge_config_file(defaults, options->config_path);
    } else {
        below_flags = merge_own_layers(defaults, "{}");
    }
    free(defaults);
    char *flags = build_flags_json(options);
    config->json = merge_own_layers(below_flags, flags);
    free(flags);
    imbed_string_free(below_flags);
    if (!config_has(config->json, "auth")) {
        fail_usage("one of --dev-auth, --jwt-secret-file, --jwt-secret, " JWT_SECRET_ENV
                   " or \"auth\" in the --config file is required", "");
    }
}

/*
 * Fills in what this program needs from a configuration the engine
 * accepted: the banner's host and scheme, and the sender id. Validated
 * values need no unescaping: an address and user ids hold no character
 * JSON escapes.
 */
static void describe_config(host_config *config)
{
    char *listen = config_value_text(config->json, "listen");
    const char *address = listen != NULL ? listen + 1 : DEFAULT_LISTEN; /* past the opening quote */
    config->listen_host = strndup(address, (size_t)(strrchr(address, ':') - address)); /* validated: it has one */
    free(listen);
    config->tls = config_has(config->json, "tls");
    char *host_ids = config_value_text(config->json, "host_ids");
    if (host_ids != NULL && host_ids[1] == '"') {
        config->host_id = strndup(host_ids + 2, strcspn(host_ids + 2, "\""));
    } else {
        config->host_id = strdup(DEFAULT_HOST_ID);
    }
    free(host_ids);
    if (config->listen_host == NULL || config->host_id == NULL) {
        fputs(PROGRAM_NAME ": out of memory\n", stderr);
        exit(1);
    }
}

/* Releases what build_config and describe_config allocated. */
static void free_config(host_config *config)
{
    imbed_string_free(config->json);
    free(config->listen_host);
    free(config->host_id);
    *config = (host_config){0};
}

/*
 * Reports a failure to create or start the first server. A configuration
 * the engine refuses with a --config file exits with the usage status and
 * names the file; without one the status is 1, as it always was. The
 * engine's " at line L column C" is dropped there: it points into the
 * merged text, which the user never sees, not into the file.
 */
static int report_first_start_failure(const host_config *config, imbed_status status)
{
    if (config->path == NULL || status != IMBED_ERR_INVALID_CONFIG) {
        print_failure(status);
        return 1;
    }
    text_buffer message = {0};
    text_append(&message, imbed_last_error());
    const char *position = NULL;
    for (const char *at = strstr(message.data, " at line "); at != NULL; at = strstr(at + 1, " at line ")) {
        position = at;
    }
    unsigned line = 0;
    unsigned column = 0;
    int consumed = 0;
    if (position != NULL && sscanf(position, " at line %u column %u%n", &line, &column, &consumed) == 2 &&
        position[consumed] == '\0') {
        message.data[position - message.data] = '\0';
    }
    fprintf(stderr, PROGRAM_NAME ": --config %s, with the flags over it: %s: %s\n", config->path,
            imbed_status_str((int)status), message.data);
    text_free(&message);
    return EXIT_USAGE;
}

/* Runs "send <user> <json-body>": the body is the rest of the line, spaces included. */
static void run_send_command(imbed_server *server, const char *host_id, char *arguments)
{
    char *user = take_word(&arguments);
    char *body = arguments + strspn(arguments, " \t");
    if (*user == '\0' || *body == '\0') {
        print_command_error("send", "usage: send <user> <json-body>");
        return;
    }
    uint64_t seq = 0;
    imbed_status status = imbed_server_send(server, host_id, user, body, NULL, &seq);
    if (status != IMBED_OK) {
        print_command_failure("send", status);
        return;
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"sent\",\"to\":");
    text_append_json_string(&line, user);
    text_append(&line, ",\"seq\":");
    text_append_unsigned(&line, seq);
    text_append(&line, "}");
    print_stdout_line(line.data);
    text_free(&line);
}

/* Runs "group <group> <json-body>": like "send", to every member of the group. */
static void run_group_command(imbed_server *server, const char *host_id, char *arguments)
{
    char *group = take_word(&arguments);
    char *body = arguments + strspn(arguments, " \t");
    if (*group == '\0' || *body == '\0') {
        print_command_error("group", "usage: group <group> <json-body>");
        return;
    }
    uint64_t seq = 0;
    imbed_status status = imbed_server_send_group(server, host_id, group, body, NULL, &seq);
    if (status != IMBED_OK) {
        print_command_failure("group", status);
        return;
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"sent\",\"group\":");
    text_append_json_string(&line, group);
    text_append(&line, ",\"seq\":");
    text_append_unsigned(&line, seq);
    text_append(&line, "}");
    print_stdout_line(line.data);
    text_free(&line);
}

/* Parses the limit of "history": a decimal number that fits uint32_t; the engine checks its range. */
static bool parse_history_limit(const char *text, uint32_t *limit_out)
{
    size_t digit_count = strspn(text, "0123456789");
    if (digit_count == 0 || digit_count > 10 || text[digit_count] != '\0') {
        return false;
    }
    unsigned long long limit = strtoull(text, NULL, 10);
    if (limit > UINT32_MAX) {
        return false;
    }
    *limit_out = (uint32_t)limit;
    return true;
}

/* Runs "history <conv> [limit]": prints the newest messages of conv as one JSON line. */
static void run_history_command(imbed_server *server, char *arguments)
{
    char *conv = take_word(&arguments);
    char *limit_text = take_word(&arguments);
    char *extra = take_word(&arguments);
    uint32_t limit = DEFAULT_HISTORY_LIMIT;
    if (*conv == '\0' || *extra != '\0' || (*limit_text != '\0' && !parse_history_limit(limit_text, &limit))) {
        print_command_error("history", "usage: history <conv> [limit]");
        return;
    }
    char *messages = NULL;
    imbed_status status = imbed_server_history(server, conv, 0, limit, &messages);
    if (status != IMBED_OK) {
        print_command_failure("history", status);
        return;
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"history\",\"conv\":");
    text_append_json_string(&line, conv);
    text_append(&line, ",\"messages\":");
    text_append(&line, messages);
    text_append(&line, "}");
    imbed_string_free(messages);
    print_stdout_line(line.data);
    text_free(&line);
}

/* Runs "delete <conv> <seq>": deletes a message for everyone, as the host id. */
static void run_delete_command(imbed_server *server, const char *host_id, char *arguments)
{
    char *conv = take_word(&arguments);
    char *seq_text = take_word(&arguments);
    char *extra = take_word(&arguments);
    uint32_t target = 0;
    if (*conv == '\0' || *extra != '\0' || !parse_history_limit(seq_text, &target)) {
        print_command_error("delete", "usage: delete <conv> <seq>");
        return;
    }
    uint64_t seq = 0;
    imbed_status status = imbed_server_delete(server, host_id, conv, target, &seq);
    if (status != IMBED_OK) {
        print_command_failure("delete", status);
        return;
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"deleted\",\"conv\":");
    text_append_json_string(&line, conv);
    text_append(&line, ",\"target\":");
    text_append_unsigned(&line, target);
    text_append(&line, ",\"seq\":");
    text_append_unsigned(&line, seq);
    text_append(&line, "}");
    print_stdout_line(line.data);
    text_free(&line);
}

/* Prints {"event":EVENT,...} with the engine's JSON object `json` spliced in after the event name. */
static void print_event_with_object(const char *event, const char *json)
{
    text_buffer line = {0};
    text_append(&line, "{\"event\":");
    text_append_json_string(&line, event);
    text_append(&line, ",");
    text_append(&line, json + 1);
    print_stdout_line(line.data);
    text_free(&line);
}

/* Runs "search <words...>": the newest messages with every word, in any conversation. */
static void run_search_command(imbed_server *server, char *arguments)
{
    if (*arguments == '\0') {
        print_command_error("search", "usage: search <words...>");
        return;
    }
    char *found = NULL;
    imbed_status status = imbed_server_search(server, NULL, arguments, NULL, DEFAULT_SEARCH_LIMIT, &found);
    if (status != IMBED_OK) {
        print_command_failure("search", status);
        return;
    }
    print_event_with_object("search", found);
    imbed_string_free(found);
}

/* Runs "file <id>": where an uploaded file is, its size and type. */
static void run_file_command(imbed_server *server, char *arguments)
{
    char *id = take_word(&arguments);
    char *extra = take_word(&arguments);
    if (*id == '\0' || *extra != '\0') {
        print_command_error("file", "usage: file <id>");
        return;
    }
    char *file = NULL;
    imbed_status status = imbed_server_file(server, id, &file);
    if (status != IMBED_OK) {
        print_command_failure("file", status);
        return;
    }
    print_event_with_object("file", file);
    imbed_string_free(file);
}

/* Prints {"event":"ok","command":...,"group":...} for a group command that succeeded; `user` may be NULL. */
static void print_group_command_ok(const char *command, const char *group, const char *user)
{
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"ok\",\"command\":");
    text_append_json_string(&line, command);
    text_append(&line, ",\"group\":");
    text_append_json_string(&line, group);
    if (user != NULL) {
        text_append(&line, ",\"user\":");
        text_append_json_string(&line, user);
    }
    text_append(&line, "}");
    print_stdout_line(line.data);
    text_free(&line);
}

/* Runs "create-group <group> [open|closed]"; a group that exists only changes its closed flag. */
static void run_create_group_command(imbed_server *server, char *arguments)
{
    char *group = take_word(&arguments);
    char *access = take_word(&arguments);
    char *extra = take_word(&arguments);
    bool closed = strcmp(access, "closed") == 0;
    bool access_known = *access == '\0' || closed || strcmp(access, "open") == 0;
    if (*group == '\0' || !access_known || *extra != '\0') {
        print_command_error("create-group", "usage: create-group <group> [open|closed]");
        return;
    }
    imbed_status status = imbed_server_create_group(server, group, closed);
    if (status != IMBED_OK) {
        print_command_failure("create-group", status);
        return;
    }
    print_group_command_ok("create-group", group, NULL);
}

/* Runs "add <group> <user>" or "remove <group> <user>", whichever `command` names. */
static void run_membership_command(imbed_server *server, const char *command, char *arguments)
{
    char *group = take_word(&arguments);
    char *user = take_word(&arguments);
    char *extra = take_word(&arguments);
    if (*group == '\0' || *user == '\0' || *extra != '\0') {
        char usage[64];
        snprintf(usage, sizeof usage, "usage: %s <group> <user>", command);
        print_command_error(command, usage);
        return;
    }
    bool adding = strcmp(command, "add") == 0;
    imbed_status status = adding ? imbed_server_add_member(server, group, user)
                                 : imbed_server_remove_member(server, group, user);
    if (status != IMBED_OK) {
        print_command_failure(command, status);
        return;
    }
    print_group_command_ok(command, group, user);
}

/* Runs "kick <user>": closes the user's sessions and says how many there were. */
static void run_kick_command(imbed_server *server, char *arguments)
{
    char *user = take_word(&arguments);
    char *extra = take_word(&arguments);
    if (*user == '\0' || *extra != '\0') {
        print_command_error("kick", "usage: kick <user>");
        return;
    }
    uint32_t sessions_closed = 0;
    imbed_status status = imbed_server_kick(server, user, &sessions_closed);
    if (status != IMBED_OK) {
        print_command_failure("kick", status);
        return;
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"kicked\",\"user\":");
    text_append_json_string(&line, user);
    text_append(&line, ",\"sessions\":");
    text_append_unsigned(&line, sessions_closed);
    text_append(&line, "}");
    print_stdout_line(line.data);
    text_free(&line);
}

/* Runs "members <group>": prints {"event":"members","group":...,"closed":...,"members":[...]}. */
static void run_members_command(imbed_server *server, char *arguments)
{
    char *group = take_word(&arguments);
    if (*group == '\0' || *take_word(&arguments) != '\0') {
        print_command_error("members", "usage: members <group>");
        return;
    }
    char *members = NULL;
    imbed_status status = imbed_server_members(server, group, &members);
    if (status != IMBED_OK) {
        print_command_failure("members", status);
        return;
    }
    /* The engine's object, {"closed":...,"members":[...]}, with the event and group put first. */
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"members\",\"group\":");
    text_append_json_string(&line, group);
    text_append(&line, ",");
    text_append(&line, members + 1);
    imbed_string_free(members);
    print_stdout_line(line.data);
    text_free(&line);
}

/* Runs "online": prints the engine's sorted array of online user ids. */
static void run_online_command(imbed_server *server, char *arguments)
{
    if (*take_word(&arguments) != '\0') {
        print_command_error("online", "usage: online");
        return;
    }
    char *users = NULL;
    imbed_status status = imbed_server_online(server, &users);
    if (status != IMBED_OK) {
        print_command_failure("online", status);
        return;
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"online\",\"users\":");
    text_append(&line, users);
    text_append(&line, "}");
    imbed_string_free(users);
    print_stdout_line(line.data);
    text_free(&line);
}

/* Runs "devices": prints the engine's object of devices with a session, by user. */
static void run_devices_command(imbed_server *server, char *arguments)
{
    if (*take_word(&arguments) != '\0') {
        print_command_error("devices", "usage: devices");
        return;
    }
    char *devices = NULL;
    imbed_status status = imbed_server_devices(server, &devices);
    if (status != IMBED_OK) {
        print_command_failure("devices", status);
        return;
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"devices\",\"devices\":");
    text_append(&line, devices);
    text_append(&line, "}");
    imbed_string_free(devices);
    print_stdout_line(line.data);
    text_free(&line);
}

/* Runs "pushes": prints the engine's array of push requests not done yet. */
static void run_pushes_command(imbed_server *server, char *arguments)
{
    if (*take_word(&arguments) != '\0') {
        print_command_error("pushes", "usage: pushes");
        return;
    }
    char *pending = NULL;
    imbed_status status = imbed_server_pending_pushes(server, &pending);
    if (status != IMBED_OK) {
        print_command_failure("pushes", status);
        return;
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"pushes\",\"pending\":");
    text_append(&line, pending);
    text_append(&line, "}");
    imbed_string_free(pending);
    print_stdout_line(line.data);
    text_free(&line);
}

/* Parses a push id: a decimal number that fits uint64_t (the engine's ids start at 1, but it judges them). */
static bool parse_push_id(const char *text, uint64_t *push_id_out)
{
    size_t digit_count = strspn(text, "0123456789");
    if (digit_count == 0 || digit_count > 20 || text[digit_count] != '\0') {
        return false;
    }
    errno = 0;
    unsigned long long push_id = strtoull(text, NULL, 10);
    if (errno == ERANGE) {
        return false;
    }
    *push_id_out = (uint64_t)push_id;
    return true;
}

/*
 * Runs "push-done <push_id> [failed [reason]]": the reason is the rest of the
 * line, spaces included, as a push gateway's error message would have them.
 */
static void run_push_done_command(imbed_server *server, char *arguments)
{
    char *push_id_text = take_word(&arguments);
    char *outcome = take_word(&arguments);
    char *reason = arguments + strspn(arguments, " \t");
    bool delivered = *outcome == '\0';
    uint64_t push_id = 0;
    if (!parse_push_id(push_id_text, &push_id) || (!delivered && strcmp(outcome, "failed") != 0)) {
        print_command_error("push-done", "usage: push-done <push_id> [failed [reason]]");
        return;
    }
    imbed_status status = imbed_server_push_done(server, push_id, delivered, *reason != '\0' ? reason : NULL);
    if (status != IMBED_OK) {
        print_command_failure("push-done", status);
        return;
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"ok\",\"command\":\"push-done\",\"push_id\":");
    text_append_unsigned(&line, push_id);
    text_append(&line, delivered ? ",\"delivered\":true}" : ",\"delivered\":false}");
    print_stdout_line(line.data);
    text_free(&line);
}

/* Runs "stats": prints the engine's counters. */
static void run_stats_command(imbed_server *server, char *arguments)
{
    if (*take_word(&arguments) != '\0') {
        print_command_error("stats", "usage: stats");
        return;
    }
    imbed_stats stats = {0};
    imbed_status status = imbed_server_stats(server, &stats);
    if (status != IMBED_OK) {
        print_command_failure("stats", status);
        return;
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"stats\",\"connections\":");
    text_append_unsigned(&line, stats.connections);
    text_append(&line, ",\"users_online\":");
    text_append_unsigned(&line, stats.users_online);
    text_append(&line, ",\"messages_stored\":");
    text_append_unsigned(&line, stats.messages_stored);
    text_append(&line, ",\"messages_delivered\":");
    text_append_unsigned(&line, stats.messages_delivered);
    text_append(&line, "}");
    print_stdout_line(line.data);
    text_free(&line);
}

/*
 * Whether `server` delivers its events by polling. The engine, which has
 * validated the configuration, answers: only a polling server has an event
 * descriptor. So --poll and a file's "events":{"delivery":"poll"} count
 * alike, and this program reads nothing back from the merged JSON for it.
 */
static bool delivers_by_polling(imbed_server *server)
{
    int fd = -1;
    return imbed_server_event_fd(server, &fd) == IMBED_OK;
}

/*
 * Creates the server on the configuration, with this program's listener
 * unless it delivers by polling: then nothing would call on_event or
 * on_log, and this program has no authenticate (build_config requires
 * an auth mode that needs none). On failure it exits: with
 * report_first_start_failure's status for the first server, with 1 for the
 * one a restart makes.
 */
static imbed_server *create_server(const host_config *config, bool first)
{
    imbed_server *server = NULL;
    imbed_status status = imbed_server_new(config->json, &server);
    if (status != IMBED_OK) {
        if (first) {
            exit(report_first_start_failure(config, status));
        }
        print_failure(status);
        exit(1);
    }
    if (delivers_by_polling(server)) {
        return server;
    }
    imbed_listener listener = console_engine_listener();
    status = imbed_server_set_listener(server, &listener);
    if (status != IMBED_OK) {
        print_failure(status);
        imbed_server_free(server);
        exit(1);
    }
    return server;
}

/*
 * Starts the server and prints the banner. stdout stays locked from before
 * start until the banner is out, so an event from an early client cannot
 * become the first line. Returns 0, or the exit status (having reported why).
 */
static int start_and_announce(imbed_server *server, const host_config *config)
{
    flockfile(stdout);
    imbed_status status = imbed_server_start(server);
    uint16_t port = 0;
    if (status == IMBED_OK) {
        status = imbed_server_port(server, &port);
    }
    if (status == IMBED_OK) {
        printf("listening on %s://%s:%u/ws\n", config->tls ? "wss" : "ws", config->listen_host, (unsigned)port);
        fflush(stdout);
    }
    funlockfile(stdout);
    /* The engine checks the TLS files, the web root and the auth mode here, not at creation. */
    return status == IMBED_OK ? 0 : report_first_start_failure(config, status);
}

/*
 * Takes the events waiting on a polling server, prints each as the
 * listener would and frees it, until none is left or
 * EVENT_BATCHES_PER_TURN batches were taken.
 */
static void take_events(imbed_server *server)
{
    imbed_event *batch[EVENT_BATCH_SIZE];
    for (int taken = 0; taken < EVENT_BATCHES_PER_TURN; taken++) {
        size_t count = 0;
        imbed_status status = imbed_server_next_events(server, batch, EVENT_BATCH_SIZE, &count);
        if (status != IMBED_OK) {
            print_failure(status);
            return;
        }
        for (size_t i = 0; i < count; i++) {
            console_print_event(batch[i]);
            imbed_event_free(batch[i]);
        }
        if (count == 0) {
            return;
        }
    }
}

/*
 * Stops the server. A polling server's remaining events, those of the stop
 * itself included (the sessions it closes), are taken after it, until the
 * server says none is left, and printed as a listener would get them.
 */
static imbed_status stop_server(const host_context *host)
{
    imbed_status status = imbed_server_stop(host->server);
    if (!host->polling) {
        return status;
    }
    imbed_event *batch[EVENT_BATCH_SIZE];
    size_t count = 0;
    while (imbed_server_next_events(host->server, batch, EVENT_BATCH_SIZE, &count) == IMBED_OK) {
        for (size_t i = 0; i < count; i++) {
            console_print_event(batch[i]);
            imbed_event_free(batch[i]);
        }
    }
    return status;
}

/* console_event_source: the descriptor of the server `context` (a host_context) holds now. */
static int host_event_fd(void *context)
{
    const host_context *host = context;
    int fd = -1;
    return imbed_server_event_fd(host->server, &fd) == IMBED_OK ? fd : -1;
}

/* console_event_source: takes the events of the server `context` (a host_context) holds now. */
static void host_take_events(void *context)
{
    const host_context *host = context;
    take_events(host->server);
}

/*
 * Runs "restart": stops and frees the server, then creates and starts a new
 * one on the same configuration (same address, same database), in this process.
 * Its reply is {"event":"restarted","port":N}. A server that cannot start
 * again leaves nothing to serve with, so the program then exits with 1.
 */
static void run_restart_command(host_context *host, char *arguments)
{
    if (*take_word(&arguments) != '\0') {
        print_command_error("restart", "usage: restart");
        return;
    }
    imbed_status status = stop_server(host);
    if (status != IMBED_OK) {
        print_failure(status); /* free stops it anyway */
    }
    imbed_server_free(host->server);
    host->server = create_server(host->config, false);
    status = imbed_server_start(host->server);
    uint16_t port = 0;
    if (status == IMBED_OK) {
        status = imbed_server_port(host->server, &port);
    }
    if (status != IMBED_OK) {
        print_command_failure("restart", status);
        imbed_server_free(host->server);
        exit(1);
    }
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"restarted\",\"port\":");
    text_append_unsigned(&line, port);
    text_append(&line, "}");
    print_stdout_line(line.data);
    text_free(&line);
}

/* Runs one stdin command (the console_command_runner of this program); `context` is a host_context. */
static void run_host_command(void *context, char *command, char *arguments)
{
    host_context *host = context;
    imbed_server *server = host->server;
    if (strcmp(command, "send") == 0) {
        run_send_command(server, host->config->host_id, arguments);
    } else if (strcmp(command, "group") == 0) {
        run_group_command(server, host->config->host_id, arguments);
    } else if (strcmp(command, "history") == 0) {
        run_history_command(server, arguments);
    } else if (strcmp(command, "delete") == 0) {
        run_delete_command(server, host->config->host_id, arguments);
    } else if (strcmp(command, "search") == 0) {
        run_search_command(server, arguments);
    } else if (strcmp(command, "file") == 0) {
        run_file_command(server, arguments);
    } else if (strcmp(command, "create-group") == 0) {
        run_create_group_command(server, arguments);
    } else if (strcmp(command, "add") == 0 || strcmp(command, "remove") == 0) {
        run_membership_command(server, command, arguments);
    } else if (strcmp(command, "kick") == 0) {
        run_kick_command(server, arguments);
    } else if (strcmp(command, "members") == 0) {
        run_members_command(server, arguments);
    } else if (strcmp(command, "online") == 0) {
        run_online_command(server, arguments);
    } else if (strcmp(command, "devices") == 0) {
        run_devices_command(server, arguments);
    } else if (strcmp(command, "pushes") == 0) {
        run_pushes_command(server, arguments);
    } else if (strcmp(command, "push-done") == 0) {
        run_push_done_command(server, arguments);
    } else if (strcmp(command, "stats") == 0) {
        run_stats_command(server, arguments);
    } else if (strcmp(command, "restart") == 0) {
        run_restart_command(host, arguments);
    } else {
        print_command_error(command, "unknown command (commands: send, group, history, delete, search, file, "
                                     "create-group, add, remove, "
                                     "members, kick, online, devices, stats, pushes, push-done, restart, quit; "
                                     "--help describes them)");
    }
}

/* Runs the host: parse flags, build the config, create and start the server, serve, stop. */
int main(int argc, char **argv)
{
    host_options options;
    parse_options(argc, argv, &options);
    host_config config;
    build_config(&options, &config);

    /* Before the engine opens any file descriptor; see console_prepare_input. */
    console_input input = console_prepare_input();

    imbed_server *server = create_server(&config, true);
    describe_config(&config);
    int start_status = start_and_announce(server, &config);
    if (start_status != 0) {
        imbed_server_free(server);
        free_config(&config);
        return start_status;
    }
    host_context context = {.server = server, .config = &config, .polling = delivers_by_polling(server)};
    if (context.polling) {
        const console_event_source events = {.event_fd = host_event_fd, .take_events = host_take_events};
        console_run_commands_and_events(input, run_host_command, &events, &context);
    } else {
        console_run_commands(input, run_host_command, &context);
    }

    /* "restart" may have replaced the server: stop the one the context holds. */
    int exit_status = 0;
    imbed_status status = stop_server(&context);
    if (status != IMBED_OK) {
        print_failure(status);
        exit_status = 1;
    }
    imbed_server_free(context.server);
    free_config(&config);
    return exit_status;
}

