// TAP devices (linux/if_tun.h).
#include "ckvm_tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

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
