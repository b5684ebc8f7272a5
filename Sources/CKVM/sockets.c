// Socket and pipe calls that need _GNU_SOURCE (see ckvm_sockets.h).
#define _GNU_SOURCE
#include "ckvm_sockets.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

int ckvm_accept_nonblocking(int listener) { return accept4(listener, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC); }

int ckvm_peer_pid(int fd) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    return credentials.pid;
}

int ckvm_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
