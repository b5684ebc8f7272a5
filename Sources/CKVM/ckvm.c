#define _GNU_SOURCE
#include "ckvm.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/bpf.h>
#include <liburing.h>
#include <stdlib.h>

int ckvm_get_api_version(int kvm_fd) { return ioctl(kvm_fd, KVM_GET_API_VERSION, 0); }
int ckvm_check_extension(int fd, long capability) { return ioctl(fd, KVM_CHECK_EXTENSION, capability); }
int ckvm_get_vcpu_mmap_size(int kvm_fd) { return ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0); }
int ckvm_create_vm(int kvm_fd, unsigned long type) { return ioctl(kvm_fd, KVM_CREATE_VM, type); }
int ckvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid2 *cpuid) {
    return ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid);
}

int ckvm_set_user_memory_region(int vm_fd, const struct kvm_userspace_memory_region *region) {
    return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, region);
}
int ckvm_create_vcpu(int vm_fd, unsigned long vcpu_id) { return ioctl(vm_fd, KVM_CREATE_VCPU, vcpu_id); }
int ckvm_create_irqchip(int vm_fd) { return ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0); }
int ckvm_create_pit2(int vm_fd, const struct kvm_pit_config *config) {
    return ioctl(vm_fd, KVM_CREATE_PIT2, config);
}
int ckvm_set_tss_addr(int vm_fd, unsigned long address) { return ioctl(vm_fd, KVM_SET_TSS_ADDR, address); }
int ckvm_set_identity_map_addr(int vm_fd, uint64_t address) {
    return ioctl(vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &address);
}
int ckvm_irq_line(int vm_fd, uint32_t irq, uint32_t level) {
    struct kvm_irq_level line = {.irq = irq, .level = level};
    return ioctl(vm_fd, KVM_IRQ_LINE, &line);
}
int ckvm_set_gsi_routing(int vm_fd, const struct kvm_irq_routing *routing) {
    return ioctl(vm_fd, KVM_SET_GSI_ROUTING, routing);
}
int ckvm_irqfd(int vm_fd, const struct kvm_irqfd *irqfd) { return ioctl(vm_fd, KVM_IRQFD, irqfd); }
int ckvm_ioeventfd(int vm_fd, const struct kvm_ioeventfd *ioeventfd) {
    return ioctl(vm_fd, KVM_IOEVENTFD, ioeventfd);
}
int ckvm_enable_cap(int fd, const struct kvm_enable_cap *cap) { return ioctl(fd, KVM_ENABLE_CAP, cap); }
int ckvm_get_stats_fd(int fd) { return ioctl(fd, KVM_GET_STATS_FD, 0); }

int ckvm_run(int vcpu_fd) { return ioctl(vcpu_fd, KVM_RUN, 0); }
int ckvm_get_regs(int vcpu_fd, struct kvm_regs *regs) { return ioctl(vcpu_fd, KVM_GET_REGS, regs); }
int ckvm_set_regs(int vcpu_fd, const struct kvm_regs *regs) { return ioctl(vcpu_fd, KVM_SET_REGS, regs); }
int ckvm_get_sregs(int vcpu_fd, struct kvm_sregs *sregs) { return ioctl(vcpu_fd, KVM_GET_SREGS, sregs); }
int ckvm_set_sregs(int vcpu_fd, const struct kvm_sregs *sregs) { return ioctl(vcpu_fd, KVM_SET_SREGS, sregs); }
int ckvm_set_fpu(int vcpu_fd, const struct kvm_fpu *fpu) { return ioctl(vcpu_fd, KVM_SET_FPU, fpu); }
int ckvm_set_cpuid2(int vcpu_fd, const struct kvm_cpuid2 *cpuid) {
    return ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid);
}
int ckvm_get_lapic(int vcpu_fd, struct kvm_lapic_state *lapic) { return ioctl(vcpu_fd, KVM_GET_LAPIC, lapic); }
int ckvm_set_lapic(int vcpu_fd, const struct kvm_lapic_state *lapic) {
    return ioctl(vcpu_fd, KVM_SET_LAPIC, lapic);
}
int ckvm_get_mp_state(int vcpu_fd, struct kvm_mp_state *state) {
    return ioctl(vcpu_fd, KVM_GET_MP_STATE, state);
}
/* struct kvm_msrs ends in a flexible array: room for its one entry, suitably aligned. */
typedef union {
    struct kvm_msrs msrs;
    uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
} ckvm_one_msr;

int ckvm_get_msr(int vcpu_fd, uint32_t index, uint64_t *value) {
    ckvm_one_msr buffer;
    memset(&buffer, 0, sizeof buffer);
    buffer.msrs.nmsrs = 1;
    buffer.msrs.entries[0].index = index;
    int result = ioctl(vcpu_fd, KVM_GET_MSRS, &buffer.msrs);
    if (result == 1) *value = buffer.msrs.entries[0].data;
    return result;
}

int ckvm_set_msr(int vcpu_fd, uint32_t index, uint64_t value) {
    ckvm_one_msr buffer;
    memset(&buffer, 0, sizeof buffer);
    buffer.msrs.nmsrs = 1;
    buffer.msrs.entries[0].index = index;
    buffer.msrs.entries[0].data = value;
    return ioctl(vcpu_fd, KVM_SET_MSRS, &buffer.msrs);
}

int ckvm_probe_io_uring(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    long fd = syscall(__NR_io_uring_setup, 1, &params);
    if (fd < 0) return errno;
    close((int)fd);
    return 0;
}

int ckvm_eventfd(int nonblocking) { return eventfd(0, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0)); }

int ckvm_thread_id(void) { return (int)syscall(SYS_gettid); }

int ckvm_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = 0;
    return pthread_setname_np(pthread_self(), truncated);
}

int ckvm_set_thread_cpus(const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
    }
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int ckvm_pin_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

struct ckvm_uring {
    struct io_uring ring;
};

ckvm_uring *ckvm_uring_create(unsigned entries, int *error) {
    ckvm_uring *ring = calloc(1, sizeof *ring);
    if (!ring) { *error = ENOMEM; return NULL; }
    int result = io_uring_queue_init(entries, &ring->ring, 0);
    if (result < 0) { free(ring); *error = -result; return NULL; }
    return ring;
}

void ckvm_uring_destroy(ckvm_uring *ring) {
    io_uring_queue_exit(&ring->ring);
    free(ring);
}

/// A free submission entry, or NULL when the queue is full. The caller bounds what it has in
/// flight by the ring's size, so a full queue means a bug of ours, reported, never waited on.
static struct io_uring_sqe *next_sqe(ckvm_uring *ring) { return io_uring_get_sqe(&ring->ring); }

int ckvm_uring_prep_rw(ckvm_uring *ring, int write, int fd, const void *iovecs, unsigned count, uint64_t offset, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    if (write) {
        io_uring_prep_writev(sqe, fd, iovecs, count, offset);
    } else {
        io_uring_prep_readv(sqe, fd, iovecs, count, offset);
    }
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int ckvm_uring_prep_read(ckvm_uring *ring, int fd, void *buffer, unsigned length, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_read(sqe, fd, buffer, length, 0);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int ckvm_uring_prep_fdatasync(ckvm_uring *ring, int fd, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int ckvm_uring_prep_fallocate(ckvm_uring *ring, int fd, int mode, uint64_t offset, uint64_t length, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_fallocate(sqe, fd, mode, offset, length);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int ckvm_uring_submit(ckvm_uring *ring) {
    int result;
    do {
        result = io_uring_submit(&ring->ring);
    } while (result == -EINTR);
    return result;
}

unsigned ckvm_uring_unsubmitted(ckvm_uring *ring) { return io_uring_sq_ready(&ring->ring); }

int ckvm_uring_register_eventfd(ckvm_uring *ring, int fd) {
    return io_uring_register_eventfd(&ring->ring, fd);
}

unsigned ckvm_uring_completions_ready(ckvm_uring *ring) { return io_uring_cq_ready(&ring->ring); }

int ckvm_uring_next_completion(ckvm_uring *ring, int wait, uint64_t *user_data, int32_t *result) {
    struct io_uring_cqe *cqe = NULL;
    int status;
    do {
        // A signal (vCPU threads are kicked with SIGUSR1, without SA_RESTART) is not a completion.
        status = wait ? io_uring_wait_cqe(&ring->ring, &cqe) : io_uring_peek_cqe(&ring->ring, &cqe);
    } while (wait && status == -EINTR);
    if (status < 0 || !cqe) return status < 0 ? status : 0;
    *user_data = io_uring_cqe_get_data64(cqe);
    *result = cqe->res;
    io_uring_cqe_seen(&ring->ring, cqe);
    return 1;
}

int ckvm_falloc_punch_hole(void) { return FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE; }
int ckvm_falloc_zero_range(void) { return FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE; }

int ckvm_tap_open(const char *name) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -1;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE;
    int header_size = 12;  // struct virtio_net_hdr_v1, num_buffers included
    if (ioctl(fd, TUNSETIFF, &request) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &header_size) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int ckvm_tap_set_offload(int fd, int checksum, int tso4, int tso6) {
    unsigned flags = (checksum ? TUN_F_CSUM : 0) | (tso4 ? TUN_F_TSO4 : 0) | (tso6 ? TUN_F_TSO6 : 0);
    return ioctl(fd, TUNSETOFFLOAD, flags);
}

int ckvm_tap_set_steering_program(int fd, int program_fd) {
    return ioctl(fd, TUNSETSTEERINGEBPF, &program_fd);
}

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
