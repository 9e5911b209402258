/*
 * console: the stdin/stdout/signal plumbing shared by imbed-host and
 * imbed-client; console.h describes what it is for.
 */
#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK_BYTES 65536

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

void console_run_commands(console_input input, console_command_runner *run_command, void *context)
{
    text_buffer pending = {0};
    struct pollfd watched[2] = {
        {.fd = input.stdin_open ? STDIN_FILENO : -1, .events = POLLIN}, /* poll skips negative fds */
        {.fd = input.stop_signal_fd, .events = POLLIN},
    };
    for (;;) {
        if (poll(watched, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "%s: poll: %s\n", console_program_name, strerror(errno));
            break;
        }
        if (watched[1].revents != 0) {
            break;
        }
        if (watched[0].revents & POLLNVAL) {
            watched[0].fd = -1;
        } else if (watched[0].revents != 0) {
            input_state state = read_commands(&pending, run_command, context);
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
