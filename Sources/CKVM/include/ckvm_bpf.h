// eBPF (linux/bpf.h), for the TAP's flow steering.
// Every function returns what ioctl()/syscall() returns (-1 with errno set on failure) unless it says otherwise.
#ifndef CKVM_BPF_H
#define CKVM_BPF_H

#include <stdint.h>

/// BPF_PROG_LOAD of a BPF_PROG_TYPE_SOCKET_FILTER program of `count` 8-byte instructions.
/// Returns the program fd, or -1 with errno and the verifier's log in `log` (NUL-terminated).
int ckvm_bpf_load_socket_filter(const void *instructions, uint32_t count, char *log, uint32_t log_size);
/// BPF_PROG_TEST_RUN: runs the program once on `frame` (an Ethernet frame); *result gets its
/// return value. Returns 0 or -1 with errno.
int ckvm_bpf_test_run(int program_fd, const void *frame, uint32_t length, uint32_t *result);

#endif
