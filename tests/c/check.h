/*
 * The checks the C tests share: each prints one line ("ok   …" or "FAIL …")
 * and counts itself, so a test ends with "N passed, M failed" and its exit
 * status. Names of statuses and event kinds come from tables of their own,
 * so printing a failure calls no imbed_ function but imbed_last_error().
 * Also the small helpers more than one test uses: time, and reading a field
 * of an event's JSON without a JSON library.
 */
#ifndef IMBED_TEST_CHECK_H
#define IMBED_TEST_CHECK_H

#include "imbed.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int checks_passed;
static int checks_failed;

/* Records one check and prints it; returns whether it passed. */
static inline bool check(bool passed, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    fputs(passed ? "ok   " : "FAIL ", stdout);
    vprintf(format, arguments);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(arguments);
    if (passed) {
        checks_passed++;
    } else {
        checks_failed++;
    }
    return passed;
}

/* Name of a status code, from this test's own table so printing calls no imbed_ function. */
static inline const char *status_name(int status)
{
    static const char *const names[] = {
        "IMBED_OK",
        "IMBED_ERR_NULL_ARGUMENT",
        "IMBED_ERR_INVALID_UTF8",
        "IMBED_ERR_INVALID_CONFIG",
        "IMBED_ERR_INVALID_ARGUMENT",
        "IMBED_ERR_INVALID_HANDLE",
        "IMBED_ERR_ALREADY_STARTED",
        "IMBED_ERR_NOT_STARTED",
        "IMBED_ERR_STOPPED",
        "IMBED_ERR_IN_CALLBACK",
        "IMBED_ERR_IO",
        "IMBED_ERR_STORE",
        "IMBED_ERR_PANIC",
        "IMBED_ERR_NOT_FOUND",
        "IMBED_ERR_NOT_CONNECTED",
    };
    if (status < 0 || status >= (int)(sizeof names / sizeof names[0])) {
        return "(unknown status)";
    }
    return names[status];
}

/* Name of an event kind, for messages. */
static inline const char *kind_name(imbed_event_kind kind)
{
    switch (kind) {
    case IMBED_EVENT_CONNECTED:
        return "CONNECTED";
    case IMBED_EVENT_DISCONNECTED:
        return "DISCONNECTED";
    case IMBED_EVENT_MESSAGE:
        return "MESSAGE";
    case IMBED_EVENT_OVERFLOW:
        return "OVERFLOW";
    case IMBED_EVENT_MEMBER:
        return "MEMBER";
    case IMBED_EVENT_STATE:
        return "STATE";
    case IMBED_EVENT_ACK:
        return "ACK";
    case IMBED_EVENT_SEND_FAILED:
        return "SEND_FAILED";
    case IMBED_EVENT_FRAME:
        return "FRAME";
    case IMBED_EVENT_LOG:
        return "LOG";
    case IMBED_EVENT_PUSH:
        return "PUSH";
    }
    return "(unknown kind)";
}

/* Checks that a call returned `expected`; on mismatch shows the engine's last error. */
static inline bool check_status(imbed_status actual, imbed_status expected, const char *what)
{
    if (actual == expected) {
        return check(true, "%s -> %s", what, status_name(expected));
    }
    return check(false, "%s -> got %s (%d), expected %s; last error: \"%s\"", what, status_name(actual),
                 (int)actual, status_name(expected), imbed_last_error());
}

/* Checks imbed_last_error() is non-empty and contains `needle` ("" for just non-empty). */
static inline void check_last_error_mentions(const char *needle, const char *what)
{
    const char *message = imbed_last_error();
    check(message != NULL && message[0] != '\0' && strstr(message, needle) != NULL,
          "%s: last error mentions \"%s\" (it says \"%s\")", what, needle, message ? message : "(NULL)");
}

/* Sleeps for `milliseconds`. */
static inline void sleep_ms(long milliseconds)
{
    struct timespec duration = {milliseconds / 1000, (milliseconds % 1000) * 1000000L};
    while (nanosleep(&duration, &duration) != 0) {
    }
}

/* Milliseconds on a monotonic clock, for timeouts. */
static inline long long now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* poll() on `fd` for reading: 1 readable, 0 not within `timeout_ms` (-1: no limit), -1 a poll error. */
static inline int wait_readable(int fd, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        struct pollfd watched = {.fd = fd, .events = POLLIN};
        int result = poll(&watched, 1, timeout_ms);
        if (result >= 0) {
            return result > 0 && (watched.revents & POLLIN) ? 1 : result > 0 ? -1 : 0;
        }
        if (errno != EINTR) {
            return -1;
        }
        if (timeout_ms >= 0) {
            long long left = deadline - now_ms();
            timeout_ms = left > 0 ? (int)left : 0;
        }
    }
}

/* Whether `haystack` is non-NULL and contains `needle`. */
static inline bool contains(const char *haystack, const char *needle)
{
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* How many times `needle` occurs in `haystack` (NULL: none). */
static inline int count_occurrences(const char *haystack, const char *needle)
{
    int count = 0;
    for (const char *found = haystack != NULL ? strstr(haystack, needle) : NULL; found != NULL;
         found = strstr(found + 1, needle)) {
        count++;
    }
    return count;
}

/* Copies the string value after `prefix` in `json` (up to the closing quote) into `out`; whether there was one. */
static inline bool copy_string_after(const char *json, const char *prefix, char *out, size_t capacity)
{
    const char *found = json != NULL ? strstr(json, prefix) : NULL;
    out[0] = '\0';
    if (found == NULL) {
        return false;
    }
    const char *start = found + strlen(prefix);
    const char *end = strchr(start, '"');
    if (end == NULL || (size_t)(end - start) >= capacity) {
        return false;
    }
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
    return true;
}

/* The unsigned number after "key": in `json` (the first one), or -1 when there is none. */
static inline long long json_number(const char *json, const char *key)
{
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *found = json != NULL ? strstr(json, needle) : NULL;
    if (found == NULL) {
        return -1;
    }
    const char *digits = found + strlen(needle);
    if (*digits < '0' || *digits > '9') {
        return -1;
    }
    return strtoll(digits, NULL, 10);
}

/* Whether `json` contains "key":"value"; a NULL value, from a failed call, never matches. */
static inline bool json_has(const char *json, const char *key, const char *value)
{
    if (value == NULL) {
        return false;
    }
    char needle[256];
    snprintf(needle, sizeof needle, "\"%s\":\"%s\"", key, value);
    return json != NULL && strstr(json, needle) != NULL;
}

/* Whether `string` is non-NULL and equal to `expected`. */
static inline bool equals(const char *string, const char *expected)
{
    return string != NULL && strcmp(string, expected) == 0;
}

#endif
