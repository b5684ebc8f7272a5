import CKVM
@testable import Hypervisor
import Synchronization
import XCTest

/// ACPI tables, CPUID topology, guest memory bounds and the bus: pure unit tests.
final class PlatformTests: XCTestCase {
    func testACPITablesHaveValidChecksumsAndDescribeTheMachine() throws {
        let memory = try GuestMemory(ranges: [(0, 2 << 20)])
        let rsdp = try ACPITables.write(to: memory, vcpuCount: 3)
        let rsdpBytes = try memory.read(at: rsdp, count: 36)
        XCTAssertEqual(Array(rsdpBytes[0..<8]), Array("RSD PTR ".utf8))
        XCTAssertEqual(rsdpBytes[0..<20].reduce(0, &+), 0)
        XCTAssertEqual(rsdpBytes.reduce(0, &+), 0)
        let xsdt = try memory.load(UInt64.self, at: rsdp + 24)
        var tables: [String: [UInt8]] = [:]
        func readTable(_ address: UInt64) throws -> [UInt8] {
            let length = Int(try memory.load(UInt32.self, at: address + 4))
            let bytes = try memory.read(at: address, count: length)
            XCTAssertEqual(bytes.reduce(0, &+), 0, "checksum of \(String(decoding: bytes[0..<4], as: UTF8.self))")
            return bytes
        }
        let xsdtBytes = try readTable(xsdt)
        for index in 0..<((xsdtBytes.count - 36) / 8) {
            let address = try memory.load(UInt64.self, at: xsdt + 36 + UInt64(index * 8))
            let bytes = try readTable(address)
            tables[String(decoding: bytes[0..<4], as: UTF8.self)] = bytes
        }
        let fadt = try XCTUnwrap(tables["FACP"])
        XCTAssertEqual(fadt.count, 276)
        XCTAssertNotEqual(LittleEndian.load(UInt32.self, from: fadt, at: 112) & (1 << 20), 0, "hardware-reduced ACPI")
        XCTAssertEqual(
            LittleEndian.load(UInt32.self, from: fadt, at: 112) & (1 << 10), 1 << 10, "reset register supported")
        XCTAssertEqual(LittleEndian.load(UInt64.self, from: fadt, at: 116 + 4), UInt64(PowerControl.resetPort))
        XCTAssertEqual(LittleEndian.load(UInt64.self, from: fadt, at: 244 + 4), UInt64(PowerControl.sleepControlPort))
        let dsdt = try readTable(LittleEndian.load(UInt64.self, from: fadt, at: 140))
        XCTAssertNotNil(dsdt.firstRange(of: Array("_S5_".utf8)))
        XCTAssertNotNil(dsdt.firstRange(of: [0x41, 0xD0, 0x05, 0x01]), "COM1 declared as PNP0501")
        let madt = try XCTUnwrap(tables["APIC"])
        var offset = 44
        var apicIDs: [UInt8] = []
        var ioapics = 0
        while offset < madt.count {
            if madt[offset] == 0 { apicIDs.append(madt[offset + 3]) }
            if madt[offset] == 1 { ioapics += 1 }
            offset += Int(madt[offset + 1])
        }
        XCTAssertEqual(apicIDs, [0, 1, 2])
        XCTAssertEqual(ioapics, 1)
    }

    func testCPUIDTopologyIsConsistentPerVCPU() throws {
        var leaf1 = kvm_cpuid_entry2()
        leaf1.function = 1
        var leaf0 = kvm_cpuid_entry2()
        leaf0.eax = 0xD
        for id in 0..<4 {
            let entries = CPUIDConfiguration.entries(from: [leaf0, leaf1], vcpuID: id, vcpuCount: 4)
            let basic = try XCTUnwrap(entries.first { $0.function == 1 })
            XCTAssertEqual(basic.ebx >> 24, UInt32(id), "initial APIC ID")
            XCTAssertEqual((basic.ebx >> 16) & 0xFF, 4, "logical processors per package")
            XCTAssertNotEqual(basic.ecx & (1 << 31), 0, "hypervisor bit")
            let topology = entries.filter { $0.function == 0xB }.sorted { $0.index < $1.index }
            XCTAssertEqual(topology.map(\.edx), [UInt32](repeating: UInt32(id), count: 3), "x2APIC ID at every level")
            XCTAssertEqual(topology[1].ebx, 4, "cores in the package")
            XCTAssertEqual((topology[1].ecx >> 8) & 0xFF, 2, "level type core")
            XCTAssertEqual(topology[1].eax, 2, "APIC ID shift covering 4 cores")
        }
    }

    func testCPUIDFollowsQEMUWhereTheSupportedListDiffers() throws {
        var leaf0 = kvm_cpuid_entry2()
        leaf0.eax = 0xD
        var leaf1 = kvm_cpuid_entry2()
        leaf1.function = 1
        var emptyCache = kvm_cpuid_entry2()  // AMD's leaf 4: no cache described
        emptyCache.function = 4
        var dataCache = kvm_cpuid_entry2()
        dataCache.function = 4
        dataCache.index = 1
        dataCache.eax = 0x121
        var kvmFeatures = kvm_cpuid_entry2()
        kvmFeatures.function = 0x4000_0001
        kvmFeatures.eax = 0x0100_7EFB
        let supported = [leaf0, leaf1, emptyCache, dataCache, kvmFeatures]
        let entries = CPUIDConfiguration.entries(from: supported, vcpuID: 0, vcpuCount: 2)
        func leaf(_ function: UInt32, _ index: UInt32 = 0) throws -> kvm_cpuid_entry2 {
            try XCTUnwrap(entries.first { $0.function == function && $0.index == index })
        }
        XCTAssertEqual(try leaf(1).ecx & (1 << 24), 0, "no TSC deadline timer unless the LAPIC has it")
        let withTimer = CPUIDConfiguration.entries(from: supported, vcpuID: 0, vcpuCount: 2, tscDeadlineTimer: true)
        XCTAssertEqual((withTimer.first { $0.function == 1 }?.ecx ?? 0) & (1 << 24), 1 << 24, "the TSC deadline timer")
        XCTAssertEqual(try leaf(4).eax, 0, "an empty cache leaf stays empty")
        XCTAssertEqual(try leaf(4, 1).eax, 0x121 | (1 << 26), "cores sharing the package in a real cache leaf")
        XCTAssertEqual(try leaf(0x4000_0001).eax, 0x0100_7AFB, "no async page faults as VM exits (QEMU's default)")
    }

    func testVCPUsStartWithTheMSRsFirmwareLeaves() throws {
        let kvm = try KVM()
        let vm = try kvm.createVM()
        let vcpu = try vm.createVCPU(id: 0)
        try vcpu.setFirmwareMSRs()
        var value: UInt64 = 0
        XCTAssertEqual(ckvm_get_msr(vcpu.fd, 0x2FF, &value), 1)
        XCTAssertEqual(value, 0x806, "MTRRs enabled, write-back by default: Linux keeps PAT on")
        XCTAssertEqual(ckvm_get_msr(vcpu.fd, 0x1A0, &value), 1)
        XCTAssertEqual(value & 1, 1, "fast strings")
    }

    func testGuestRAMStartsOnA2MiBBoundaryAndAsksForHugePages() throws {
        let memory = try GuestMemory(ranges: [(0, 6 << 20), (0x1_0000_0000, 3 << 20)])
        for index in memory.regions.indices {
            XCTAssertEqual(memory.hostAddress(ofRegion: index) % UInt64(2 << 20), 0, "region \(index)")
        }
        // The kernel's record of the mapping that holds region 0: THP-eligible (the "hg" flag).
        let start = memory.hostAddress(ofRegion: 0)
        // Read to the end: /proc files report size 0, which a whole-file read may take at its word.
        let data = try XCTUnwrap(try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/smaps")).readToEnd())
        let smaps = String(decoding: data, as: UTF8.self).components(separatedBy: "\n")
        let header = try XCTUnwrap(
            smaps.firstIndex { line in
                let bounds =
                    line.split(separator: " ").first?.split(separator: "-").compactMap { UInt64($0, radix: 16) } ?? []
                return bounds.count == 2 && bounds[0] <= start && start < bounds[1]
            }, "no mapping holds 0x\(String(start, radix: 16))")
        let flags = try XCTUnwrap(smaps[header...].first { $0.hasPrefix("VmFlags:") })
        XCTAssertTrue(flags.contains(" hg"), "madvise(MADV_HUGEPAGE) took: \(flags)")
    }

    func testGuestMemoryRejectsOutOfRangeAndOverflowingAccesses() throws {
        let memory = try GuestMemory(ranges: [(0, 0x10000), (0x20000, 0x1000)])
        XCTAssertNoThrow(try memory.slice(at: 0xFFF0, length: 0x10))
        XCTAssertThrowsError(try memory.slice(at: 0xFFF0, length: 0x11))
        XCTAssertThrowsError(try memory.slice(at: 0x10000, length: 1), "gap between regions")
        XCTAssertThrowsError(try memory.slice(at: 0xF000, length: 0x12000), "spans two regions")
        XCTAssertThrowsError(try memory.slice(at: UInt64.max - 1, length: 4), "address + length overflows")
        try memory.store(UInt32(0xDEADBEEF), at: 0x20FFC)
        XCTAssertEqual(try memory.load(UInt32.self, at: 0x20FFC), 0xDEADBEEF)
        XCTAssertThrowsError(try memory.load(UInt32.self, at: 0x20FFD))
    }

    func testBusRejectsOverlapsAndRoutesByRange() throws {
        let bus = IOBus()
        let first = RecordingDevice(readValue: 1)
        let second = RecordingDevice(readValue: 2)
        try bus.register(first, base: 0x100, length: 8)
        try bus.register(second, base: 0x108, length: 8)
        XCTAssertThrowsError(try bus.register(RecordingDevice(), base: 0x104, length: 8))
        var byte: UInt8 = 0
        withUnsafeMutableBytes(of: &byte) { bus.read(0x10F, into: $0) }
        XCTAssertEqual(byte, 2)
        withUnsafeBytes(of: UInt8(9)) { bus.write(0x107, data: $0) }
        XCTAssertEqual(first.writes.withLock { $0.map(\.offset) }, [7])
        var wide: UInt32 = 0
        withUnsafeMutableBytes(of: &wide) { bus.read(0x10E, into: $0) }
        XCTAssertEqual(wide, 0xFFFF_FFFF, "an access running past a device's end is unclaimed")
    }
}
