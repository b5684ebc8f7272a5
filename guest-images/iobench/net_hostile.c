/* A misbehaving virtio-net driver (hostile=1 net=1), with mergeable receive buffers and the
 * control queue negotiated: receive chains with no room (zero-length, device-readable), receive
 * buffers too small for a frame across the whole ring, broken transmit chains, oversized and
 * malformed transmit headers, garbage control commands and VQ_PAIRS_SET out of range; after
 * each, an echo round trip to the host must still work, and after a reset too. Needs the same
 * host setup as net=1 (peer_mac=...). Prints "iobench: result test=net-hostile" and a field per
 * case, 1 when the device coped. */
#include "net.h"

#define RX_SIZE 64
#define TX_SIZE 64
#define CTRL_SIZE 16
static struct vring rx_ring, tx_ring, ctrl_ring;
static u8 rx_buffers[RX_SIZE][BUFFER] __attribute__((aligned(4096)));
static u8 big_tx[70000] __attribute__((aligned(4096)));
static u8 ctrl_command[16], ctrl_ack;
static struct virtio_device dev;
static struct virtqueue rx, tx, ctrl;
static u8 guest_mac[6], host_mac[6];
static u16 sequence;

static void start_device(void) {
    virtio_open(&dev, 0x1041, 0x1000, VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_F_CTRL_VQ, 0);
    virtio_queue(&dev, &rx, 0, &rx_ring, RX_SIZE, 0);
    virtio_queue(&dev, &tx, 1, &tx_ring, TX_SIZE, 0);
    virtio_queue(&dev, &ctrl, 2, &ctrl_ring, CTRL_SIZE, 0);
    for (int i = 0; i < 6; i++) guest_mac[i] = MMIO(u8, dev.device_cfg + i);
    virtio_driver_ok(&dev);
}

/* Takes every returned receive chain; counts those that came back empty. */
static u32 take_rx(u32 *empty) {
    u32 taken = 0;
    while (vq_has_used(&rx)) {
        u32 length;
        (void)vq_take(&rx, &length);
        if (length == 0 && empty) (*empty)++;
        taken++;
    }
    return taken;
}

/* Waits up to 100 ms for `count` receive chains to come back; returns how many came back empty. */
static u32 wait_rx(u32 count) {
    u32 taken = 0, empty = 0;
    for (u64 deadline = now_ns() + 100000000; taken < count && now_ns() < deadline;) taken += take_rx(&empty);
    return taken == count ? empty : 0xFFFFFFFF;
}

/* Posts `count` receive chains of one descriptor each, `length` bytes with `flags`. */
static void post_rx(u32 count, u32 length, u16 flags) {
    for (u16 i = 0; i < count; i++) {
        rx_ring.desc[i] = (struct desc){ (uintptr_t)rx_buffers[i], length, flags, 0 };
        vq_add(&rx, i);
    }
    vq_publish(&rx);
}

/* Sends transmit chain 0 as it stands and waits for it to come back. */
static int transmit_returned(void) {
    vq_add(&tx, 0);
    vq_publish(&tx);
    for (u64 deadline = now_ns() + 100000000; now_ns() < deadline;) {
        if (vq_has_used(&tx)) return vq_take(&tx, 0) == 0;
    }
    return 0;
}

/* An echo round trip with a full ring of good receive buffers: the device works. */
static int round_trip(void) {
    take_rx(0);
    post_rx(RX_SIZE, BUFFER, DESC_WRITE);
    u16 seq = ++sequence;
    tx_ring.desc[0] = (struct desc){ (uintptr_t)tx_buffers[0], build_echo_request(guest_mac, host_mac, seq), 0, 0 };
    if (!transmit_returned()) return 0;
    for (u64 deadline = now_ns() + 200000000; now_ns() < deadline;) {
        while (vq_has_used(&rx)) {
            u32 length, id = vq_take(&rx, &length);
            if (id < RX_SIZE && length >= HEADER && length <= BUFFER && is_echo_reply(rx_buffers[id] + HEADER, length - HEADER, seq)) {
                /* Leave the ring empty for the next case: take what else comes within 1 ms. */
                spin_ns(1000000);
                take_rx(0);
                return 1;
            }
        }
    }
    return 0;
}

/* Sends an echo request whose reply will find the receive ring as the case left it. */
static void provoke_reply(void) {
    tx_ring.desc[0] = (struct desc){ (uintptr_t)tx_buffers[0], build_echo_request(guest_mac, host_mac, ++sequence), 0, 0 };
    (void)transmit_returned();
}

/* A control command of class/command with `data`; returns the ack byte (0xEE if none came). */
static u8 control(u8 class, u8 command, const u8 *data, u32 length) {
    ctrl_command[0] = class; ctrl_command[1] = command;
    for (u32 i = 0; i < length; i++) ctrl_command[2 + i] = data[i];
    ctrl_ack = 0xEE;
    ctrl_ring.desc[0] = (struct desc){ (uintptr_t)ctrl_command, 2, DESC_NEXT, 1 };
    ctrl_ring.desc[1] = (struct desc){ (uintptr_t)(ctrl_command + 2), length ? length : 1, DESC_NEXT, 2 };
    ctrl_ring.desc[2] = (struct desc){ (uintptr_t)&ctrl_ack, 1, DESC_WRITE, 0 };
    vq_add(&ctrl, 0);
    vq_publish(&ctrl);
    for (u64 deadline = now_ns() + 100000000; now_ns() < deadline;) {
        if (vq_has_used(&ctrl)) { (void)vq_take(&ctrl, 0); break; }
    }
    return ctrl_ack;
}

void net_hostile_workload(void) {
    u64 peer = arg("peer_mac", 0);
    if (!peer) fail("peer_mac=0x<host MAC> is required");
    for (int i = 0; i < 6; i++) host_mac[i] = (u8)(peer >> (40 - 8 * i));
    start_device();
    puts_serial("iobench: start\n");
    spin_ns(arg("hold_ms", 300) * 1000000);
    if (!round_trip()) fail("the network device does not work to begin with");

    /* Each case starts from a reset: the driver cannot take back buffers it posted. */
    start_device();
    /* Zero-length receive chains, a whole ring of them, with a frame waiting: returned empty. */
    post_rx(RX_SIZE, 0, DESC_WRITE);
    provoke_reply();
    int zero = wait_rx(RX_SIZE) == RX_SIZE && round_trip();

    start_device();
    /* Device-readable receive chains: nothing to write into, returned empty. */
    post_rx(RX_SIZE, BUFFER, 0);
    provoke_reply();
    int readonly = wait_rx(RX_SIZE) == RX_SIZE && round_trip();

    start_device();
    /* 1-byte receive buffers: a reply needs more chains than the ring has; dropped, all returned. */
    post_rx(RX_SIZE, 1, DESC_WRITE);
    provoke_reply();
    int tiny = wait_rx(RX_SIZE) != 0xFFFFFFFF && round_trip();

    start_device();
    /* Transmit chains the device must refuse: a buffer outside RAM, a next past the table. */
    tx_ring.desc[0] = (struct desc){ 0xFFFFF0000000ull, 100, 0, 0 };
    int outside = transmit_returned();
    tx_ring.desc[0] = (struct desc){ (uintptr_t)tx_buffers[0], 100, DESC_NEXT, TX_SIZE + 3 };
    int next = transmit_returned();
    int broken_tx = outside && next && round_trip();

    start_device();
    /* An oversized frame (past what a TAP takes) and a header full of garbage (GSO type, header
     * and segment lengths, checksum offsets past the frame). */
    tx_ring.desc[0] = (struct desc){ (uintptr_t)big_tx, sizeof big_tx, 0, 0 };
    int oversized = transmit_returned();
    u32 length = build_echo_request(guest_mac, host_mac, ++sequence);
    for (int i = 0; i < 10; i++) tx_buffers[0][i] = 0xFF;
    tx_ring.desc[0] = (struct desc){ (uintptr_t)tx_buffers[0], length, 0, 0 };
    int garbage = transmit_returned();
    int tx_header = oversized && garbage && round_trip();

    start_device();
    /* Control commands: an unknown class, VQ_PAIRS_SET 0 and 1000: VIRTIO_NET_ERR; 1 is fine. */
    u8 zero_pairs[2] = {0, 0}, many_pairs[2] = {0xE8, 0x03}, one_pair[2] = {1, 0};
    int ctrl_ok = control(0x77, 0x11, one_pair, 2) == 1 && control(4, 0, zero_pairs, 2) == 1
        && control(4, 0, many_pairs, 2) == 1 && control(4, 0, one_pair, 1) == 1 && control(4, 0, one_pair, 2) == 0;

    /* After a reset the device works again. */
    start_device();
    int recovered = round_trip();

    puts_serial("iobench: end\n");
    puts_serial("iobench: result test=net-hostile");
    put_field("zero", (u64)zero); put_field("readonly", (u64)readonly); put_field("tiny", (u64)tiny);
    put_field("broken_tx", (u64)broken_tx); put_field("tx_header", (u64)tx_header); put_field("control", (u64)ctrl_ok);
    put_field("recovered", (u64)recovered);
    puts_serial("\n");
}
