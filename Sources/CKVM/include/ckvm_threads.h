// Threads and event file descriptors: calls without a Glibc wrapper Swift can use.
// eventfd and the thread ID return -1 with errno on failure; the pthread calls return 0 or an error number.
#ifndef CKVM_THREADS_H
#define CKVM_THREADS_H

/// eventfd(2) with EFD_CLOEXEC (and EFD_NONBLOCK when asked), starting at 0.
int ckvm_eventfd(int nonblocking);
/// The calling thread's kernel thread ID (for /proc/self/task/<tid>).
int ckvm_thread_id(void);
/// Sets the calling thread's name (at most 15 bytes are kept).
int ckvm_set_thread_name(const char *name);
/// Pins the calling thread to one host CPU.
int ckvm_pin_thread(int cpu);
/// Restricts the calling thread to the `count` host CPUs listed.
int ckvm_set_thread_cpus(const int *cpus, int count);
/// Restricts thread `tid` (of any process this one may change) to the `count` host CPUs listed;
/// 0, or -1 with errno.
int ckvm_set_task_cpus(int tid, const int *cpus, int count);

#endif
