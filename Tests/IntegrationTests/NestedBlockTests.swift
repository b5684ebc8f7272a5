import Foundation
import XCTest

/// virtio-blk with Linux's own virtio_pci and virtio_blk drivers, in the nested rig: data written
/// through /dev/vda reaches the backing file, a read-only disk refuses writes, and a 2-queue disk
/// spreads requests over both queues of a 2-vCPU guest (whose interrupts redirection leaves
/// alone). Also interrupt redirection under real KVM, with the iobench guest.
final class NestedBlockTests: XCTestCase {

    static let rigRun: Result<(sections: [String: NestedRig.Section], output: String), Error> = Result {
        try Toolchain.requireArtifacts()
        // A deterministic 1 MiB pattern both sides can regenerate: L2 checks the backing file with it.
        let pattern = "i=0; while [ $i -lt 16384 ]; do printf 'sidecore-%054d\\n' $i; i=$((i+1)); done"
        let writeAndVerify = """
            \(pattern) > /tmp/pattern
            dd if=/tmp/pattern of=/dev/vda bs=4096 seek=256 conv=fsync 2>/dev/null && echo guest-write-ok
            echo 3 > /proc/sys/vm/drop_caches
            echo "guest-readback $(dd if=/dev/vda bs=4096 skip=256 count=256 2>/dev/null | md5sum | cut -d' ' -f1)"
            echo "guest-pattern $(md5sum < /tmp/pattern | cut -d' ' -f1)"
            echo "guest-size $(cat /sys/block/vda/size)"
            """
        let readOnly = """
            if dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync 2>/dev/null; then echo ro-write-accepted; else \
            echo ro-write-refused; fi
            echo "ro-read $(dd if=/dev/vda bs=4096 count=1 2>/dev/null | md5sum | cut -d' ' -f1)"
            """
        let multiQueue = """
            echo "mq-queues $(ls /sys/block/vda/mq | wc -l)"
            for cpu in 0 1; do taskset -c $cpu dd if=/dev/vda of=/dev/null bs=4096 count=64 iflag=direct 2>/dev/null; \
            done
            echo mq-done
            """
        let fileSystem = """
            mkdir -p /mnt; mke2fs -q /dev/vda && mount /dev/vda /mnt && echo sidecore-fs > /mnt/file && umount /mnt
            mount /dev/vda /mnt && echo "fs-read $(cat /mnt/file)"
            """
        let noSpace = """
            if dd if=/dev/urandom of=/dev/vda bs=1M count=8 oflag=direct 2>/dev/null; then echo enospc-write-accepted; \
            else echo enospc-write-failed; fi
            dd if=/dev/vda of=/dev/null bs=4096 count=16 iflag=direct 2>/dev/null && echo enospc-device-still-reads
            """
        let null =
            """
            dd if=/dev/vda of=/dev/null bs=1M count=8 iflag=direct 2>/dev/null && echo null-read-ok; echo \"null-size \
            $(cat /sys/block/vda/size)\"
            """
        let script = """
            \(pattern) > /tmp/pattern
            dd if=/dev/zero of=/tmp/disk.img bs=1M count=16 2>/dev/null
            echo "=== begin write"
            hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --disk path=/tmp/disk.img,id=test-disk \
            --cmdline '\(NestedRig.guestCommandLine(running: writeAndVerify))' --stats-json /tmp/write.json
            echo "=== end write status=$?"
            echo "=== begin host-file"
            echo "host-file $(dd if=/tmp/disk.img bs=4096 skip=256 count=256 2>/dev/null | md5sum | cut -d' ' -f1)"
            echo "host-pattern $(md5sum < /tmp/pattern | cut -d' ' -f1)"
            cat /tmp/write.json; echo
            echo "=== end host-file status=0"
            dd if=/dev/urandom of=/tmp/ro.img bs=1M count=4 2>/dev/null
            before=$(md5sum < /tmp/ro.img | cut -d' ' -f1)
            echo "=== begin readonly"
            hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --disk path=/tmp/ro.img,readonly=on \
            --cmdline '\(NestedRig.guestCommandLine(running: readOnly))'
            st=$?
            echo "ro-host-first-block $(dd if=/tmp/ro.img bs=4096 count=1 2>/dev/null | md5sum | cut -d' ' -f1)"
            [ "$before" = "$(md5sum < /tmp/ro.img | cut -d' ' -f1)" ] && echo ro-file-unchanged
            echo "=== end readonly status=$st"
            echo "=== begin multiqueue"
            hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --cpus 2 --disk \
            path=/tmp/disk.img,queues=2 --cmdline '\(NestedRig.guestCommandLine(running: multiQueue))' \
            --stats-json /tmp/mq.json
            st=$?
            cat /tmp/mq.json; echo
            echo "=== end multiqueue status=$st"
            dd if=/dev/zero of=/tmp/fs.img bs=1M count=8 2>/dev/null
            echo "=== begin filesystem"
            hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --disk path=/tmp/fs.img --cmdline \
            '\(NestedRig.guestCommandLine(running: fileSystem))'
            echo "=== end filesystem status=$?"
            mkdir -p /tmp/small && mount -t tmpfs -o size=2m tmpfs /tmp/small && truncate -s 16M /tmp/small/disk.img
            echo "=== begin enospc"
            hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --disk path=/tmp/small/disk.img --cmdline \
            '\(NestedRig.guestCommandLine(running: noSpace))' --stats-json /tmp/enospc.json
            st=$?
            cat /tmp/enospc.json; echo
            echo "=== end enospc status=$st"
            echo "=== begin null"
            hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --disk backend=null,size=64M --cmdline \
            '\(NestedRig.guestCommandLine(running: null))'
            echo "=== end null status=$?"
            for setting in off on; do
                echo "=== begin redirect-$setting"
                hvctl run --kernel /guest/iobench.elf --memory 256 --cpus 2 --disk path=/guest/pattern.img --io-mode \
            notify \
                    --irq-redirect $setting --cmdline 'redirect=1 requests=500 vector=0x41 hold_ms=50' --stats-json \
            /tmp/redirect.json
                st=$?
                cat /tmp/redirect.json; echo
                echo "=== end redirect-$setting status=$st"
            done
            echo "=== begin hostile"
            hvctl run --kernel /guest/iobench.elf --memory 256 --disk path=/guest/pattern.img --cmdline 'hostile=1 \
            hold_ms=20'
            echo "=== end hostile status=$?"
            """
        let patternPath = FileManager.default.temporaryDirectory.appendingPathComponent(
            "pattern-\(UUID().uuidString).img"
        ).path
        try Toolchain.writeIOBenchDisk(to: patternPath, megabytes: 1)
        defer { try? FileManager.default.removeItem(atPath: patternPath) }
        return try NestedRig.run(
            script: script, files: [Toolchain.iobenchGuest: "/guest/iobench.elf", patternPath: "/guest/pattern.img"])
    }

    func section(_ name: String) throws -> NestedRig.Section {
        let run = try Self.rigRun.get()
        return try XCTUnwrap(run.sections[name], "no output for \(name); the rig printed:\n\(run.output.suffix(3000))")
    }

    func testPatternWrittenInTheGuestReadsBackAndReachesTheFile() throws {
        let guest = try section("write")
        XCTAssertEqual(guest.status, 0, guest.output)
        XCTAssertTrue(guest.output.contains("guest-write-ok"), guest.output)
        let pattern = try XCTUnwrap(guest.value("guest-pattern"))
        XCTAssertEqual(guest.value("guest-readback"), pattern, "read back after dropping caches")
        XCTAssertEqual(guest.value("guest-size"), "32768", "16 MiB in 512-byte sectors")
        let host = try section("host-file")
        XCTAssertEqual(host.value("host-file"), host.value("host-pattern"), "the backing file holds the pattern")
        XCTAssertEqual(host.value("host-pattern"), pattern)
    }

    func testStatisticsCountBlockRequests() throws {
        let host = try section("host-file")
        let document = try XCTUnwrap(try host.jsonDocument(), host.output)
        let devices = try XCTUnwrap(document["devices"] as? [[String: Any]])
        XCTAssertEqual(devices.first?["type"] as? String, "virtio-blk")
        let queue = try XCTUnwrap((devices.first?["queues"] as? [[String: Any]])?.first)
        XCTAssertGreaterThan(queue["requests"] as? Int ?? 0, 0)
        XCTAssertGreaterThanOrEqual(queue["bytes"] as? Int ?? 0, 1 << 20 + 1 << 20, "1 MiB written and 1 MiB read back")
        XCTAssertGreaterThan(queue["interrupts"] as? Int ?? 0, 0)
        XCTAssertEqual(queue["errors"] as? Int, 0)
        XCTAssertGreaterThan(queue["flushes"] as? Int ?? 0, 0, "conv=fsync reached the backing file as fdatasync")
    }

    func testFileSystemSurvivesARemount() throws {
        let result = try section("filesystem")
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertEqual(result.value("fs-read"), "sidecore-fs", result.output)
    }

    func testBackingFileOutOfSpaceIsAnIOErrorAndTheVMGoesOn() throws {
        let result = try section("enospc")
        XCTAssertEqual(result.status, 0, "the guest powered off normally\n\(result.output)")
        XCTAssertTrue(result.output.contains("enospc-write-failed"), result.output)
        XCTAssertTrue(result.output.contains("enospc-device-still-reads"), result.output)
        let document = try XCTUnwrap(try result.jsonDocument(), result.output)
        let queue = try XCTUnwrap(
            ((document["devices"] as? [[String: Any]])?.first?["queues"] as? [[String: Any]])?.first)
        XCTAssertGreaterThan(queue["errors"] as? Int ?? 0, 0)
    }

    func testNullBackendCompletesWithoutStorage() throws {
        let result = try section("null")
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("null-read-ok"), result.output)
        XCTAssertEqual(result.value("null-size"), "131072", "64 MiB in sectors")
    }

    func testReadOnlyDiskRefusesWritesAndLeavesTheFileUnchanged() throws {
        let result = try section("readonly")
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("ro-write-refused"), result.output)
        XCTAssertTrue(result.output.contains("ro-file-unchanged"), result.output)
        XCTAssertEqual(result.value("ro-read"), result.value("ro-host-first-block"), "reads still work")
    }

    func testTwoQueuesServeTwoVCPUs() throws {
        let result = try section("multiqueue")
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertEqual(result.value("mq-queues"), "2", result.output)
        XCTAssertTrue(result.output.contains("mq-done"), result.output)
        let document = try XCTUnwrap(try result.jsonDocument(), result.output)
        let queues = try XCTUnwrap(((document["devices"] as? [[String: Any]])?.first?["queues"]) as? [[String: Any]])
        XCTAssertEqual(queues.count, 2)
        for queue in queues {
            XCTAssertGreaterThan(queue["requests"] as? Int ?? 0, 0, "requests on queue \(queue["index"] ?? "?")")
            // Linux gives each vector one CPU (fixed delivery): nothing another vCPU could take.
            XCTAssertEqual(queue["redirected"] as? Int, 0, "queue \(queue["index"] ?? "?")")
        }
        let redirection = try XCTUnwrap(document["irqRedirection"] as? [String: Any], "redirection is on by default")
        XCTAssertEqual(redirection["retargets"] as? Int, 0)
    }

    /// The iobench guest's lowest-priority MSI to both vCPUs (see IOBenchGuestTests), under real
    /// KVM: off, KVM's choice wakes the halted vCPU 1; on, the running vCPU 0 takes them.
    func testRedirectionMovesInterruptsOffAHaltedVCPUUnderRealKVM() throws {
        func result(_ setting: String) throws -> (fields: [String: Int], stats: [String: Any]) {
            let section = try self.section("redirect-\(setting)")
            XCTAssertEqual(section.status, 0, section.output)
            let line = try XCTUnwrap(
                section.output.components(separatedBy: "\n").first { $0.contains("iobench: result") }, section.output)
            var fields: [String: Int] = [:]
            for field in line.split(separator: " ") {
                let parts = field.split(separator: "=")
                if parts.count == 2, let value = Int(parts[1]) { fields[String(parts[0])] = value }
            }
            XCTAssertEqual(fields["requests"], 1000, line)
            XCTAssertEqual(fields["errors"], 0, line)
            return (fields, try XCTUnwrap(try section.jsonDocument(), section.output))
        }
        func redirected(_ stats: [String: Any]) -> Int {
            ((stats["devices"] as? [[String: Any]])?.first?["queues"] as? [[String: Any]])?.first?["redirected"] as? Int
                ?? -1
        }
        let off = try result("off"), on = try result("on")
        XCTAssertEqual(off.fields["halted_cpu0"], 0, "off: KVM's choice for vector 0x41 is vCPU 1")
        XCTAssertGreaterThan(off.fields["halted_cpu1"] ?? 0, 0)
        XCTAssertEqual(redirected(off.stats), 0)
        XCTAssertGreaterThan(
            on.fields["halted_cpu0"] ?? 0, 4 * (on.fields["halted_cpu1"] ?? 0), "on: the running vCPU 0 takes them")
        XCTAssertGreaterThan(redirected(on.stats), 0)
        XCTAssertGreaterThanOrEqual((on.stats["irqRedirection"] as? [String: Any])?["retargets"] as? Int ?? 0, 1)
    }

    /// iobench's misbehaving block driver (see IOBenchGuestTests) under real KVM, where doorbells
    /// are real ioeventfds and MSI-X goes through KVM's routing: every case coped with.
    func testAMisbehavingDriverIsContainedUnderRealKVM() throws {
        let section = try self.section("hostile")
        XCTAssertEqual(section.status, 0, section.output)
        let line = try XCTUnwrap(
            section.output.components(separatedBy: "\n").first { $0.contains("iobench: result") }, section.output)
        for case_ in IOBenchGuestTests.hostileCases + ["uart"] {
            XCTAssertTrue(line.contains(" \(case_)=1"), "\(case_): \(line)")
        }
    }
}
