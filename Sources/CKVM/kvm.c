// KVM ioctls on /dev/kvm, a VM and a vCPU.
#include "ckvm_kvm.h"

#include <string.h>
#include <sys/ioctl.h>

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
