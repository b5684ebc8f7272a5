@testable import Hypervisor
import XCTest

/// The boot protocol paths against plain guest memory: no KVM needed.
final class LinuxLoaderTests: XCTestCase {
    func memory(mib: UInt64 = 64) throws -> GuestMemory {
        try GuestMemory(ranges: X86Layout.ramRanges(memoryInBytes: mib << 20))
    }

    func load(_ kernel: [UInt8], initrd: [UInt8]? = nil, commandLine: String = "console=ttyS0", mib: UInt64 = 64) throws
        -> (LoadedKernel, GuestMemory)
    {
        let memory = try memory(mib: mib)
        let kernelPath = try TestKernel.file(kernel)
        let initrdPath = try initrd.map { try TestKernel.file($0, name: "initrd") }
        let loaded = try LinuxLoader.load(
            LinuxBootConfiguration(kernelPath: kernelPath, initrdPath: initrdPath, commandLine: commandLine),
            into: memory, rsdpAddress: X86Layout.acpiTablesAddress)
        return (loaded, memory)
    }

    func testBzImageZeroPage() throws {
        let initrd = [UInt8](repeating: 0xA5, count: 10_000)
        let (kernel, memory) = try load(
            TestKernel.bzImage(code: TestKernel.halt), initrd: initrd, commandLine: "quiet root=x")
        XCTAssertEqual(kernel.format, .bzImage)
        XCTAssertEqual(kernel.entryAddress, 0x100200)
        let zeroPage = kernel.bootParametersAddress
        XCTAssertEqual(try memory.load(UInt8.self, at: zeroPage + 0x210), 0xFF, "type_of_loader")
        XCTAssertEqual(try memory.load(UInt8.self, at: zeroPage + 0x211) & 0x81, 0x81, "LOADED_HIGH | CAN_USE_HEAP")
        XCTAssertEqual(try memory.load(UInt32.self, at: zeroPage + 0x202), 0x5372_6448, "HdrS copied")
        let commandLine = UInt64(try memory.load(UInt32.self, at: zeroPage + 0x228))
        XCTAssertEqual(try memory.read(at: commandLine, count: 13), Array("quiet root=x\0".utf8))
        let initrdAddress = UInt64(try memory.load(UInt32.self, at: zeroPage + 0x218))
        XCTAssertEqual(initrdAddress, kernel.initrdAddress)
        XCTAssertEqual(initrdAddress % 4096, 0)
        XCTAssertEqual(try memory.load(UInt32.self, at: zeroPage + 0x21C), 10_000)
        XCTAssertEqual(try memory.read(at: initrdAddress, count: initrd.count), initrd)
        XCTAssertEqual(try memory.load(UInt64.self, at: zeroPage + 0x70), X86Layout.acpiTablesAddress, "acpi_rsdp_addr")
        let e820Count = Int(try memory.load(UInt8.self, at: zeroPage + 0x1E8))
        XCTAssertEqual(e820Count, E820Entry.map(for: memory).count)
        let lastRAM = zeroPage + 0x2D0 + UInt64((e820Count - 1) * 20)
        XCTAssertEqual(
            try memory.load(UInt64.self, at: lastRAM) + (try memory.load(UInt64.self, at: lastRAM + 8)), 64 << 20)
        XCTAssertEqual(try memory.read(at: 0x100200, count: 1), TestKernel.halt, "protected-mode kernel at 1 MiB")
    }

    func testPVHStartInfo() throws {
        let elf = TestELF.vmlinux(loadAddress: 0x200000, code: TestKernel.halt, pvhEntry: 0x200000)
        let initrd = [UInt8](repeating: 0x5A, count: 5000)
        let (kernel, memory) = try load(elf, initrd: initrd, commandLine: "console=ttyS0")
        XCTAssertEqual(kernel.format, .pvh)
        XCTAssertEqual(kernel.entryAddress, 0x200000)
        let info = kernel.bootParametersAddress
        XCTAssertEqual(try memory.load(UInt32.self, at: info), 0x336E_C578, "hvm_start_info magic")
        XCTAssertEqual(try memory.load(UInt32.self, at: info + 4), 1, "version")
        XCTAssertEqual(try memory.load(UInt32.self, at: info + 12), 1, "nr_modules")
        let module = try memory.load(UInt64.self, at: info + 16)
        XCTAssertEqual(try memory.load(UInt64.self, at: module), kernel.initrdAddress)
        XCTAssertEqual(try memory.load(UInt64.self, at: module + 8), 5000)
        XCTAssertEqual(try memory.read(at: kernel.initrdAddress!, count: 5000), initrd)
        XCTAssertEqual(try memory.load(UInt64.self, at: info + 32), X86Layout.acpiTablesAddress, "rsdp_paddr")
        XCTAssertEqual(Int(try memory.load(UInt32.self, at: info + 48)), E820Entry.map(for: memory).count)
        XCTAssertEqual(try memory.read(at: 0x200000, count: 1), TestKernel.halt)
    }

    func bootError(_ kernel: [UInt8], initrd: [UInt8]? = nil, commandLine: String = "", mib: UInt64 = 64) -> BootError?
    {
        do {
            _ = try load(kernel, initrd: initrd, commandLine: commandLine, mib: mib)
            return nil
        } catch {
            return error as? BootError
        }
    }

    func testNeitherBzImageNorELFIsRejected() {
        guard case .notAKernel? = bootError(Array("#!/bin/sh\n".utf8) + [UInt8](repeating: 0, count: 1000)) else {
            return XCTFail("a shell script is not a kernel")
        }
        XCTAssertTrue(BootError.notAKernel(path: "/x/y").description.contains("/x/y"))
    }

    func testOldBootProtocolIsRejected() {
        guard
            case .bootProtocolTooOld(_, let version)? = bootError(
                TestKernel.bzImage(code: TestKernel.halt, version: 0x0204))
        else {
            return XCTFail("protocol 2.04 accepted")
        }
        XCTAssertEqual(version, 0x0204)
        XCTAssertTrue(BootError.bootProtocolTooOld(path: "k", version: 0x0204).description.contains("2.04"))
        guard case .bootProtocolTooOld? = bootError(TestKernel.bzImage(code: TestKernel.halt, xloadflags: 0)) else {
            return XCTFail("a kernel without a 64-bit entry point was accepted")
        }
    }

    func testELFWithoutPVHNoteIsRejected() {
        guard
            case .noPVHEntry? = bootError(TestELF.vmlinux(loadAddress: 0x200000, code: TestKernel.halt, pvhEntry: nil))
        else {
            return XCTFail("ELF without PVH note accepted")
        }
    }

    func testInitrdThatDoesNotFitIsRejected() {
        guard
            case .initrdDoesNotFit(_, let size, _)? = bootError(
                TestKernel.bzImage(code: TestKernel.halt), initrd: [UInt8](repeating: 1, count: 3 << 20), mib: 2)
        else { return XCTFail("3 MiB initrd accepted in 2 MiB of RAM") }
        XCTAssertEqual(size, 3 << 20)
    }

    func testKernelThatDoesNotFitIsRejected() {
        guard
            case .kernelDoesNotFit? = bootError(
                TestELF.vmlinux(loadAddress: 0x3000000, code: TestKernel.halt, pvhEntry: 0x3000000), mib: 16)
        else {
            return XCTFail("kernel loaded above RAM")
        }
        guard case .kernelDoesNotFit? = bootError(TestKernel.bzImage(code: TestKernel.halt), mib: 1) else {
            return XCTFail("bzImage accepted in 1 MiB of RAM")
        }
    }

    func testOverlongCommandLineIsRejected() {
        guard
            case .commandLineTooLong(let length, let limit)? = bootError(
                TestKernel.bzImage(code: TestKernel.halt), commandLine: String(repeating: "a", count: 3000))
        else { return XCTFail("3000-byte command line accepted") }
        XCTAssertEqual(length, 3000)
        XCTAssertEqual(limit, 2047)
    }

    func testMissingFileIsUnreadable() throws {
        let memory = try memory()
        XCTAssertThrowsError(
            try LinuxLoader.load(
                LinuxBootConfiguration(kernelPath: "/nonexistent/bzImage", commandLine: ""), into: memory,
                rsdpAddress: 0)
        ) { error in
            XCTAssertEqual(error as? BootError, .unreadable(path: "/nonexistent/bzImage", errno: ENOENT))
        }
        XCTAssertThrowsError(
            try LinuxLoader.load(
                LinuxBootConfiguration(kernelPath: "/tmp", commandLine: ""), into: memory, rsdpAddress: 0)
        ) { error in
            XCTAssertEqual(error as? BootError, .unreadable(path: "/tmp", errno: EISDIR))
        }
    }
}

/// Builds a minimal x86-64 ELF vmlinux: one PT_LOAD and, optionally, a PT_NOTE with Xen's PVH entry.
enum TestELF {
    static func vmlinux(loadAddress: UInt64, code: [UInt8], pvhEntry: UInt32?) -> [UInt8] {
        var note: [UInt8] = []
        if let pvhEntry {
            note =
                LittleEndian.bytes(UInt32(4)) + LittleEndian.bytes(UInt32(4)) + LittleEndian.bytes(UInt32(18))
                + Array("Xen\0".utf8) + LittleEndian.bytes(pvhEntry)
        }
        let headerCount = note.isEmpty ? 1 : 2
        let codeOffset = UInt64(64 + 56 * headerCount)
        let noteOffset = codeOffset + UInt64(code.count)
        var elf: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        elf +=
            LittleEndian.bytes(UInt16(2)) + LittleEndian.bytes(UInt16(62)) + LittleEndian.bytes(UInt32(1))
            + LittleEndian.bytes(loadAddress) + LittleEndian.bytes(UInt64(64)) + LittleEndian.bytes(UInt64(0))
        elf +=
            LittleEndian.bytes(UInt32(0)) + LittleEndian.bytes(UInt16(64)) + LittleEndian.bytes(UInt16(56))
            + LittleEndian.bytes(UInt16(headerCount)) + LittleEndian.bytes(UInt16(64)) + LittleEndian.bytes(UInt16(0))
            + LittleEndian.bytes(UInt16(0))
        func programHeader(type: UInt32, offset: UInt64, address: UInt64, size: UInt64) -> [UInt8] {
            LittleEndian.bytes(type) + LittleEndian.bytes(UInt32(5)) + LittleEndian.bytes(offset)
                + LittleEndian.bytes(address) + LittleEndian.bytes(address) + LittleEndian.bytes(size)
                + LittleEndian.bytes(size) + LittleEndian.bytes(UInt64(4))
        }
        elf += programHeader(type: 1, offset: codeOffset, address: loadAddress, size: UInt64(code.count))
        if !note.isEmpty { elf += programHeader(type: 4, offset: noteOffset, address: 0, size: UInt64(note.count)) }
        return elf + code + note
    }

}
