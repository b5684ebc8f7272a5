/// What became of a queue interrupt the device raised.
public enum InterruptDelivery: Sendable, Equatable {
    /// Signalled to the destination the guest programmed.
    case programmedDestination
    /// Signalled through a route the VMM moved to another vCPU (interrupt redirection).
    case redirected
    /// Not signalled now: the vector is masked (kept pending until unmasked) or there is none.
    case held
}
