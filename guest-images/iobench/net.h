/* What the network workloads share (net.c, net_hostile.c): frame building and checking. */
#pragma once
#include "virtio.h"
#include "workloads.h"

#define VIRTIO_NET_F_MAC (1ull << 5)
#define VIRTIO_NET_F_MRG_RXBUF (1ull << 15)
#define VIRTIO_NET_F_CTRL_VQ (1ull << 17)
#define HEADER 12  /* struct virtio_net_hdr with num_buffers: VERSION_1 always has it */
#define BUFFER 2048
#define PAYLOAD 56

/* Transmit buffers; an echo request goes in the first. */
extern u8 tx_buffers[][BUFFER];
/* Writes an echo request with sequence number `seq` into tx_buffers[0]; returns its length. */
u32 build_echo_request(const u8 *guest_mac, const u8 *host_mac, u16 seq);
/* Whether a received frame (after the header) is the echo reply for `seq`, payload intact. */
int is_echo_reply(const u8 *frame, u32 length, u16 seq);
