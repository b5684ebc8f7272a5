import Foundation

/// Whether `condition` holds within `seconds`, checked every millisecond: how tests wait for an
/// event on another thread (a thread starting, a guest running) without a fixed sleep.
public func eventually(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() > deadline { return false }
        usleep(1_000)
    }
    return true
}
