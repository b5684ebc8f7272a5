import Foundation

/// Builds tiny bzImage files whose 64-bit entry point runs `code`, so Machine's whole boot path
/// (setup header, zero page, long-mode entry, buses) runs on this host's /dev/kvm without Linux.
enum TestKernel {
    /// x86-64 machine code snippets.
    static func out(port: UInt16, value: UInt8) -> [UInt8] {
        // mov dx, port; mov al, value; out dx, al
        [0x66, 0xBA, UInt8(port & 0xFF), UInt8(port >> 8), 0xB0, value, 0xEE]
    }
    static let spin: [UInt8] = [0xEB, 0xFE]  // jmp $
    static let halt: [UInt8] = [0xF4]

    /// A bzImage (boot protocol `version`) whose protected-mode part has `code` at startup_64.
    static func bzImage(code: [UInt8], version: UInt16 = 0x020F, xloadflags: UInt16 = 1) -> [UInt8] {
        var image = [UInt8](repeating: 0, count: 1024 + 0x200 + code.count)
        image[0x1F1] = 1  // setup_sects: setup is 1 + 1 sectors
        image[0x1FE] = 0x55
        image[0x1FF] = 0xAA
        image[0x200] = 0xEB
        image[0x201] = 0x66  // header ends at 0x268
        image.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        put16(&image, 0x206, version)
        image[0x211] = 0x01  // LOADED_HIGH
        put32(&image, 0x22C, 0x37FF_FFFF)  // initrd_addr_max
        put16(&image, 0x236, xloadflags)
        put32(&image, 0x238, 2047)  // cmdline_size
        put32(&image, 0x260, 0x10000)  // init_size
        image.replaceSubrange((1024 + 0x200)..<image.count, with: code)
        return image
    }

    static func put16(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt16) {
        bytes[offset] = UInt8(value & 0xFF)
        bytes[offset + 1] = UInt8(value >> 8)
    }

    static func put32(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt32) {
        put16(&bytes, offset, UInt16(value & 0xFFFF))
        put16(&bytes, offset + 2, UInt16(value >> 16))
    }

    /// Writes `bytes` to a new file in a per-test temporary directory and returns its path.
    static func file(_ bytes: [UInt8], name: String = "kernel") throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sidecore-tests-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let url = directory.appendingPathComponent("\(name)-\(UUID().uuidString)")
        try Data(bytes).write(to: url)
        return url.path
    }
}
