/* The network workloads. By default `requests` ICMP echo round trips to the host's end of the TAP,
 * one at a time (a request/response latency test like netperf's TCP_RR, answered by the host
 * kernel); with stream=1 a transmit stream instead: `requests` 1514-byte UDP frames to the host's
 * discard port, up to 32 in flight (like a UDP_STREAM; the host stack receives and drops them).
 * With duration_ms=T, requests stop being issued after T ms (`requests` is then a cap); round
 * trips hand their latency histogram over (latency_histogram.h) before the result line.
 * The guest is 169.254.77.2 and the host 169.254.77.1; the host needs a permanent neighbour entry
 * for the guest's MAC (from the device) and passes its own as peer_mac=0x<12 hex digits>, so no
 * ARP is spoken. Frames that are not the awaited reply (IPv6 neighbour discovery, say) are
 * skipped; a reply missing for 100 ms counts as an error and the next request goes out. */
#include "net.h"
#include "latency_histogram.h"

#define RX_BUFFERS 64
#define STREAM_IN_FLIGHT 32
#define UDP_PAYLOAD 1472
static struct vring rx_ring, tx_ring;
static u8 rx_buffers[RX_BUFFERS][BUFFER] __attribute__((aligned(4096)));
u8 tx_buffers[STREAM_IN_FLIGHT][BUFFER] __attribute__((aligned(4096)));
static const u8 guest_ip[4] = {169, 254, 77, 2}, host_ip[4] = {169, 254, 77, 1};

static u16 checksum(const u8 *data, u32 length) {
    u32 sum = 0;
    for (u32 i = 0; i + 1 < length; i += 2) sum += (u32)data[i] << 8 | data[i + 1];
    if (length & 1) sum += (u32)data[length - 1] << 8;
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return (u16)~sum;
}
static void put16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static u16 get16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }

/* Writes the virtio-net header (zero), Ethernet and IPv4 headers for `protocol` with `length`
 * bytes after the IP header into `buffer`; returns where those bytes go. */
static u8 *write_ipv4_frame(u8 *buffer, const u8 *guest_mac, const u8 *host_mac, u8 protocol, u16 length, u16 id) {
    u8 *frame = buffer + HEADER, *ip = frame + 14;
    for (int i = 0; i < HEADER; i++) buffer[i] = 0;
    for (int i = 0; i < 6; i++) { frame[i] = host_mac[i]; frame[6 + i] = guest_mac[i]; }
    put16(frame + 12, 0x0800);
    ip[0] = 0x45; ip[1] = 0; put16(ip + 2, (u16)(20 + length)); put16(ip + 4, id); put16(ip + 6, 0x4000);
    ip[8] = 64; ip[9] = protocol; put16(ip + 10, 0);
    for (int i = 0; i < 4; i++) { ip[12 + i] = guest_ip[i]; ip[16 + i] = host_ip[i]; }
    put16(ip + 10, checksum(ip, 20));
    return ip + 20;
}

/* Writes an echo request with sequence number `seq` into tx_buffers[0] (round trips use one
 * buffer); returns the descriptor length. */
u32 build_echo_request(const u8 *guest_mac, const u8 *host_mac, u16 seq) {
    u8 *icmp = write_ipv4_frame(tx_buffers[0], guest_mac, host_mac, 1, 8 + PAYLOAD, seq);
    icmp[0] = 8; icmp[1] = 0; put16(icmp + 2, 0); put16(icmp + 4, 0x5C0E); put16(icmp + 6, seq);
    for (int i = 0; i < PAYLOAD; i++) icmp[8 + i] = (u8)(seq + i);
    put16(icmp + 2, checksum(icmp, 8 + PAYLOAD));
    return HEADER + 14 + 20 + 8 + PAYLOAD;
}

/* Writes a UDP datagram to the discard port into tx_buffers[slot]; returns the descriptor length.
 * The UDP checksum is left 0 (none), as IPv4 allows. */
static u32 build_udp_frame(u32 slot, const u8 *guest_mac, const u8 *host_mac, u16 id) {
    u8 *udp = write_ipv4_frame(tx_buffers[slot], guest_mac, host_mac, 17, 8 + UDP_PAYLOAD, id);
    put16(udp, 40000); put16(udp + 2, 9); put16(udp + 4, 8 + UDP_PAYLOAD); put16(udp + 6, 0);
    return HEADER + 14 + 20 + 8 + UDP_PAYLOAD;
}

/* Takes back received buffers (whatever they hold) and posts them again. */
static u64 recycle_rx(struct virtqueue *rx) {
    u64 count = 0;
    while (vq_has_used(rx)) {
        u32 length, id = vq_take(rx, &length);
        if (id >= rx->size || length > BUFFER) fail("device returned a bad receive buffer");
        vq_add(rx, (u16)id);
        count++;
    }
    if (count) vq_publish(rx);
    return count;
}

/* The stream: keeps up to STREAM_IN_FLIGHT frames queued; returns how many went out. With
 * `duration_ns`, no frame is queued after that long (`total` is then a cap). */
static u64 stream(struct virtqueue *rx, struct virtqueue *tx, const u8 *guest_mac, const u8 *host_mac, u64 total,
                  u64 duration_ns) {
    u8 busy[STREAM_IN_FLIGHT] = {0};
    u64 sent = 0, done = 0, start = now_ns();
    for (u32 s = 0; s < STREAM_IN_FLIGHT; s++)
        tx_ring.desc[s] = (struct desc){ (uintptr_t)tx_buffers[s], build_udp_frame(s, guest_mac, host_mac, (u16)s), 0, 0 };
    u64 deadline = start + 10000000000ull;
    while (done < total) {
        if (duration_ns && sent < total && now_ns() - start >= duration_ns) total = sent;
        int added = 0;
        for (u32 s = 0; s < STREAM_IN_FLIGHT && sent < total; s++) {
            if (busy[s]) continue;
            busy[s] = 1;
            vq_add(tx, (u16)s);
            sent++; added = 1;
        }
        if (added) vq_publish(tx);
        while (vq_has_used(tx)) {
            u32 id = vq_take(tx, 0);
            if (id >= STREAM_IN_FLIGHT || !busy[id]) fail("device returned an unknown transmit chain");
            busy[id] = 0; done++;
            deadline = now_ns() + 10000000000ull;
        }
        recycle_rx(rx);
        if (now_ns() > deadline) fail("transmit stream stalled for 10 s");
    }
    return done;
}

/* Whether a received frame (after the header) is the echo reply for `seq`, payload intact. */
int is_echo_reply(const u8 *frame, u32 length, u16 seq) {
    if (length < 14 + 20 + 8 + PAYLOAD || get16(frame + 12) != 0x0800) return 0;
    const u8 *ip = frame + 14, *icmp = ip + (ip[0] & 0xF) * 4;
    if (ip[9] != 1 || (u32)(icmp - frame) + 8 + PAYLOAD > length) return 0;
    if (icmp[0] != 0 || get16(icmp + 4) != 0x5C0E || get16(icmp + 6) != seq) return 0;
    for (int i = 0; i < PAYLOAD; i++) if (icmp[8 + i] != (u8)(seq + i)) return 0;
    return 1;
}

void net_workload(int irq, u64 hold_ns) {
    u64 total = arg("requests", 20000), peer = arg("peer_mac", 0);
    if (!peer) fail("peer_mac=0x<host MAC> is required");
    u8 host_mac[6], guest_mac[6];
    for (int i = 0; i < 6; i++) host_mac[i] = (u8)(peer >> (40 - 8 * i));

    struct virtio_device dev;
    struct virtqueue rx, tx;
    virtio_open(&dev, 0x1041, 0x1000, VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC, 0);
    if (irq) virtio_enable_msix(&dev, MSI_ADDRESS_CPU0, MSI_DATA_DEFAULT);
    virtio_queue(&dev, &rx, 0, &rx_ring, RX_BUFFERS, irq);
    virtio_queue(&dev, &tx, 1, &tx_ring, 2 * STREAM_IN_FLIGHT, irq);
    if (tx.size < STREAM_IN_FLIGHT) fail("transmit queue smaller than 32");
    for (int i = 0; i < 6; i++) guest_mac[i] = MMIO(u8, dev.device_cfg + i);
    virtio_driver_ok(&dev);
    for (u16 i = 0; i < rx.size; i++) {
        rx_ring.desc[i] = (struct desc){ (uintptr_t)rx_buffers[i], BUFFER, DESC_WRITE, 0 };
        vq_add(&rx, i);
    }
    vq_publish(&rx);

    int streaming = arg("stream", 0) != 0;
    u64 duration_ms = arg("duration_ms", 0);
    if (duration_ms > 3600000) fail("duration_ms out of range (0-3600000)");
    u64 duration_ns = duration_ms * 1000000;
    histogram_reset();
    puts_serial("iobench: start\n");
    spin_ns(hold_ns);
    u64 completed = 0, errors = 0, skipped = 0, latency_sum = 0, latency_max = 0;
    rx.kicks = tx.kicks = 0;  /* kicks of the measured loop only, not the first receive buffers' */
    u64 t0 = now_ns();
    if (streaming) completed = stream(&rx, &tx, guest_mac, host_mac, total, duration_ns);
    for (u64 n = 0; !streaming && n < total; n++) {
        if (duration_ns && now_ns() - t0 >= duration_ns) break;
        u16 seq = (u16)n;
        tx_ring.desc[0] = (struct desc){ (uintptr_t)tx_buffers[0], build_echo_request(guest_mac, host_mac, seq), 0, 0 };
        u64 sent = now_ns(), deadline = sent + 100000000;
        vq_add(&tx, 0);
        vq_publish(&tx);
        int answered = 0;
        while (!answered && now_ns() < deadline) {
            int reposted = 0;
            while (vq_has_used(&rx)) {
                u32 length, id = vq_take(&rx, &length);
                if (id >= rx.size || length < HEADER || length > BUFFER) fail("device returned a bad receive buffer");
                if (!answered && is_echo_reply(rx_buffers[id] + HEADER, length - HEADER, seq)) answered = 1; else skipped++;
                vq_add(&rx, (u16)id);
                reposted = 1;
            }
            if (reposted) vq_publish(&rx);
        }
        u64 latency = now_ns() - sent;
        if (answered) {
            completed++;
            histogram_record(latency);
            latency_sum += latency;
            if (latency > latency_max) latency_max = latency;
        } else if (++errors > 100) {
            fail("more than 100 echo requests went unanswered");
        }
        /* The request's buffer comes back before it may be reused. */
        while (!vq_has_used(&tx) && now_ns() < deadline) {}
        if (!vq_has_used(&tx)) fail("transmit buffer not returned");
        if (vq_take(&tx, 0) != 0) fail("device returned an unknown transmit chain");
    }
    u64 elapsed = now_ns() - t0;
    puts_serial("iobench: end\n");
    spin_ns(hold_ns);
    if (!streaming) histogram_print();
    puts_serial(streaming ? "iobench: result test=net-stream" : "iobench: result test=net");
    put_field("irq", (u64)irq); put_field("requests", completed); put_field("errors", errors);
    put_field("skipped", skipped); put_field("kicks", rx.kicks + tx.kicks);
    put_field("ns", elapsed); put_field("iops", elapsed ? completed * 1000000000ull / elapsed : 0);
    put_field("duration_ms", duration_ms);
    if (streaming) put_field("mbit", elapsed ? completed * (14 + 20 + 8 + UDP_PAYLOAD) * 8000ull / elapsed : 0);
    else { put_field("lat_avg_ns", completed ? latency_sum / completed : 0); put_field("lat_max_ns", latency_max); }
    puts_serial("\n");
}
