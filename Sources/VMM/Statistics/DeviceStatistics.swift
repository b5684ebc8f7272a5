import VirtioDevices

/// Per-queue counters of one device, as `--stats-json` writes them.
public struct DeviceStatistics: Encodable, Sendable {
    public struct Queue: Encodable, Sendable {
        public let index: Int
        public let name: String
        public let requests: UInt64
        public let bytes: UInt64
        public let notifications: UInt64
        public let interrupts: UInt64
        public let redirected: UInt64
        public let errors: UInt64
        public let flushes: UInt64
        public let coalesced: UInt64
        public let completionBatches: UInt64
        /// Each request's time in the device (net: a frame's, from its ring or the TAP to the used ring).
        public let latency: LatencySummary
        /// The buckets `latency` comes from, for /metrics' histograms (not in the JSON).
        public let latencyBuckets: LatencyBuckets.Snapshot

        private enum CodingKeys: String, CodingKey {
            case index, name, requests, bytes, notifications, interrupts, redirected, errors, flushes, coalesced
            case completionBatches, latency
        }
    }

    public let name: String
    public let type: String
    public let queues: [Queue]
    public let deviceErrors: UInt64
}
