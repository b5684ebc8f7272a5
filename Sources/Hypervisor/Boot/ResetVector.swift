/// Firmware code at the real-mode reset vector (F000:FFF0, physical 0xFFFF0).
///
/// Linux's last-resort restart (`machine_real_restart`, taken e.g. on panic) drops to real mode
/// and jumps to the BIOS reset vector. With no BIOS there, the guest would hang; this stub writes
/// the ACPI reset register instead, so every restart path ends as a reboot in hvctl.
public enum ResetVector {
    public static let address: UInt64 = 0xFFFF0

    static func code() -> [UInt8] {
        let port = PowerControl.resetPort
        return [
            0xB0, PowerControl.resetValue,  // mov al, reset value
            0xBA, UInt8(port & 0xFF), UInt8(port >> 8),  // mov dx, reset port
            0xEE,  // out dx, al
            0xF4,  // hlt
            0xEB, 0xFD,
        ]  // jmp back to hlt
    }

    public static func write(to memory: GuestMemory) throws {
        try memory.write(code(), at: address)
    }
}
