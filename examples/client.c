/*
 * imbed-client: runs imbed's client role from the command line.
 *
 * It connects to an imbed server as one user and stays connected: it
 * reconnects by itself, keeps every message it was asked to send in an
 * outbox until the server acknowledges it, and catches up with a sync after
 * every connect. It is what an app embeds, without the app.
 *
 * stdout: every client event as one JSON object per line (connection state,
 * messages, acks, refused sends, other frames), and one JSON line answering
 * each stdin command.
 * stderr: the engine's logs and fatal errors.
 * stdin: one command per line (see USAGE): "send", "group", "request", "quit".
 * SIGINT and SIGTERM stop the client cleanly; so does "quit". End of input
 * does not: the client may run with stdin closed and keeps printing events.
 *
 * Build (the flags of `make client`):
 *   cc -std=c11 -Wall -Wextra -Werror -D_DEFAULT_SOURCE -Iinclude \
 *      examples/client.c target/release/libimbed.a -lpthread -ldl -lm -o build/imbed-client
 */
#include "imbed.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROGRAM_NAME "imbed-client"
#define EXIT_USAGE 2
#define READ_CHUNK_BYTES 65536

static const char USAGE[] =
    "usage: " PROGRAM_NAME " --url URL --token TOKEN [options]\n"
    "\n"
    "  --url URL            the server, such as ws://127.0.0.1:8080/ws\n"
    "  --token TOKEN        the token the server authenticates (with a dev-auth server: the user id)\n"
    "  --state PATH         SQLite file keeping the outbox and the sync cursors across runs\n"
    "                       (default :memory:, which forgets them at exit)\n"
    "  --log-level LEVEL    off, error, warn, info, debug or trace (default info)\n"
    "  --help               show this help\n"
    "\n"
    "commands on stdin, one per line:\n"
    "  send USER JSON-BODY    queue JSON-BODY for USER; prints {\"event\":\"queued\",\"id\":...},\n"
    "                         then an \"ack\" event with that id once the server stored it\n"
    "  group GROUP JSON-BODY  the same, to the members of GROUP\n"
    "  request JSON-FRAME     send a request frame (join, leave, watch, typing, read, history,\n"
    "                         members, conversations...); prints {\"event\":\"requested\",\"id\":...},\n"
    "                         and the reply arrives as a \"frame\" event with that id\n"
    "  quit                   stop the client and exit\n";

typedef struct client_options {
    const char *url;
    const char *token;
    const char *state_path;
    const char *log_level;
} client_options;

typedef struct text_buffer {
    char *data;
    size_t length;
    size_t capacity;
} text_buffer;

typedef enum command_result { COMMAND_CONTINUE, COMMAND_QUIT } command_result;

typedef enum input_state { INPUT_OPEN, INPUT_ENDED, INPUT_QUIT } input_state;

/* Write end of the self-pipe; the signal handler's only channel to the main loop. */
static volatile sig_atomic_t signal_pipe_write_fd = -1;

/* Prints the reason and the usage to stderr and exits with the usage status. */
static void fail_usage(const char *reason, const char *flag)
{
    fprintf(stderr, PROGRAM_NAME ": %s%s\n\n%s", reason, flag, USAGE);
    exit(EXIT_USAGE);
}

/* Allocation failure leaves nothing sensible to do in a command-line client. */
static void *checked_realloc(void *memory, size_t size)
{
    void *resized = realloc(memory, size);
    if (resized == NULL) {
        fprintf(stderr, PROGRAM_NAME ": out of memory\n");
        exit(1);
    }
    return resized;
}

/* Makes room for `extra` more bytes plus a NUL terminator. */
static void text_reserve(text_buffer *text, size_t extra)
{
    size_t needed = text->length + extra + 1;
    if (needed <= text->capacity) {
        return;
    }
    size_t capacity = text->capacity ? text->capacity : 256;
    while (capacity < needed) {
        capacity *= 2;
    }
    text->data = checked_realloc(text->data, capacity);
    text->capacity = capacity;
}

/* Appends `count` bytes, keeping the buffer NUL-terminated. */
static void text_append_bytes(text_buffer *text, const char *bytes, size_t count)
{
    text_reserve(text, count);
    memcpy(text->data + text->length, bytes, count);
    text->length += count;
    text->data[text->length] = '\0';
}

/* Appends a NUL-terminated string. */
static void text_append(text_buffer *text, const char *string)
{
    text_append_bytes(text, string, strlen(string));
}

/*
 * Appends `string` as a quoted JSON string. Bytes from 0x80 up pass through
 * untouched: valid UTF-8 needs no escaping, and invalid UTF-8 in the config
 * should reach the engine, which rejects it with a precise error.
 */
static void text_append_json_string(text_buffer *text, const char *string)
{
    text_append(text, "\"");
    for (const unsigned char *cursor = (const unsigned char *)string; *cursor != '\0'; cursor++) {
        char escaped[8];
        switch (*cursor) {
        case '"': text_append(text, "\\\""); break;
        case '\\': text_append(text, "\\\\"); break;
        case '\n': text_append(text, "\\n"); break;
        case '\r': text_append(text, "\\r"); break;
        case '\t': text_append(text, "\\t"); break;
        default:
            if (*cursor < 0x20) {
                snprintf(escaped, sizeof escaped, "\\u%04x", *cursor);
                text_append(text, escaped);
            } else {
                text_append_bytes(text, (const char *)cursor, 1);
            }
        }
    }
    text_append(text, "\"");
}

/* Releases the buffer's memory and leaves it empty and reusable. */
static void text_free(text_buffer *text)
{
    free(text->data);
    *text = (text_buffer){0};
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

/* Parses the command line into `options`; exits 0 for --help and 2 for any misuse. */
static void parse_options(int argc, char **argv, client_options *options)
{
    *options = (client_options){
        .state_path = ":memory:",
        .log_level = "info",
    };
    for (int index = 1; index < argc; index++) {
        const char *flag = argv[index];
        if (strcmp(flag, "--help") == 0) {
            fputs(USAGE, stdout);
            exit(0);
        } else if (strcmp(flag, "--url") == 0) {
            options->url = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--token") == 0) {
            options->token = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--state") == 0) {
            options->state_path = take_flag_value(argc, argv, &index);
        } else if (strcmp(flag, "--log-level") == 0) {
            options->log_level = take_flag_value(argc, argv, &index);
        } else {
            fail_usage("unknown argument ", flag);
        }
    }
    if (options->url == NULL) {
        fail_usage("--url is required", "");
    }
    if (options->token == NULL) {
        fail_usage("--token is required", "");
    }
}

/* The engine configuration for `options`, as a JSON string the caller frees; the engine validates it. */
static char *build_config_json(const client_options *options)
{
    text_buffer config = {0};
    text_append(&config, "{\"url\":");
    text_append_json_string(&config, options->url);
    text_append(&config, ",\"token\":");
    text_append_json_string(&config, options->token);
    text_append(&config, ",\"state_path\":");
    text_append_json_string(&config, options->state_path);
    text_append(&config, ",\"log_level\":");
    text_append_json_string(&config, options->log_level);
    text_append(&config, "}");
    return config.data;
}

/*
 * Returns "<status description>: <last error>" for a failed call; the caller
 * frees it. The last error is copied first because it is only guaranteed to
 * live until the next imbed_ call, and imbed_status_str is one.
 */
static char *describe_failure(imbed_status status)
{
    text_buffer detail = {0};
    text_append(&detail, imbed_last_error());
    text_buffer description = {0};
    text_append(&description, imbed_status_str((int)status));
    text_append(&description, ": ");
    text_append(&description, detail.data);
    text_free(&detail);
    return description.data;
}

/* Reports a failed engine call on stderr. */
static void print_failure(imbed_status status)
{
    char *description = describe_failure(status);
    fprintf(stderr, PROGRAM_NAME ": %s\n", description);
    free(description);
}

/*
 * Writes one line to stdout and flushes it, since readers follow stdout
 * through a pipe. flockfile is the stdout mutex: events are printed on the
 * engine's dispatcher thread while the main thread prints replies. It is
 * recursive, so a caller already holding it may print too.
 */
static void print_stdout_line(const char *line)
{
    flockfile(stdout);
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    funlockfile(stdout);
}

/* Prints {"event":"error","command":...,"message":...} for a failed stdin command. */
static void print_command_error(const char *command, const char *message)
{
    text_buffer line = {0};
    text_append(&line, "{\"event\":\"error\",\"command\":");
    text_append_json_string(&line, command);
    text_append(&line, ",\"message\":");
    text_append_json_string(&line, message);
    text_append(&line, "}");
    print_stdout_line(line.data);
    text_free(&line);
}

/* Prints the error line of a stdin command whose engine call failed. */
static void print_command_failure(const char *command, imbed_status status)
{
    char *description = describe_failure(status);
    print_command_error(command, description);
    free(description);
}

/* Prints {"event":EVENT,"id":ID}, the answer to a command that the engine accepted. */
static void print_id_line(const char *event, const char *id)
{
    text_buffer line = {0};
    text_append(&line, "{\"event\":");
    text_append_json_string(&line, event);
    text_append(&line, ",\"id\":");
    text_append_json_string(&line, id);
    text_append(&line, "}");
    print_stdout_line(line.data);
    text_free(&line);
}

/* Listener callback: every client event becomes one stdout line, verbatim. */
static void on_engine_event(void *user_data, const imbed_event *event)
{
    (void)user_data;
    if (event->json != NULL) {
        print_stdout_line(event->json);
    }
}

/* Upper-case name of a log level, as shown in the stderr log lines. */
static const char *log_level_name(imbed_log_level level)
{
    switch (level) {
    case IMBED_LOG_ERROR: return "ERROR";
    case IMBED_LOG_WARN: return "WARN";
    case IMBED_LOG_INFO: return "INFO";
    case IMBED_LOG_DEBUG: return "DEBUG";
    case IMBED_LOG_TRACE: return "TRACE";
    }
    return "?";
}

/* Listener callback: engine logs go to stderr (one fprintf, which stdio keeps whole). */
static void on_engine_log(void *user_data, imbed_log_level level, const char *target, const char *message)
{
    (void)user_data;
    fprintf(stderr, PROGRAM_NAME ": [%s] %s: %s\n", log_level_name(level), target ? target : "",
            message ? message : "");
}

/* Splits off the first space- or tab-separated word of *cursor, NUL-terminating it. */
static char *take_word(char **cursor)
{
    char *word = *cursor + strspn(*cursor, " \t");
    char *word_end = word + strcspn(word, " \t");
    *cursor = word_end;
    if (*word_end != '\0') {
        *word_end = '\0';
        *cursor = word_end + 1;
    }
    return word;
}

/*
 * Runs "send <user> <json-body>" or "group <group> <json-body>", whichever
 * `command` names; the body is the rest of the line, spaces included.
 * stdout stays locked from the call until the "queued" line is out, so the
 * message's ack, printed by the dispatcher thread, cannot come before it.
 */
static void run_queue_command(imbed_client *client, const char *command, char *arguments)
{
    char *recipient = take_word(&arguments);
    char *body = arguments + strspn(arguments, " \t");
    bool to_group = strcmp(command, "group") == 0;
    if (*recipient == '\0' || *body == '\0') {
        print_command_error(command, to_group ? "usage: group <group> <json-body>" : "usage: send <user> <json-body>");
        return;
    }
    char *client_id = NULL;
    flockfile(stdout);
    imbed_status status = to_group ? imbed_client_send_group(client, recipient, body, &client_id)
                                   : imbed_client_send(client, recipient, body, &client_id);
    if (status == IMBED_OK) {
        print_id_line("queued", client_id);
    } else {
        print_command_failure(command, status);
    }
    funlockfile(stdout);
    imbed_string_free(client_id);
}

/* Runs "request <json-frame>": the frame is the rest of the line; its reply comes as a "frame" event. */
static void run_request_command(imbed_client *client, char *arguments)
{
    char *frame = arguments + strspn(arguments, " \t");
    if (*frame == '\0') {
        print_command_error("request", "usage: request <json-frame>");
        return;
    }
    char *request_id = NULL;
    flockfile(stdout); /* as for sends: the "requested" line comes before the reply */
    imbed_status status = imbed_client_request(client, frame, &request_id);
    if (status == IMBED_OK) {
        print_id_line("requested", request_id);
    } else {
        print_command_failure("request", status);
    }
    funlockfile(stdout);
    imbed_string_free(request_id);
}

/* Runs one stdin line; trailing whitespace (a CR from a Windows terminal) is dropped. */
static command_result handle_command(imbed_client *client, char *line)
{
    size_t length = strlen(line);
    while (length > 0 && strchr(" \t\r", line[length - 1]) != NULL) {
        line[--length] = '\0';
    }
    char *arguments = line;
    char *command = take_word(&arguments);
    if (*command == '\0') {
        return COMMAND_CONTINUE;
    }
    if (strcmp(command, "quit") == 0) {
        return COMMAND_QUIT;
    }
    if (strcmp(command, "send") == 0 || strcmp(command, "group") == 0) {
        run_queue_command(client, command, arguments);
    } else if (strcmp(command, "request") == 0) {
        run_request_command(client, arguments);
    } else {
        print_command_error(command, "unknown command (commands: send, group, request, quit; --help describes them)");
    }
    return COMMAND_CONTINUE;
}

/*
 * Reads what stdin has and runs every complete line in it. Input is read
 * with read() into `pending` rather than with stdio, because stdio may
 * buffer lines that poll() then never reports as readable; `pending` grows
 * as needed, so bodies of any length work. At end of input an unterminated
 * last line still runs.
 */
static input_state read_commands(imbed_client *client, text_buffer *pending)
{
    text_reserve(pending, READ_CHUNK_BYTES);
    ssize_t count = read(STDIN_FILENO, pending->data + pending->length, READ_CHUNK_BYTES);
    if (count < 0 && (errno == EINTR || errno == EAGAIN)) {
        return INPUT_OPEN;
    }
    if (count < 0) {
        fprintf(stderr, PROGRAM_NAME ": reading stdin: %s; no more commands\n", strerror(errno));
    }
    bool ended = count <= 0;
    if (!ended) {
        pending->length += (size_t)count;
        pending->data[pending->length] = '\0';
    }

    size_t line_start = 0;
    char *newline;
    while ((newline = memchr(pending->data + line_start, '\n', pending->length - line_start)) != NULL) {
        *newline = '\0';
        if (handle_command(client, pending->data + line_start) == COMMAND_QUIT) {
            return INPUT_QUIT;
        }
        line_start = (size_t)(newline - pending->data) + 1;
    }
    pending->length -= line_start;
    memmove(pending->data, pending->data + line_start, pending->length + 1);

    if (!ended) {
        return INPUT_OPEN;
    }
    if (pending->length > 0 && handle_command(client, pending->data) == COMMAND_QUIT) {
        return INPUT_QUIT;
    }
    pending->length = 0;
    return INPUT_ENDED;
}

/* SIGINT/SIGTERM handler: only wakes the main loop; write() is async-signal-safe. */
static void on_stop_signal(int signal_number)
{
    int saved_errno = errno;
    unsigned char byte = (unsigned char)signal_number;
    ssize_t ignored = write((int)signal_pipe_write_fd, &byte, 1);
    (void)ignored; /* a full pipe already holds a wake-up */
    errno = saved_errno;
}

/*
 * Creates the self-pipe and routes SIGINT/SIGTERM to it; returns the read
 * end. SIGPIPE is ignored so a reader of stdout that hangs up produces an
 * error on that write instead of killing the client mid-stop.
 */
static int install_signal_handlers(void)
{
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) {
        fprintf(stderr, PROGRAM_NAME ": pipe: %s\n", strerror(errno));
        exit(1);
    }
    for (int end = 0; end < 2; end++) {
        fcntl(pipe_fds[end], F_SETFD, FD_CLOEXEC);
        fcntl(pipe_fds[end], F_SETFL, fcntl(pipe_fds[end], F_GETFL) | O_NONBLOCK);
    }
    signal_pipe_write_fd = pipe_fds[1];

    struct sigaction stop_action = {0};
    stop_action.sa_handler = on_stop_signal;
    sigemptyset(&stop_action.sa_mask);
    sigaction(SIGINT, &stop_action, NULL);
    sigaction(SIGTERM, &stop_action, NULL);

    struct sigaction ignore_action = {0};
    ignore_action.sa_handler = SIG_IGN;
    sigemptyset(&ignore_action.sa_mask);
    sigaction(SIGPIPE, &ignore_action, NULL);
    return pipe_fds[0];
}

/* Runs stdin commands until "quit" or a stop signal; end of stdin only stops the reading. */
static void serve_until_stopped(imbed_client *client, int signal_fd, bool stdin_open)
{
    text_buffer pending = {0};
    struct pollfd watched[2] = {
        {.fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN}, /* poll skips negative fds */
        {.fd = signal_fd, .events = POLLIN},
    };
    for (;;) {
        if (poll(watched, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, PROGRAM_NAME ": poll: %s\n", strerror(errno));
            break;
        }
        if (watched[1].revents != 0) {
            break;
        }
        if (watched[0].revents & POLLNVAL) {
            watched[0].fd = -1;
        } else if (watched[0].revents != 0) {
            input_state state = read_commands(client, &pending);
            if (state == INPUT_QUIT) {
                break;
            }
            if (state == INPUT_ENDED) {
                watched[0].fd = -1;
            }
        }
    }
    text_free(&pending);
}

/* Creates the client with the options' config and this program's listener; exits on failure. */
static imbed_client *create_client(const client_options *options)
{
    char *config = build_config_json(options);
    imbed_client *client = NULL;
    imbed_status status = imbed_client_new(config, &client);
    free(config);
    if (status != IMBED_OK) {
        print_failure(status);
        exit(1);
    }
    imbed_listener listener = {
        .on_event = on_engine_event,
        .on_log = on_engine_log,
    };
    status = imbed_client_set_listener(client, &listener);
    if (status != IMBED_OK) {
        print_failure(status);
        imbed_client_free(client);
        exit(1);
    }
    return client;
}

/* Runs the client: parse flags, create and start it, take commands, stop. */
int main(int argc, char **argv)
{
    client_options options;
    parse_options(argc, argv, &options);

    /* Checked before pipe() runs, which would otherwise reuse a closed fd 0. */
    bool stdin_open = fcntl(STDIN_FILENO, F_GETFD) != -1;
    int signal_fd = install_signal_handlers();

    imbed_client *client = create_client(&options);
    imbed_status status = imbed_client_start(client);
    if (status != IMBED_OK) {
        print_failure(status);
        imbed_client_free(client);
        return 1;
    }
    serve_until_stopped(client, signal_fd, stdin_open);

    int exit_status = 0;
    status = imbed_client_stop(client);
    if (status != IMBED_OK) {
        print_failure(status);
        exit_status = 1;
    }
    imbed_client_free(client);
    return exit_status;
}
