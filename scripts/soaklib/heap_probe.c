/*
 * heap_probe: loaded into imbed-host by scripts/soak (LD_PRELOAD). Every
 * 250 ms it writes two numbers from glibc's mallinfo2() (all arenas) as one
 * fixed-width line at the start of the file named by IMBED_SOAK_HEAP_FILE:
 * the bytes the program holds in use (mmapped chunks included), and the bytes
 * glibc keeps free in its arenas for later reuse.
 *
 * RSS alone cannot tell the two apart; this can. It costs the host one thread
 * and one descriptor, the same at every measurement.
 *
 * Build: cc -O2 -shared -fPIC heap_probe.c -o heap_probe.so -lpthread
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void *report_heap(void *arg)
{
    int fd = (int)(intptr_t)arg;
    const struct timespec interval = {.tv_nsec = 250 * 1000 * 1000};
    for (;;) {
        struct mallinfo2 info = mallinfo2();
        char line[64];
        /* Fixed width, so each report overwrites the last one whole. */
        int length = snprintf(line, sizeof line, "%20zu %20zu\n", info.uordblks + info.hblkhd, info.fordblks);
        if (pwrite(fd, line, (size_t)length, 0) != length) {
            return NULL;
        }
        nanosleep(&interval, NULL);
    }
}

__attribute__((constructor)) static void start_heap_probe(void)
{
    const char *path = getenv("IMBED_SOAK_HEAP_FILE");
    if (path == NULL) {
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pthread_t thread;
    if (fd >= 0 && pthread_create(&thread, NULL, report_heap, (void *)(intptr_t)fd) == 0) {
        pthread_detach(thread);
    }
}
