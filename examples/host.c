/*
 * imbed-host: runs an imbed server from the command line.
 *
 * stdout: the first line is "listening on ws://HOST:PORT/ws" (wss:// with
 * --tls-cert); then every host
 * event, and every reply to a stdin command, as one JSON object per line.
 * stderr: the engine's logs and fatal errors.
 * stdin: one command per line (see USAGE): messages ("send", "group"), reading
 * ("history"), administration ("create-group", "add", "remove", "members",
 * "kick", "online", "stats"), "restart" and "quit". Each command answers with one
 * JSON line.
 * SIGINT and SIGTERM stop the server cleanly; so does "quit". End of input
 * does not: the host may run with stdin closed and keeps serving.
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

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PROGRAM_NAME "imbed-host"
#define DEFAULT_LISTEN "127.0.0.1:8080"
#define EXIT_USAGE 2
#define DEFAULT_HISTORY_LIMIT 50
#define DEFAULT_WEB_ROOT "examples/web"

static const char USAGE[] =
    "usage: " PROGRAM_NAME " (--dev-auth | --jwt-secret-file PATH | --jwt-secret SECRET) [options]\n"
    "\n"
    "  --listen HOST:PORT   address to serve on (default " DEFAULT_LISTEN "; port 0 picks one)\n"
    "  --db PATH            SQLite file that stores the messages (default :memory:, which keeps nothing)\n"
    "  --dev-auth           the token is the user id (demos and tests only)\n"
    "  --jwt-secret-file PATH  accept HS256 JWTs signed with the secret in PATH (one trailing newline\n"
    "                       is not part of it); at least 32 bytes\n"
    "  --jwt-secret SECRET  the same with the secret on the command line, where other users of the\n"
    "                       machine can read it (ps); prefer the file or IMBED_JWT_SECRET\n"
    "  --workers N          engine worker threads (default: the engine's)\n"
    "  --max-connections N  refuse connections beyond N with HTTP 503 (default: the engine's, 10000)\n"
    "  --handshake-timeout-ms N  upgrade plus authentication must finish within N ms (default 10000)\n"
    "  --allow-origin ORIGIN  accept browsers from ORIGIN only (repeatable; default: any origin)\n"
    "  --allowed-host NAME  answer only requests whose Host header names NAME (its port aside), others\n"
    "                       get HTTP 421, against DNS rebinding (repeatable; default: any Host)\n"
    "  --max-connections-per-user N  sessions one user may have open at once (default: the engine's, 16)\n"
    "  --max-watches N      distinct users one session may watch for presence (default: the engine's, 1000)\n"
    "  --tls-cert PATH      serve wss:// with this PEM certificate chain (needs --tls-key)\n"
    "  --tls-key PATH       the PEM private key of --tls-cert\n"
    "  --web DIR            serve DIR's files on the same port (default " DEFAULT_WEB_ROOT " when it exists)\n"
    "  --no-web             serve no files, only /ws, /healthz and /metrics\n"
    "  --quiet              do not receive or print message events (for load tests)\n"
    "  --log-level LEVEL    off, error, warn, info, debug or trace (default info)\n"
    "  --host-id ID         sender id of messages sent with \"send\" and \"group\" (default host);\n"
    "                       no user can sign in as it\n"
    "  --help               show this help\n"
    "\n"
    "environment:\n"
    "  IMBED_JWT_SECRET     with no --dev-auth or --jwt-secret* flag: accept HS256 JWTs signed with it\n"
    "\n"
    "commands on stdin, one per line:\n"
    "  send USER JSON-BODY    send JSON-BODY to USER from the host id\n"
    "  group GROUP JSON-BODY  send JSON-BODY to the members of GROUP from the host id\n"
    "  history CONV [N]       print the N newest messages of CONV (default 50), such as dm:alice:bob or g:team\n"
    "  create-group GROUP [open|closed]\n"
    "                         create GROUP (default open), or make an existing one open or closed;\n"
    "                         users cannot join a closed group, only the host adds its members, so\n"
    "                         making a group closed removes the members it had\n"
    "  add GROUP USER         add USER to GROUP\n"
    "  remove GROUP USER      remove USER from GROUP\n"
    "  members GROUP          print whether GROUP is closed and its members\n"
    "  kick USER              close every session of USER\n"
    "  online                 print the users with at least one session\n"
    "  stats                  print the server's counters\n"
    "  restart                stop the server and start a new one on the same configuration and database,\n"
    "                         in this process; the reply names the port (a new one if --listen had port 0);\n"
    "                         exits with status 1 if the server cannot start again\n"
    "  quit                   stop the server and exit\n";

typedef enum auth_mode { AUTH_UNSET, AUTH_DEV, AUTH_JWT } auth_mode;

/* More --allow-origin flags than any deployment needs; more is a usage error. */
#define MAX_ALLOWED_ORIGINS 32
/* The same for --allowed-host. */
#define MAX_ALLOWED_HOSTS 32
/* The longest JWT secret file read; HS256 needs 32 bytes, a longer key adds nothing past 64. */
#define MAX_SECRET_FILE_BYTES 4096
#define JWT_SECRET_ENV "IMBED_JWT_SECRET"

typedef struct host_options {
    const char *listen;        /* HOST:PORT exactly as given */
    size_t listen_host_length; /* length of the HOST part, echoed in the banner */
    const char *db_path;
    auth_mode auth;
    const char *jwt_secret;
    unsigned long workers;         /* 0: leave it to the engine */
    unsigned long max_connections; /* 0: leave it to the engine */
    unsigned long handshake_timeout_ms; /* 0: leave it to the engine */
    const char *allowed_origins[MAX_ALLOWED_ORIGINS];
    size_t allowed_origin_count;
    const char *allowed_hosts[MAX_ALLOWED_HOSTS];
    size_t allowed_host_count;
    unsigned long max_connections_per_user; /* 0: leave it to the engine */
    unsigned long max_watches;              /* 0: leave it to the engine */
    const char *tls_cert;
    const char *tls_key;
    const char *web_root;      /* NULL: serve no files */
    bool web_root_given;       /* --web or --no-web, so the default does not apply */
    bool quiet;                /* no message events */
    const char *log_level;
    const char *host_id;
    bool host_id_given;        /* --host-id: passed as the engine's host_ids, which default to ["host"] */
} host_options;

/* The name console.c puts before its stderr lines, as this file does. */
const char console_program_name[] = PROGRAM_NAME;

/* What a stdin command runs against. */
typedef struct host_context {
    imbed_server *server;
    const host_options *options;
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

/* Splits HOST:PORT at its last colon (so "[::1]:0" works); exits on a malformed address. */
static void parse_listen_address(const char *listen, host_options *options)
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
    options->listen = listen;
    options->listen_host_length = (size_t)(colon - listen);
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
    *options = (host_options){
        .db_path = ":memory:",
        .log_level = "info",
        .host_id = "host",
    };
    parse_listen_address(DEFAULT_LISTEN, options);

    for (int index = 1; index < argc; index++) {
        const char *flag = argv[index];
        if (strcmp(flag, "--help") == 0) {
            fputs(USAGE, stdout);
            exit(0);
        } else if (strcmp(flag, "--listen") == 0) {
            parse_listen_address(take_flag_value(argc, argv, &index), options);
        } else if (strcmp(flag, "--db") == 0) {
            options->db_path = take_flag_value(argc, argv, &index);
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
        } else if (strcmp(flag, "--log-level") == 0) {
            options->log_level = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--host-id") == 0) {
            options->host_id = take_flag_value(argc, argv, &index);
            options->host_id_given = true;
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
    if (options->auth == AUTH_UNSET) {
        fail_usage("one of --dev-auth, --jwt-secret-file, --jwt-secret or " JWT_SECRET_ENV " is required", "");
    }
    if ((options->tls_cert == NULL) != (options->tls_key == NULL)) {
        fail_usage("--tls-cert and --tls-key go together", "");
    }
    /* The default web client is found from the repository root, where make run starts. */
    struct stat web_root;
    if (!options->web_root_given && stat(DEFAULT_WEB_ROOT, &web_root) == 0 && S_ISDIR(web_root.st_mode)) {
        options->web_root = DEFAULT_WEB_ROOT;
    }
}

/* Builds the engine's config JSON from the options; the caller frees the result. */
static char *build_config_json(const host_options *options)
{
    text_buffer config = {0};
    text_append(&config, "{\"listen\":");
    text_append_json_string(&config, options->listen);
    text_append(&config, ",\"store\":{\"path\":");
    text_append_json_string(&config, options->db_path);
    if (options->auth == AUTH_DEV) {
        text_append(&config, "},\"auth\":{\"mode\":\"dev\"}");
    } else {
        text_append(&config, "},\"auth\":{\"mode\":\"jwt\",\"secret\":");
        text_append_json_string(&config, options->jwt_secret);
        text_append(&config, "}");
    }
    if (options->workers != 0) {
        text_append(&config, ",\"workers\":");
        text_append_unsigned(&config, options->workers);
    }
    /* The limits given on the command line; the engine's defaults stand for the others (0). */
    const struct {
        const char *key;
        unsigned long value;
    } limits[] = {
        {"max_connections", options->max_connections},
        {"handshake_timeout_ms", options->handshake_timeout_ms},
        {"max_connections_per_user", options->max_connections_per_user},
        {"max_watches", options->max_watches},
    };
    const char *separator = ",\"limits\":{";
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        if (limits[i].value != 0) {
            text_append(&config, separator);
            text_append_json_string(&config, limits[i].key);
            text_append(&config, ":");
            text_append_unsigned(&config, limits[i].value);
            separator = ",";
        }
    }
    if (strcmp(separator, ",") == 0) {
        text_append(&config, "}");
    }
    /* Only when given: the engine's default, ["host"], is the default --host-id. */
    if (options->host_id_given) {
        text_append(&config, ",\"host_ids\":[");
        text_append_json_string(&config, options->host_id);
        text_append(&config, "]");
    }
    if (options->allowed_host_count > 0) {
        text_append(&config, ",\"http\":{\"allowed_hosts\":[");
        for (size_t i = 0; i < options->allowed_host_count; i++) {
            text_append(&config, i == 0 ? "" : ",");
            text_append_json_string(&config, options->allowed_hosts[i]);
        }
        text_append(&config, "]}");
    }
    if (options->allowed_origin_count > 0) {
        text_append(&config, ",\"origins\":{\"allowed\":[");
        for (size_t i = 0; i < options->allowed_origin_count; i++) {
            text_append(&config, i == 0 ? "" : ",");
            text_append_json_string(&config, options->allowed_origins[i]);
        }
        text_append(&config, "]}");
    }
    if (options->tls_cert != NULL) {
        text_append(&config, ",\"tls\":{\"cert_path\":");
        text_append_json_string(&config, options->tls_cert);
        text_append(&config, ",\"key_path\":");
        text_append_json_string(&config, options->tls_key);
        text_append(&config, "}");
    }
    if (options->quiet) {
        text_append(&config, ",\"events\":{\"messages\":false}");
    }
    if (options->web_root != NULL) {
        text_append(&config, ",\"web_root\":");
        text_append_json_string(&config, options->web_root);
    }
    text_append(&config, ",\"log_level\":");
    text_append_json_string(&config, options->log_level);
    text_append(&config, "}");
    return config.data;
}

/* Runs "send <user> <json-body>": the body is the rest of the line, spaces included. */
static void run_send_command(imbed_server *server, const host_options *options, char *arguments)
{
    char *user = take_word(&arguments);
    char *body = arguments + strspn(arguments, " \t");
    if (*user == '\0' || *body == '\0') {
        print_command_error("send", "usage: send <user> <json-body>");
        return;
    }
    uint64_t seq = 0;
    imbed_status status = imbed_server_send(server, options->host_id, user, body, NULL, &seq);
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
static void run_group_command(imbed_server *server, const host_options *options, char *arguments)
{
    char *group = take_word(&arguments);
    char *body = arguments + strspn(arguments, " \t");
    if (*group == '\0' || *body == '\0') {
        print_command_error("group", "usage: group <group> <json-body>");
        return;
    }
    uint64_t seq = 0;
    imbed_status status = imbed_server_send_group(server, options->host_id, group, body, NULL, &seq);
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

/* Creates the server with the options' config and this program's listener; exits on failure. */
static imbed_server *create_server(const host_options *options)
{
    char *config = build_config_json(options);
    imbed_server *server = NULL;
    imbed_status status = imbed_server_new(config, &server);
    free(config);
    if (status != IMBED_OK) {
        print_failure(status);
        exit(1);
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
 * become the first line. Returns false (having reported why) on failure.
 */
static bool start_and_announce(imbed_server *server, const host_options *options)
{
    flockfile(stdout);
    imbed_status status = imbed_server_start(server);
    uint16_t port = 0;
    if (status == IMBED_OK) {
        status = imbed_server_port(server, &port);
    }
    if (status == IMBED_OK) {
        printf("listening on %s://%.*s:%u/ws\n", options->tls_cert != NULL ? "wss" : "ws",
               (int)options->listen_host_length, options->listen,
               (unsigned)port);
        fflush(stdout);
    }
    funlockfile(stdout);
    if (status != IMBED_OK) {
        print_failure(status);
        return false;
    }
    return true;
}

/*
 * Runs "restart": stops and frees the server, then creates and starts a new
 * one from the same options (same address, same database), in this process.
 * Its reply is {"event":"restarted","port":N}. A server that cannot start
 * again leaves nothing to serve with, so the program then exits with 1.
 */
static void run_restart_command(host_context *host, char *arguments)
{
    if (*take_word(&arguments) != '\0') {
        print_command_error("restart", "usage: restart");
        return;
    }
    imbed_status status = imbed_server_stop(host->server);
    if (status != IMBED_OK) {
        print_failure(status); /* free stops it anyway */
    }
    imbed_server_free(host->server);
    host->server = create_server(host->options);
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
    const host_options *options = host->options;
    if (strcmp(command, "send") == 0) {
        run_send_command(server, options, arguments);
    } else if (strcmp(command, "group") == 0) {
        run_group_command(server, options, arguments);
    } else if (strcmp(command, "history") == 0) {
        run_history_command(server, arguments);
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
    } else if (strcmp(command, "stats") == 0) {
        run_stats_command(server, arguments);
    } else if (strcmp(command, "restart") == 0) {
        run_restart_command(host, arguments);
    } else {
        print_command_error(command, "unknown command (commands: send, group, history, create-group, add, remove, "
                                     "members, kick, online, stats, restart, quit; --help describes them)");
    }
}

/* Runs the host: parse flags, create and start the server, serve, stop. */
int main(int argc, char **argv)
{
    host_options options;
    parse_options(argc, argv, &options);

    /* Before the engine opens any file descriptor; see console_prepare_input. */
    console_input input = console_prepare_input();

    imbed_server *server = create_server(&options);
    if (!start_and_announce(server, &options)) {
        imbed_server_free(server);
        return 1;
    }
    host_context context = {.server = server, .options = &options};
    console_run_commands(input, run_host_command, &context);

    /* "restart" may have replaced the server: stop the one the context holds. */
    int exit_status = 0;
    imbed_status status = imbed_server_stop(context.server);
    if (status != IMBED_OK) {
        print_failure(status);
        exit_status = 1;
    }
    imbed_server_free(context.server);
    return exit_status;
}

