// Socket and pipe calls that need _GNU_SOURCE, which Swift's Glibc module is not built with.
// Each returns -1 with errno on failure.
#ifndef CKVM_SOCKETS_H
#define CKVM_SOCKETS_H

/// accept4(2) of a waiting connection as a non-blocking, close-on-exec socket.
int ckvm_accept_nonblocking(int listener);
/// The process ID of the peer of a connected Unix socket (SO_PEERCRED).
int ckvm_peer_pid(int fd);
/// pipe2(2) with both ends close-on-exec from the start (no window for another thread's fork).
int ckvm_pipe_cloexec(int fds[2]);

#endif
