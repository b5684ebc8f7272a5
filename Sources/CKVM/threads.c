// Threads and event file descriptors: calls Glibc does not wrap for Swift.
#define _GNU_SOURCE
#include "ckvm_threads.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

int ckvm_eventfd(int nonblocking) { return eventfd(0, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0)); }

int ckvm_thread_id(void) { return (int)syscall(SYS_gettid); }

int ckvm_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = 0;
    return pthread_setname_np(pthread_self(), truncated);
}

static void cpu_set_of(const int *cpus, int count, cpu_set_t *set) {
    CPU_ZERO(set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], set);
    }
}

int ckvm_set_thread_cpus(const int *cpus, int count) {
    cpu_set_t set;
    cpu_set_of(cpus, count, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int ckvm_set_task_cpus(int tid, const int *cpus, int count) {
    cpu_set_t set;
    cpu_set_of(cpus, count, &set);
    return sched_setaffinity(tid, sizeof set, &set);
}

int ckvm_pin_thread(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}
