@testable import Hypervisor
import XCTest

/// Interrupt redirection's pure parts: MSI decoding, which local APICs a destination names, the
/// choice of a target, and when a vCPU counts as running.
final class InterruptRedirectionTests: XCTestCase {
    /// Lowest priority to the logical destination `mask` (flat model), vector 0x41.
    private func lowestPriority(mask: UInt8, vector: UInt32 = 0x41) -> MSIMessage {
        MSIMessage(address: 0xFEE0_0000 | UInt64(mask) << 12 | 1 << 2, data: 1 << 8 | vector)
    }

    private func flat(_ id: UInt32) -> LocalAPICIdentity {
        LocalAPICIdentity(apicID: id, logicalDestination: 1 << (24 + id), flatModel: true, x2APIC: false, enabled: true)
    }

    func testDecodesTheFieldsOfAnMSIMessage() {
        let message = MSIMessage(address: 0xFEE0_300C, data: 0x0000_0141)
        XCTAssertEqual(message.vector, 0x41)
        XCTAssertEqual(message.deliveryMode, 1)
        XCTAssertEqual(message.destinationID, 3)
        XCTAssertTrue(message.isLogical)
        XCTAssertTrue(message.redirectionHint)
        XCTAssertTrue(message.allowsAnyDestinationCPU)
        XCTAssertTrue(message.isInterruptMessage)
        XCTAssertEqual(message.extendedDestinationID, 0)
        let fixed = MSIMessage(address: 0xFEE0_1000, data: 0x0000_8041)  // physical APIC 1, level trigger bit kept
        XCTAssertFalse(fixed.allowsAnyDestinationCPU)
        XCTAssertTrue(MSIMessage(address: 0xFEE0_300C, data: 0x41).allowsAnyDestinationCPU, "fixed with the hint")
        XCTAssertFalse(
            MSIMessage(address: 0xFEE0_300C, data: 0x441).allowsAnyDestinationCPU, "an NMI is never moved, hint or not")
        XCTAssertFalse(MSIMessage(address: 0xFED0_0000, data: 0x141).isInterruptMessage)
        XCTAssertEqual(MSIMessage(address: 0xFEE0_0020, data: 0).extendedDestinationID, 1)

        let moved = message.delivered(toPhysicalAPIC: 1)
        XCTAssertEqual(moved.address, 0xFEE0_1000, "physical mode, no hint, APIC ID 1")
        XCTAssertEqual(moved.data, 0x41, "fixed delivery of the same vector")
        XCTAssertEqual(
            MSIMessage(address: 0xFEE0_0000, data: 0xC141).delivered(toPhysicalAPIC: 2).data, 0xC041,
            "trigger bits kept")
    }

    func testReadsTheIdentityFromTheAPICRegisterPage() {
        var page = [UInt8](repeating: 0, count: 1024)
        func set(_ offset: Int, _ value: UInt32) {
            withUnsafeBytes(of: value.littleEndian) { page.replaceSubrange(offset..<offset + 4, with: $0) }
        }
        set(0x20, 3 << 24)
        set(0xD0, 0x0800_0000)
        set(0xE0, 0xFFFF_FFFF)
        set(0xF0, 0x1FF)
        let identity = page.withUnsafeBytes { LocalAPICIdentity(registers: $0, apicBase: 0xFEE0_0900) }
        XCTAssertEqual(
            identity,
            LocalAPICIdentity(apicID: 3, logicalDestination: 0x0800_0000, flatModel: true, x2APIC: false, enabled: true)
        )
        set(0xF0, 0xFF)  // software-disabled
        XCTAssertFalse(page.withUnsafeBytes { LocalAPICIdentity(registers: $0, apicBase: 0xFEE0_0900) }.enabled)
        XCTAssertTrue(page.withUnsafeBytes { LocalAPICIdentity(registers: $0, apicBase: 0xFEE0_0D00) }.x2APIC)
    }

    func testMatchesDestinationsAsKVMDoes() {
        XCTAssertTrue(flat(0).isDestination(of: lowestPriority(mask: 0x03)))
        XCTAssertTrue(flat(1).isDestination(of: lowestPriority(mask: 0x03)))
        XCTAssertFalse(flat(2).isDestination(of: lowestPriority(mask: 0x03)))
        let cluster = LocalAPICIdentity(
            apicID: 5, logicalDestination: 0x2200_0000, flatModel: false, x2APIC: false, enabled: true)
        XCTAssertTrue(cluster.isDestination(of: lowestPriority(mask: 0x23)), "cluster 2, bit 1")
        XCTAssertFalse(cluster.isDestination(of: lowestPriority(mask: 0x13)), "another cluster")
        let x2 = LocalAPICIdentity(
            apicID: 2, logicalDestination: 0x0000_0004, flatModel: false, x2APIC: true, enabled: true)
        XCTAssertTrue(x2.isDestination(of: lowestPriority(mask: 0x04)))
        XCTAssertFalse(x2.isDestination(of: lowestPriority(mask: 0x03)))
        let physical = MSIMessage(address: 0xFEE0_2000, data: 0x141)
        XCTAssertTrue(flat(2).isDestination(of: physical))
        XCTAssertFalse(flat(1).isDestination(of: physical))
        XCTAssertTrue(flat(7).isDestination(of: MSIMessage(address: 0xFEEF_F000, data: 0x141)), "0xFF broadcasts")
        var disabled = flat(0)
        disabled.enabled = false
        XCTAssertFalse(disabled.isDestination(of: lowestPriority(mask: 0x01)))
        XCTAssertFalse(
            flat(0).isDestination(of: MSIMessage(address: 0xFEE0_1024, data: 0x141)),
            "extended destination IDs are not guessed at")
    }

    func testMovesOnlyAMessageThatLetsThePlatformChooseAndOnlyWithinItsDestination() {
        let apics = (0..<3).map { Optional(flat(UInt32($0))) }
        let message = lowestPriority(mask: 0x03)
        // vCPU 1 halted, 0 running: 0 takes it. vCPU 2 runs but is not in the destination.
        XCTAssertEqual(
            InterruptRedirectionPolicy.target(
                for: message, apics: apics, running: [true, false, true], current: nil, spread: 25), 0)
        XCTAssertEqual(
            InterruptRedirectionPolicy.target(
                for: message, apics: apics, running: [false, true, true], current: nil, spread: 25), 1)
        XCTAssertNil(
            InterruptRedirectionPolicy.target(
                for: message, apics: apics, running: [true, true, false], current: nil, spread: 25),
            "every vCPU of the destination runs: the guest's route")
        XCTAssertNil(
            InterruptRedirectionPolicy.target(
                for: message, apics: apics, running: [false, false, true], current: nil, spread: 25),
            "none runs: KVM wakes the one it picks")
        let fixed = MSIMessage(address: 0xFEE0_3004, data: 0x41)
        XCTAssertNil(
            InterruptRedirectionPolicy.target(
                for: fixed, apics: apics, running: [true, false, true], current: nil, spread: 25),
            "fixed delivery to several CPUs is a multicast, never moved")
        let linux = MSIMessage(address: 0xFEE0_1000, data: 0x41)  // what Linux programs: one CPU, fixed
        XCTAssertNil(
            InterruptRedirectionPolicy.target(
                for: linux, apics: apics, running: [true, false, true], current: nil, spread: 25))
        XCTAssertNil(
            InterruptRedirectionPolicy.target(
                for: message, apics: [apics[0], nil, apics[2]], running: [true, false, true], current: nil, spread: 25),
            "an APIC not read yet is not a candidate, and one candidate leaves nothing to choose")
    }

    func testKeepsACurrentTargetThatStillRunsAndSpreadsNewOnes() {
        let apics = (0..<4).map { Optional(flat(UInt32($0))) }
        let message = lowestPriority(mask: 0x0F)
        let running = [true, true, false, true]
        XCTAssertEqual(
            InterruptRedirectionPolicy.target(for: message, apics: apics, running: running, current: 3, spread: 0), 3)
        XCTAssertEqual(
            InterruptRedirectionPolicy.target(for: message, apics: apics, running: running, current: 2, spread: 0), 0,
            "a current target that stopped running is replaced")
        XCTAssertEqual(
            InterruptRedirectionPolicy.target(for: message, apics: apics, running: running, current: nil, spread: 1), 1)
        XCTAssertEqual(
            InterruptRedirectionPolicy.target(for: message, apics: apics, running: running, current: nil, spread: 5), 3)
    }

    /// The router against a real VM's routing table: a redirection is installed only for the
    /// message it was chosen for, a guest rewrite ends it, and the changes are counted.
    func testRouterInstallsRedirectionsOnlyForTheMessageTheyWereChosenFor() throws {
        let vm = try KVM().createVM()
        try vm.createIRQChip()
        let router = InterruptRouter(vm: vm)
        let route = try router.allocateMSI(eventfd: try EventFD())
        let guest = lowestPriority(mask: 0x03)
        try router.setMSI(gsi: route.gsi, address: guest.address, data: guest.data)
        let moved = InterruptRouter.Redirection(guest: guest, delivered: guest.delivered(toPhysicalAPIC: 0))
        XCTAssertEqual(try router.setRedirections([route.gsi: moved]), .init(retargeted: 1, restored: 0))
        XCTAssertTrue(route.isRedirected)
        XCTAssertEqual(try router.setRedirections([route.gsi: moved]), .init(), "no change, no table update")

        let rewritten = lowestPriority(mask: 0x01)
        try router.setMSI(gsi: route.gsi, address: rewritten.address, data: rewritten.data)
        XCTAssertFalse(route.isRedirected, "the guest's rewrite ends the redirection")
        XCTAssertEqual(try router.setRedirections([route.gsi: moved]), .init(), "chosen for the old message: dropped")
        XCTAssertFalse(route.isRedirected)

        let again = InterruptRouter.Redirection(guest: rewritten, delivered: rewritten.delivered(toPhysicalAPIC: 0))
        XCTAssertEqual(try router.setRedirections([route.gsi: again]), .init(retargeted: 1, restored: 0))
        XCTAssertEqual(try router.setRedirections([:]), .init(retargeted: 0, restored: 1))
        XCTAssertFalse(route.isRedirected)
    }

    func testCountsAVCPUAsStoppedOrRunningOnlyWhenTwoSamplesInARowAgree() {
        var tracker = VCPUActivityTracker()
        let elapsed: UInt64 = 1_000_000
        func sample(_ blocking: Bool, _ wait: UInt64 = 0) -> VCPUActivitySample {
            VCPUActivitySample(blocking: blocking, runQueueWaitNanoseconds: wait)
        }
        XCTAssertEqual(
            tracker.running(after: [sample(false), sample(true)], elapsedNanoseconds: 0), [true, true],
            "no history: running")
        XCTAssertEqual(
            tracker.running(after: [sample(false), sample(true)], elapsedNanoseconds: elapsed), [true, false],
            "halted twice in a row")
        XCTAssertEqual(
            tracker.running(after: [sample(true), sample(false)], elapsedNanoseconds: elapsed), [true, false],
            "one sample changes nothing")
        XCTAssertEqual(
            tracker.running(after: [sample(false), sample(false)], elapsedNanoseconds: elapsed), [true, true],
            "running twice in a row")
        // vCPU 1's thread waited 600 µs of the last 1 ms for a host CPU, twice: descheduled. 400 µs is not.
        XCTAssertEqual(
            tracker.running(after: [sample(false, 400_000), sample(false, 600_000)], elapsedNanoseconds: elapsed),
            [true, true])
        XCTAssertEqual(
            tracker.running(after: [sample(false, 800_000), sample(false, 1_200_000)], elapsedNanoseconds: elapsed),
            [true, false])
        // 600 µs of a 2 ms gap is not half of it; the second such sample makes vCPU 1 running again.
        XCTAssertEqual(
            tracker.running(
                after: [sample(false, 1_200_000), sample(false, 1_800_000)], elapsedNanoseconds: 2 * elapsed),
            [true, false])
        XCTAssertEqual(
            tracker.running(
                after: [sample(false, 1_600_000), sample(false, 2_400_000)], elapsedNanoseconds: 2 * elapsed),
            [true, true])

        var descheduledOnly = VCPUActivityTracker(countsHalts: false)
        for _ in 0..<3 {
            XCTAssertEqual(
                descheduledOnly.running(after: [sample(true), sample(false)], elapsedNanoseconds: elapsed),
                [true, true],
                "halts do not count in the descheduled-only mode")
        }
    }
}
