// TAP devices (linux/if_tun.h).
// Every function returns what ioctl()/syscall() returns (-1 with errno set on failure) unless it says otherwise.
#ifndef CKVM_TAP_H
#define CKVM_TAP_H

/// Opens one queue of TAP device `name` (created if absent) with IFF_TAP | IFF_NO_PI |
/// IFF_VNET_HDR | IFF_MULTI_QUEUE and a 12-byte virtio_net_hdr; returns the fd or -1 with errno.
int ckvm_tap_open(const char *name);
/// TUNSETOFFLOAD: which offloaded frames the TAP may hand us (the guest's receive offloads).
int ckvm_tap_set_offload(int fd, int checksum, int tso4, int tso6);
/// TUNSETSTEERINGEBPF: the TAP picks the queue for each frame it hands us by running socket
/// filter program `program_fd` (its return value modulo the queue count). Returns 0 or -1/errno.
int ckvm_tap_set_steering_program(int fd, int program_fd);

#endif
