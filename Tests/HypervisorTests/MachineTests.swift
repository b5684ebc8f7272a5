import Glibc
import Hypervisor
import Synchronization
import TestSupport
import XCTest

/// Boots tiny kernels through the full Machine on this host's /dev/kvm.
final class MachineTests: XCTestCase {
    func boot(_ code: [UInt8], cpus: Int = 1, memoryInMiB: UInt64 = 64) throws -> (
        exit: MachineExit, console: [UInt8], machine: Machine
    ) {
        let path = try TestKernel.file(TestKernel.bzImage(code: code))
        let console = Lock<[UInt8]>([])
        let machine = try Machine(
            configuration: MachineConfiguration(
                boot: LinuxBootConfiguration(kernelPath: path, commandLine: "console=ttyS0"),
                vcpuCount: cpus, memoryInBytes: memoryInMiB << 20),
            kvm: try KVM(), consoleOutput: { byte in console.withLock { $0.append(byte) } })
        let exit = try machine.run()
        return (exit, console.withLock { $0 }, machine)
    }

    func testACPISleepControlPowersOff() throws {
        let result = try boot(TestKernel.out(port: 0x600, value: 0x34) + TestKernel.spin)
        XCTAssertEqual(result.exit, .powerOff)
    }

    func testACPIResetRegisterReboots() throws {
        let result = try boot(TestKernel.out(port: 0x604, value: 0x06) + TestKernel.spin)
        XCTAssertEqual(result.exit, .reboot)
    }

    func testI8042ResetReboots() throws {
        let result = try boot(TestKernel.out(port: 0x64, value: 0xFE) + TestKernel.spin)
        XCTAssertEqual(result.exit, .reboot)
    }
}

extension MachineTests {
    func testSerialTransmitReachesTheConsole() throws {
        let code =
            TestKernel.out(port: 0x3F8, value: 0x4F) + TestKernel.out(port: 0x3F8, value: 0x4B)
            + TestKernel.out(port: 0x600, value: 0x34) + TestKernel.spin
        let result = try boot(code)
        XCTAssertEqual(result.exit, .powerOff)
        XCTAssertEqual(result.console, Array("OK".utf8))
    }

    func testStopRequestEndsAMachineWithWaitingAPs() throws {
        // The boot vCPU spins; the AP waits for a SIPI inside KVM. Both must stop on request.
        let path = try TestKernel.file(TestKernel.bzImage(code: TestKernel.spin))
        let machine = try Machine(
            configuration: MachineConfiguration(
                boot: LinuxBootConfiguration(kernelPath: path, commandLine: ""), vcpuCount: 2, memoryInBytes: 64 << 20),
            kvm: try KVM(), consoleOutput: { _ in })
        let thread = try HostThread(name: "stopper") {
            // Stop once the boot vCPU has been in the guest (the host's timer takes it out and back).
            XCTAssertTrue(eventually { ((try? machine.vcpuStatistics())?[0]["exits"] ?? 0) >= 2 }, "vCPU 0 runs")
            machine.requestExit(.stopped(signal: SIGTERM))
        }
        XCTAssertEqual(try machine.run(), .stopped(signal: SIGTERM))
        thread.join()
        let stats = try machine.vcpuStatistics()
        XCTAssertEqual(stats.count, 2)
        XCTAssertGreaterThan(stats[0]["exits"] ?? 0, 0)
    }

    func testTooManyVCPUsIsAConfigurationError() throws {
        let path = try TestKernel.file(TestKernel.bzImage(code: TestKernel.spin))
        let kvm = try KVM()
        XCTAssertThrowsError(
            try Machine(
                configuration: MachineConfiguration(
                    boot: LinuxBootConfiguration(kernelPath: path, commandLine: ""),
                    vcpuCount: kvm.maxVCPUs + 1, memoryInBytes: 64 << 20),
                kvm: kvm, consoleOutput: { _ in })
        ) { error in
            XCTAssertEqual((error as? ConfigurationError)?.field, .vcpuCount, "\(error)")
            XCTAssertEqual((error as? ConfigurationError)?.value, "\(kvm.maxVCPUs + 1)")
        }
    }
}
