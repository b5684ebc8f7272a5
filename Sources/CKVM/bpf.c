// eBPF programs (linux/bpf.h): loading a socket filter and test-running it.
#include "ckvm_bpf.h"

#include <linux/bpf.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int ckvm_bpf_load_socket_filter(const void *instructions, uint32_t count, char *log, uint32_t log_size) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insns = (uint64_t)(uintptr_t)instructions;
    attr.insn_cnt = count;
    attr.license = (uint64_t)(uintptr_t)"GPL";
    if (log && log_size > 0) {
        log[0] = 0;
        attr.log_buf = (uint64_t)(uintptr_t)log;
        attr.log_size = log_size;
        attr.log_level = 1;
    }
    return (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
}

int ckvm_bpf_test_run(int program_fd, const void *frame, uint32_t length, uint32_t *result) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.test.prog_fd = (uint32_t)program_fd;
    attr.test.data_in = (uint64_t)(uintptr_t)frame;
    attr.test.data_size_in = length;
    attr.test.repeat = 1;
    if (syscall(SYS_bpf, BPF_PROG_TEST_RUN, &attr, sizeof attr) < 0) return -1;
    *result = attr.test.retval;
    return 0;
}
