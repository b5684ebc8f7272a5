// KVM: the _IO*/_IOW* ioctl requests and the anonymous unions of struct kvm_run, which Swift cannot import.
// Every function returns what ioctl()/syscall() returns (-1 with errno set on failure) unless it says otherwise.
#ifndef CKVM_KVM_H
#define CKVM_KVM_H

#include <linux/kvm.h>
#include <stdint.h>

// /dev/kvm (system) ioctls
int ckvm_get_api_version(int kvm_fd);
int ckvm_check_extension(int fd, long capability);
int ckvm_get_vcpu_mmap_size(int kvm_fd);
int ckvm_create_vm(int kvm_fd, unsigned long type);
int ckvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid2 *cpuid);

// VM ioctls
int ckvm_set_user_memory_region(int vm_fd, const struct kvm_userspace_memory_region *region);
int ckvm_create_vcpu(int vm_fd, unsigned long vcpu_id);
int ckvm_create_irqchip(int vm_fd);
int ckvm_create_pit2(int vm_fd, const struct kvm_pit_config *config);
int ckvm_set_tss_addr(int vm_fd, unsigned long address);
int ckvm_set_identity_map_addr(int vm_fd, uint64_t address);
int ckvm_irq_line(int vm_fd, uint32_t irq, uint32_t level);
int ckvm_set_gsi_routing(int vm_fd, const struct kvm_irq_routing *routing);
int ckvm_irqfd(int vm_fd, const struct kvm_irqfd *irqfd);
int ckvm_ioeventfd(int vm_fd, const struct kvm_ioeventfd *ioeventfd);
int ckvm_enable_cap(int fd, const struct kvm_enable_cap *cap);
int ckvm_get_stats_fd(int fd);

// vCPU ioctls
int ckvm_run(int vcpu_fd);
int ckvm_get_regs(int vcpu_fd, struct kvm_regs *regs);
int ckvm_set_regs(int vcpu_fd, const struct kvm_regs *regs);
int ckvm_get_sregs(int vcpu_fd, struct kvm_sregs *sregs);
int ckvm_set_sregs(int vcpu_fd, const struct kvm_sregs *sregs);
int ckvm_set_fpu(int vcpu_fd, const struct kvm_fpu *fpu);
int ckvm_set_cpuid2(int vcpu_fd, const struct kvm_cpuid2 *cpuid);
int ckvm_get_lapic(int vcpu_fd, struct kvm_lapic_state *lapic);
int ckvm_set_lapic(int vcpu_fd, const struct kvm_lapic_state *lapic);
int ckvm_get_mp_state(int vcpu_fd, struct kvm_mp_state *state);
/* KVM_GET_MSRS for one MSR; returns 1 when KVM read it. */
int ckvm_get_msr(int vcpu_fd, uint32_t index, uint64_t *value);
/* KVM_SET_MSRS of one MSR: returns 1 when KVM took it. */
int ckvm_set_msr(int vcpu_fd, uint32_t index, uint64_t value);

// struct kvm_run accessors (anonymous unions)
static inline struct kvm_run *ckvm_run_ptr(void *mapping) { return (struct kvm_run *)mapping; }
static inline uint32_t ckvm_exit_reason(const struct kvm_run *run) { return run->exit_reason; }
static inline void ckvm_set_immediate_exit(struct kvm_run *run, uint8_t value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}
static inline uint8_t ckvm_io_direction(const struct kvm_run *run) { return run->io.direction; }
static inline uint8_t ckvm_io_size(const struct kvm_run *run) { return run->io.size; }
static inline uint16_t ckvm_io_port(const struct kvm_run *run) { return run->io.port; }
static inline uint32_t ckvm_io_count(const struct kvm_run *run) { return run->io.count; }
static inline uint64_t ckvm_io_data_offset(const struct kvm_run *run) { return run->io.data_offset; }
static inline uint64_t ckvm_mmio_address(const struct kvm_run *run) { return run->mmio.phys_addr; }
static inline uint32_t ckvm_mmio_length(const struct kvm_run *run) { return run->mmio.len; }
static inline uint8_t ckvm_mmio_is_write(const struct kvm_run *run) { return run->mmio.is_write; }
static inline uint8_t *ckvm_mmio_data(struct kvm_run *run) { return run->mmio.data; }
static inline uint32_t ckvm_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }
static inline uint64_t ckvm_fail_entry_reason(const struct kvm_run *run) {
    return run->fail_entry.hardware_entry_failure_reason;
}
static inline uint32_t ckvm_system_event_type(const struct kvm_run *run) { return run->system_event.type; }

#endif
