/*
 * console: the stdin/stdout/signal plumbing shared by imbed-host and
 * imbed-client; console.h describes what it is for.
 */
#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK_BYTES 65536
/* Where the console loop's poll() finds each descriptor. */
enum { WATCHED_STDIN, WATCHED_STOP_SIGNAL, WATCHED_EVENTS, WATCHED_COUNT };

/* What one read of stdin left the command loop with. */
typedef enum input_state { INPUT_OPEN, INPUT_ENDED, INPUT_QUIT } input_state;

/* Write end of the self-pipe; the signal handler's only channel to the main loop. */
static volatile sig_atomic_t signal_pipe_write_fd = -1;

/* Allocation failure leaves nothing sensible to do in a command-line program. */
static void *checked_realloc(void *memory, size_t size)
{
    void *resized = realloc(memory, size);
    if (resized == NULL) {
        fprintf(stderr, "%s: out of memory\n", console_program_name);
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

void text_append(text_buffer *text, const char *string)
{
    text_append_bytes(text, string, strlen(string));
}

void text_append_json_string(text_buffer *text, const char *string)
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

void text_free(text_buffer *text)
{
    free(text->data);
    *text = (text_buffer){0};
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

void print_failure(imbed_status status)
{
    char *description = describe_failure(status);
    fprintf(stderr, "%s: %s\n", console_program_name, description);
    free(description);
}

void print_stdout_line(const char *line)
{
    flockfile(stdout);
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    funlockfile(stdout);
}

void print_command_error(const char *command, const char *message)
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

void print_command_failure(const char *command, imbed_status status)
{
    char *description = describe_failure(status);
    print_command_error(command, description);
    free(description);
}

/* Listener callback: every engine event becomes one stdout line, verbatim. */
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
    fprintf(stderr, "%s: [%s] %s: %s\n", console_program_name, log_level_name(level), target ? target : "",
            message ? message : "");
}

imbed_listener console_engine_listener(void)
{
    return (imbed_listener){
        .on_event = on_engine_event,
        .on_log = on_engine_log,
    };
}

/* The value of hexadecimal digit `digit`, or -1. */
static int hex_digit_value(char digit)
{
    if (digit >= '0' && digit <= '9') {
        return digit - '0';
    }
    if (digit >= 'a' && digit <= 'f') {
        return digit - 'a' + 10;
    }
    if (digit >= 'A' && digit <= 'F') {
        return digit - 'A' + 10;
    }
    return -1;
}

/* Reads the 4 hex digits of a \u escape at `hex`; returns -1 if they are not that. */
static long read_unicode_escape(const char *hex)
{
    long unit = 0;
    for (int i = 0; i < 4; i++) {
        int value = hex_digit_value(hex[i]);
        if (value < 0) {
            return -1;
        }
        unit = unit * 16 + value;
    }
    return unit;
}

/* Appends code point `point` in UTF-8. */
static void text_append_utf8(text_buffer *text, uint32_t point)
{
    char bytes[4];
    size_t count;
    if (point < 0x80) {
        bytes[0] = (char)point;
        count = 1;
    } else if (point < 0x800) {
        bytes[0] = (char)(0xC0 | (point >> 6));
        bytes[1] = (char)(0x80 | (point & 0x3F));
        count = 2;
    } else if (point < 0x10000) {
        bytes[0] = (char)(0xE0 | (point >> 12));
        bytes[1] = (char)(0x80 | ((point >> 6) & 0x3F));
        bytes[2] = (char)(0x80 | (point & 0x3F));
        count = 3;
    } else {
        bytes[0] = (char)(0xF0 | (point >> 18));
        bytes[1] = (char)(0x80 | ((point >> 12) & 0x3F));
        bytes[2] = (char)(0x80 | ((point >> 6) & 0x3F));
        bytes[3] = (char)(0x80 | (point & 0x3F));
        count = 4;
    }
    text_append_bytes(text, bytes, count);
}

/*
 * Appends the string value of member `key` of `json`, unescaped, or nothing
 * when it has none. `json` is an object the engine wrote with
 * string members under known keys (a log event), so no JSON parser is
 * needed: the engine writes `"key":"` without spaces, and that text cannot
 * occur inside a string value, where the quote after `key` would have to
 * be escaped. A NUL (\u0000) becomes the two characters \0, as the engine
 * spells it in the strings it passes to on_log.
 */
static void text_append_json_member(text_buffer *text, const char *json, const char *key)
{
    text_buffer pattern = {0};
    text_append_json_string(&pattern, key);
    text_append(&pattern, ":\"");
    const char *cursor = strstr(json, pattern.data);
    if (cursor != NULL) {
        cursor += pattern.length;
    }
    text_free(&pattern);
    if (cursor == NULL) {
        return;
    }
    while (*cursor != '\0' && *cursor != '"') {
        if (*cursor != '\\') {
            size_t plain = strcspn(cursor, "\"\\");
            text_append_bytes(text, cursor, plain);
            cursor += plain;
            continue;
        }
        char escape = cursor[1];
        cursor += escape != '\0' ? 2 : 1;
        switch (escape) {
        case 'b': text_append(text, "\b"); break;
        case 'f': text_append(text, "\f"); break;
        case 'n': text_append(text, "\n"); break;
        case 'r': text_append(text, "\r"); break;
        case 't': text_append(text, "\t"); break;
        case 'u': {
            long unit = read_unicode_escape(cursor);
            if (unit < 0) {
                text_append(text, "\\u");
                break;
            }
            cursor += 4;
            uint32_t point = (uint32_t)unit;
            long low = cursor[0] == '\\' && cursor[1] == 'u' ? read_unicode_escape(cursor + 2) : -1;
            if (unit >= 0xD800 && unit < 0xDC00 && low >= 0xDC00 && low < 0xE000) {
                point = 0x10000 + (((uint32_t)unit - 0xD800) << 10) + ((uint32_t)low - 0xDC00);
                cursor += 6;
            } else if (unit >= 0xD800 && unit < 0xE000) {
                point = 0xFFFD; /* a lone surrogate has no UTF-8 form */
            }
            if (point == 0) {
                text_append(text, "\\0");
            } else {
                text_append_utf8(text, point);
            }
            break;
        }
        default: /* '"', '\\', '/' stand for themselves */
            if (escape != '\0') {
                text_append_bytes(text, &escape, 1);
            }
        }
    }
}

/* The imbed_log_level of a log event's "level" ("off" never comes; the engine maps it as it does for on_log). */
static imbed_log_level log_level_from_name(const char *name)
{
    static const struct {
        const char *name;
        imbed_log_level level;
    } levels[] = {
        {"warn", IMBED_LOG_WARN},
        {"info", IMBED_LOG_INFO},
        {"debug", IMBED_LOG_DEBUG},
        {"trace", IMBED_LOG_TRACE},
    };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (strcmp(name, levels[i].name) == 0) {
            return levels[i].level;
        }
    }
    return IMBED_LOG_ERROR;
}

void console_print_event(const imbed_event *event)
{
    if (event->kind != IMBED_EVENT_LOG) {
        on_engine_event(NULL, event);
        return;
    }
    /* The log record's fields are only in its JSON; print them as on_log would. */
    text_buffer level = {0};
    text_buffer target = {0};
    text_buffer message = {0};
    text_append(&level, "");
    text_append(&target, "");
    text_append(&message, "");
    text_append_json_member(&level, event->json, "level");
    text_append_json_member(&target, event->json, "target");
    text_append_json_member(&message, event->json, "message");
    on_engine_log(NULL, log_level_from_name(level.data), target.data, message.data);
    text_free(&level);
    text_free(&target);
    text_free(&message);
}

char *take_word(char **cursor)
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
 * Runs one stdin line; returns false for "quit". Trailing whitespace (a CR
 * from a Windows terminal) is dropped first, so "quit\r" still quits.
 */
static bool run_line(char *line, console_command_runner *run_command, void *context)
{
    size_t length = strlen(line);
    while (length > 0 && strchr(" \t\r", line[length - 1]) != NULL) {
        line[--length] = '\0';
    }
    char *arguments = line;
    char *command = take_word(&arguments);
    if (*command == '\0') {
        return true;
    }
    if (strcmp(command, "quit") == 0) {
        return false;
    }
    run_command(context, command, arguments);
    return true;
}

/*
 * Reads what stdin has and runs every complete line in it. Input is read
 * with read() into `pending` rather than with stdio, because stdio may
 * buffer lines that poll() then never reports as readable; `pending` grows
 * as needed, so bodies of any length work. At end of input an unterminated
 * last line still runs.
 */
static input_state read_commands(text_buffer *pending, console_command_runner *run_command, void *context)
{
    text_reserve(pending, READ_CHUNK_BYTES);
    ssize_t count = read(STDIN_FILENO, pending->data + pending->length, READ_CHUNK_BYTES);
    if (count < 0 && (errno == EINTR || errno == EAGAIN)) {
        return INPUT_OPEN;
    }
    if (count < 0) {
        fprintf(stderr, "%s: reading stdin: %s; no more commands\n", console_program_name, strerror(errno));
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
        if (!run_line(pending->data + line_start, run_command, context)) {
            return INPUT_QUIT;
        }
        line_start = (size_t)(newline - pending->data) + 1;
    }
    pending->length -= line_start;
    memmove(pending->data, pending->data + line_start, pending->length + 1);

    if (!ended) {
        return INPUT_OPEN;
    }
    if (pending->length > 0 && !run_line(pending->data, run_command, context)) {
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

/* Creates the self-pipe and routes SIGINT/SIGTERM to it, ignoring SIGPIPE; returns the read end. */
static int install_signal_handlers(void)
{
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) {
        fprintf(stderr, "%s: pipe: %s\n", console_program_name, strerror(errno));
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

console_input console_prepare_input(void)
{
    /* Checked before pipe() runs, which would otherwise reuse a closed fd 0. */
    bool stdin_open = fcntl(STDIN_FILENO, F_GETFD) != -1;
    int stop_signal_fd = install_signal_handlers();
    return (console_input){.stdin_open = stdin_open, .stop_signal_fd = stop_signal_fd};
}

void console_run_commands_and_events(console_input input, console_command_runner *run_command,
                                     const console_event_source *events, void *context)
{
    text_buffer pending = {0};
    struct pollfd watched[WATCHED_COUNT] = {
        [WATCHED_STDIN] = {.fd = input.stdin_open ? STDIN_FILENO : -1, .events = POLLIN}, /* poll skips negative fds */
        [WATCHED_STOP_SIGNAL] = {.fd = input.stop_signal_fd, .events = POLLIN},
        [WATCHED_EVENTS] = {.fd = -1, .events = POLLIN},
    };
    for (;;) {
        watched[WATCHED_EVENTS].fd = events != NULL ? events->event_fd(context) : -1;
        if (poll(watched, WATCHED_COUNT, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "%s: poll: %s\n", console_program_name, strerror(errno));
            break;
        }
        if (watched[WATCHED_STOP_SIGNAL].revents != 0) {
            break;
        }
        /* Events before commands: a "restart" among the commands replaces the handle this readiness is about. */
        if (watched[WATCHED_EVENTS].revents != 0) {
            events->take_events(context);
        }
        if (watched[WATCHED_STDIN].revents & POLLNVAL) {
            watched[WATCHED_STDIN].fd = -1;
        } else if (watched[WATCHED_STDIN].revents != 0) {
            input_state state = read_commands(&pending, run_command, context);
            if (state == INPUT_QUIT) {
                break;
            }
            if (state == INPUT_ENDED) {
                watched[WATCHED_STDIN].fd = -1;
            }
        }
    }
    text_free(&pending);
}

void console_run_commands(console_input input, console_command_runner *run_command, void *context)
{
    console_run_commands_and_events(input, run_command, NULL, context);
}
