import Hypervisor
import CKVM
import Glibc
@testable import Hypervisor
import Synchronization
import TestSupport
import XCTest

/// Records port or MMIO accesses and answers reads with a fixed byte.
final class RecordingDevice: BusDevice, Sendable {
    let writes = Lock<[(offset: UInt64, value: UInt8)]>([])
    let readValue: UInt8
    init(readValue: UInt8 = 0) { self.readValue = readValue }

    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: readValue)
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        writes.withLock { $0.append((offset, data[0])) }
    }

    var writtenValues: [UInt8] { writes.withLock { $0.map(\.value) } }
}

/// Drives one vCPU without an in-kernel irqchip, with small 64-bit guest code at 1 MiB.
final class VCPURunLoopTests: XCTestCase {
    static let codeAddress: UInt64 = 0x100000

    struct Rig {
        let vm: VirtualMachine
        let memory: GuestMemory
        let vcpu: VCPU
        let loop: VCPURunLoop
    }

    func makeRig(code: [UInt8], configure: (inout kvm_sregs) -> Void = { _ in }) throws -> Rig {
        let kvm = try KVM()
        let vm = try kvm.createVM()
        let memory = try GuestMemory(ranges: [(0, 4 << 20)])
        try vm.map(memory)
        try memory.write(code, at: Self.codeAddress)
        let vcpu = try vm.createVCPU(id: 0)
        try vcpu.setCPUID(CPUIDConfiguration.entries(from: try kvm.supportedCPUID(), vcpuID: 0, vcpuCount: 1))
        try BootCPUState.enterLongMode(vcpu, memory: memory, entry: Self.codeAddress, zeroPage: 0)
        var sregs = try vcpu.specialRegisters()
        configure(&sregs)
        try vcpu.setSpecialRegisters(sregs)
        return Rig(
            vm: vm, memory: memory, vcpu: vcpu, loop: VCPURunLoop(vcpu: vcpu, portBus: IOBus(), mmioBus: IOBus()))
    }

    func testPortIOIsDispatchedToTheBusAndHLTStopsTheLoop() throws {
        // in al, 0x81 ; add al, 1 ; out 0x80, al ; mov al, 7 ; out 0x80, al ; hlt
        let code: [UInt8] = [0xE4, 0x81, 0x04, 0x01, 0xE6, 0x80, 0xB0, 0x07, 0xE6, 0x80, 0xF4]
        let rig = try makeRig(code: code)
        let device = RecordingDevice(readValue: 0x41)
        try rig.loop.portBus.register(device, base: 0x80, length: 2)
        let stats = try rig.vcpu.statisticsReader()
        XCTAssertEqual(try rig.loop.run(until: { false }), .halted)
        XCTAssertEqual(device.writtenValues, [0x42, 0x07])
        let values = try stats.read()
        // Under PVM the emulated ring-0 port accesses count in `exits`, not `io_exits`.
        XCTAssertGreaterThanOrEqual(values["exits"] ?? 0, 4, "three port accesses and the HLT each exit")
        XCTAssertEqual(values["halt_exits"], 1)
    }

    func testTheRunLoopRecordsEveryExitToUserspace() throws {
        // mov al, 0x42 ; out 0x80, al ; mov rax, 0xD0000000 ; mov dword [rax], 0x11223344 ; hlt
        let code: [UInt8] = [
            0xB0, 0x42, 0xE6, 0x80, 0x48, 0xB8, 0x00, 0x00, 0x00, 0xD0, 0, 0, 0, 0,
            0xC7, 0x00, 0x44, 0x33, 0x22, 0x11, 0xF4,
        ]
        let rig = try makeRig(code: code)
        try rig.loop.portBus.register(RecordingDevice(), base: 0x80, length: 1)
        try rig.loop.mmioBus.register(RecordingDevice(), base: 0xD000_0000, length: 0x1000)
        var history = ExitHistory()
        XCTAssertEqual(try rig.loop.run(until: { false }, history: &history), .halted)
        let exits = history.entries
        XCTAssertEqual(exits.map(\.reason), [UInt32(KVM_EXIT_IO), UInt32(KVM_EXIT_MMIO), UInt32(KVM_EXIT_HLT)])
        XCTAssertEqual(exits[0].address, 0x80)
        XCTAssertEqual(exits[0].value, 0x42)
        XCTAssertTrue(exits[0].isWrite)
        XCTAssertEqual(exits[1].address, 0xD000_0000)
        XCTAssertEqual(exits[1].size, 4)
        XCTAssertEqual(exits[1].value, 0x1122_3344)
        let report = VCPUStateReport.capture(rig.vcpu, history: history)
        XCTAssertTrue(report.lines[0].hasPrefix("vcpu0: "), report.lines.joined(separator: "\n"))
        XCTAssertTrue(report.lines.contains { $0.contains("RIP 0x") }, report.lines.joined(separator: "\n"))
        XCTAssertTrue(
            report.lines.contains { $0.contains("mmio write 0xd0000000 size 4 = 0x11223344") },
            report.lines.joined(separator: "\n"))
    }

    func testMMIOIsDispatchedToTheBus() throws {
        // mov rax, 0xD0000000 ; mov byte [rax], 0x5A ; mov bl, [rax+1] ; mov al, bl ; out 0x80, al ; hlt
        let code: [UInt8] = [
            0x48, 0xB8, 0x00, 0x00, 0x00, 0xD0, 0, 0, 0, 0, 0xC6, 0x00, 0x5A, 0x8A, 0x58, 0x01,
            0x88, 0xD8, 0xE6, 0x80, 0xF4,
        ]
        let rig = try makeRig(code: code)
        let mmio = RecordingDevice(readValue: 0x99)
        let port = RecordingDevice()
        try rig.loop.mmioBus.register(mmio, base: 0xD000_0000, length: 0x1000)
        try rig.loop.portBus.register(port, base: 0x80, length: 1)
        let stats = try rig.vcpu.statisticsReader()
        XCTAssertEqual(try rig.loop.run(until: { false }), .halted)
        XCTAssertEqual(mmio.writes.withLock { $0.map(\.offset) }, [0])
        XCTAssertEqual(mmio.writtenValues, [0x5A])
        XCTAssertEqual(port.writtenValues, [0x99], "the MMIO read's value reached the guest")
        XCTAssertGreaterThanOrEqual(try stats.read()["mmio_exits"] ?? 0, 2)
    }

    func testUnclaimedPortsReadAsAllOnes() throws {
        // in al, 0x90 ; out 0x80, al ; hlt
        let rig = try makeRig(code: [0xE4, 0x90, 0xE6, 0x80, 0xF4])
        let port = RecordingDevice()
        try rig.loop.portBus.register(port, base: 0x80, length: 1)
        XCTAssertEqual(try rig.loop.run(until: { false }), .halted)
        XCTAssertEqual(port.writtenValues, [0xFF])
    }

    func testExceptionWithoutIDTTripleFaultsIntoShutdown() throws {
        let rig = try makeRig(code: [0x0F, 0x0B]) { sregs in  // ud2
            sregs.idt.base = 0
            sregs.idt.limit = 0
        }
        XCTAssertEqual(try rig.loop.run(until: { false }), .shutdown)
        XCTAssertEqual(Machine.machineExit(for: .shutdown, vcpu: 0), .reboot)
    }

    func testInstructionKVMCannotEmulateIsAnInternalError() throws {
        // xrstor [rax] with rax = 0x2000. Under PVM, guest ring 0 is emulated and the emulator lacks
        // xrstor: KVM_EXIT_INTERNAL_ERROR (emulation). With hardware virtualization, CR4.OSXSAVE is
        // clear so it raises #UD and, with no IDT, triple faults.
        let code: [UInt8] = [0x48, 0xC7, 0xC0, 0x00, 0x20, 0x00, 0x00, 0x0F, 0xAE, 0x28, 0xF4]
        let rig = try makeRig(code: code) { sregs in
            sregs.idt.base = 0
            sregs.idt.limit = 0
        }
        let exit = try rig.loop.run(until: { false })
        if access("/sys/module/kvm_pvm", F_OK) == 0 {
            XCTAssertEqual(exit, .internalError(suberror: UInt32(KVM_INTERNAL_ERROR_EMULATION)))
            guard case .failed(let reason)? = Machine.machineExit(for: exit, vcpu: 0) else {
                return XCTFail("not a failure")
            }
            XCTAssertTrue(reason.contains("emulation failure"), reason)
        } else {
            XCTAssertEqual(exit, .shutdown)
        }
    }

    func testKickStopsASpinningVCPU() throws {
        let rig = try makeRig(code: TestKernel.spin)
        let stop = Atomic<Bool>(false)
        let result = Lock<VCPUExit?>(nil)
        VCPUKickSignal.install()
        // Made before the run: a vCPU ioctl waits for KVM_RUN to return; reading the stats fd does not.
        let statistics = try rig.vcpu.statisticsReader()
        let thread = try HostThread(name: "vcpu-test") {
            let exit = try? rig.loop.run(until: { stop.load(ordering: .acquiring) })
            result.withLock { $0 = exit }
        }
        // The host's timer takes the spinning guest out of KVM_RUN and back in: the guest has run.
        XCTAssertTrue(eventually { ((try? statistics.read())?["exits"] ?? 0) >= 2 }, "the guest runs")
        XCTAssertNil(result.withLock { $0 }, "the guest spins until kicked")
        stop.store(true, ordering: .releasing)
        rig.vcpu.requestImmediateExit(true)
        thread.kick()
        thread.join()
        XCTAssertEqual(result.withLock { $0 }, .stopRequested)
        let stats = try rig.vcpu.statisticsReader().read()
        XCTAssertGreaterThanOrEqual(stats["signal_exits"] ?? 0, 1, "KVM counted the kick as a signal exit")
    }
}

extension VCPURunLoopTests {
    func testResetVectorStubWritesTheResetRegister() throws {
        let kvm = try KVM()
        let vm = try kvm.createVM()
        let memory = try GuestMemory(ranges: [(0, 2 << 20)])
        try vm.map(memory)
        try ResetVector.write(to: memory)
        let vcpu = try vm.createVCPU(id: 0)
        // Real mode at F000:FFF0, where Linux's machine_real_restart jumps.
        var sregs = try vcpu.specialRegisters()
        sregs.cs.selector = 0xF000
        sregs.cs.base = 0xF0000
        try vcpu.setSpecialRegisters(sregs)
        var regs = try vcpu.registers()
        regs.rip = 0xFFF0
        try vcpu.setRegisters(regs)
        let events = Lock<[PowerControl.Event]>([])
        let power = PowerControl { event in events.withLock { $0.append(event) } }
        let loop = VCPURunLoop(vcpu: vcpu, portBus: IOBus(), mmioBus: IOBus())
        try loop.portBus.register(power.acpiRegisters, base: UInt64(PowerControl.sleepControlPort), length: 8)
        XCTAssertEqual(try loop.run(until: { false }), .halted)
        XCTAssertEqual(events.withLock { $0 }, [.reset])
    }
}
