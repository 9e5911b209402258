/*
 * console: the plumbing that imbed's two example programs, imbed-host
 * (examples/host.c) and imbed-client (examples/client.c), share.
 *
 * Each runs one engine object behind the same kind of console: commands
 * arrive on stdin, one per line; events and replies leave on stdout, one
 * JSON object per line; logs and fatal errors go to stderr; "quit", SIGINT
 * and SIGTERM stop the program, end of input does not. This module holds
 * that console: a growing text buffer to build JSON lines in, whole-line
 * printing under the stdout lock, an engine listener that prints (and the
 * same printing for events taken by polling), and the stdin command loop
 * with its stop-signal self-pipe, which can also watch a polled handle's
 * event descriptor. Flags, configs and the commands themselves stay in each
 * program.
 *
 * It needs POSIX.1-2008 (flockfile, sigaction, poll) and include/imbed.h,
 * nothing else; compile examples/console.c alongside the program.
 */
#ifndef IMBED_EXAMPLES_CONSOLE_H
#define IMBED_EXAMPLES_CONSOLE_H

#include "imbed.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * The program's name, which each program using this module defines. Every
 * line this module writes to stderr starts with it, like the program's own
 * messages; a definition rather than a setter, so no message can come
 * before it is known.
 */
extern const char console_program_name[];

/*
 * A growing string for building output lines. {0} is empty; after the first
 * append `data` is NUL-terminated. It is never shrunk, only released with
 * text_free. Running out of memory exits the program.
 */
typedef struct text_buffer {
    char *data;
    size_t length;
    size_t capacity;
} text_buffer;

/* Appends a NUL-terminated string. */
void text_append(text_buffer *text, const char *string);

/*
 * Appends `string` as a quoted JSON string. Bytes from 0x80 up pass through
 * untouched: valid UTF-8 needs no escaping, and invalid UTF-8 in a config
 * should reach the engine, which rejects it with a precise error.
 */
void text_append_json_string(text_buffer *text, const char *string);

/* Releases the buffer's memory and leaves it empty and reusable. */
void text_free(text_buffer *text);

/*
 * Writes one line to stdout and flushes it, since readers follow stdout
 * through a pipe. flockfile is the stdout mutex: events are printed on the
 * engine's dispatcher thread while the main thread prints replies. It is
 * recursive, so a caller already holding it may print too.
 */
void print_stdout_line(const char *line);

/* Reports a failed engine call on stderr: "<program>: <status description>: <last error>". */
void print_failure(imbed_status status);

/* Prints {"event":"error","command":...,"message":...} for a failed stdin command. */
void print_command_error(const char *command, const char *message);

/* Prints the error line of a stdin command whose engine call failed. */
void print_command_failure(const char *command, imbed_status status);

/*
 * The listener both programs install: every engine event becomes one stdout
 * line, verbatim, and every engine log one stderr line.
 */
imbed_listener console_engine_listener(void);

/*
 * Prints an event taken by polling (events.delivery "poll") exactly as the
 * listener prints what its callbacks get: the event's JSON as one stdout
 * line, and an IMBED_EVENT_LOG record as the stderr line on_log writes.
 * Does not free the event.
 */
void console_print_event(const imbed_event *event);

/* Splits off the first space- or tab-separated word of *cursor, NUL-terminating it. */
char *take_word(char **cursor);

/* What the command loop waits on: stdin, and the pipe that stop signals write to. */
typedef struct console_input {
    bool stdin_open;    /* false when the program started with fd 0 closed */
    int stop_signal_fd; /* read end of the self-pipe */
} console_input;

/*
 * Prepares the command loop's input: notes whether stdin is open, then
 * routes SIGINT and SIGTERM to a self-pipe and ignores SIGPIPE, so a peer or
 * a reader of stdout that hangs up produces an error on that write instead
 * of killing the program. Call it before anything opens a file descriptor:
 * a closed fd 0 would be reused by the first one (the pipe included) and
 * then look open. Exits if the pipe cannot be created.
 */
console_input console_prepare_input(void);

/*
 * Runs one stdin command. `command` is the line's first word and
 * `arguments` the rest of the line; trailing whitespace is already gone and
 * both may be modified. Never called with an empty command or "quit".
 */
typedef void console_command_runner(void *context, char *command, char *arguments);

/*
 * Reads stdin commands and runs each with `run_command(context, ...)` until
 * "quit" or a stop signal. Blank lines are skipped, and a line may be of any
 * length. End of stdin only stops the reading: the program keeps serving
 * until a stop signal.
 */
void console_run_commands(console_input input, console_command_runner *run_command, void *context);

/*
 * An engine handle that delivers its events by polling, for the command
 * loop to serve alongside stdin. Both functions get the loop's `context`.
 */
typedef struct console_event_source {
    /*
     * The event descriptor to watch. Asked again before every wait, since a
     * command may replace the handle, and its descriptor with it ("restart").
     */
    int (*event_fd)(void *context);
    /* Takes and prints waiting events; called when the descriptor is readable. */
    void (*take_events)(void *context);
} console_event_source;

/*
 * console_run_commands in one thread with no callbacks: a single poll()
 * waits on stdin, the stop signals and `events`' descriptor, and runs
 * whichever is ready, so events are printed between commands, never during
 * one. End of stdin still only stops the reading; events keep coming until
 * "quit" or a stop signal. Events that wait when the loop returns are the
 * caller's to take.
 */
void console_run_commands_and_events(console_input input, console_command_runner *run_command,
                                     const console_event_source *events, void *context);

#endif
