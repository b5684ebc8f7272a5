/* machine-report: prints the guest-visible machine of the CPU it runs on, one fact per line, so
 * that two hypervisors' machines can be compared with diff (nested/compare-machines):
 *   cpuid LEAF.SUBLEAF eax ebx ecx edx     every leaf and subleaf the CPU reports
 *   msr INDEX VALUE | msr INDEX unreadable through /dev/cpu/N/msr (the msr module)
 * Usage: machine-report CPU (pin it there first, e.g. taskset -c CPU machine-report CPU). */
#include <cpuid.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void leaf(uint32_t function, uint32_t index) {
    uint32_t a, b, c, d;
    __cpuid_count(function, index, a, b, c, d);
    printf("cpuid %08x.%02x %08x %08x %08x %08x\n", function, index, a, b, c, d);
}

/* Leaves whose subleaves differ; how many subleaves to print for each. */
static uint32_t subleaves(uint32_t function) {
    switch (function) {
    case 0x4: case 0x8000001d: return 8;
    case 0x7: case 0x14: case 0x17: case 0x18: return 4;
    case 0xb: case 0x1f: return 4;
    case 0xd: return 64;
    case 0xf: case 0x10: case 0x12: return 4;
    case 0x80000020: return 4;
    default: return 1;
    }
}

static void range(uint32_t base) {
    uint32_t a, b, c, d;
    __cpuid_count(base, 0, a, b, c, d);
    uint32_t last = a;
    if (last < base || last > base + 0xff) return;
    for (uint32_t function = base; function <= last; function++)
        for (uint32_t index = 0; index < subleaves(function); index++) leaf(function, index);
}

static const uint32_t msrs[] = {
    0x10,       /* TSC (differs by time; printed for presence) */
    0x1b,       /* APIC base */
    0x3a,       /* feature control */
    0x48,       /* SPEC_CTRL */
    0xfe,       /* MTRRcap */
    0x10a,      /* ARCH_CAPABILITIES */
    0x1a0,      /* MISC_ENABLE */
    0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, /* variable MTRRs 0-3 */
    0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f, /* fixed MTRRs */
    0x277,      /* PAT */
    0x2ff,      /* MTRRdefType */
    0x6e0,      /* TSC deadline */
    0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, 0x4b564d05, 0x4b564d06, 0x4b564d07,
    0xc0000080, /* EFER */
    0xc0000103, /* TSC_AUX */
    0xc0010010, /* SYSCFG */
    0xc0010015, /* HWCR */
    0xc0010114, /* VM_CR */
    0xc0010117, /* VM_HSAVE_PA */
    0xc0010140, 0xc0010141, /* OSVW */
};

int main(int argc, char **argv) {
    int cpu = argc > 1 ? atoi(argv[1]) : 0;
    range(0);
    range(0x40000000);
    range(0x80000000);
    char path[64];
    snprintf(path, sizeof path, "/dev/cpu/%d/msr", cpu);
    int fd = open(path, O_RDONLY);
    for (size_t i = 0; i < sizeof msrs / sizeof msrs[0]; i++) {
        uint64_t value;
        if (fd >= 0 && pread(fd, &value, sizeof value, msrs[i]) == sizeof value)
            printf("msr %08x %016llx\n", msrs[i], (unsigned long long)value);
        else
            printf("msr %08x unreadable\n", msrs[i]);
    }
    return 0;
}
