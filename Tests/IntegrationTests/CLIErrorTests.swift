import Foundation
import XCTest

/// Bad input to `hvctl run`: one error line naming the input, a non-zero exit, nothing left behind.
final class CLIErrorTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        try Toolchain.requireArtifacts()
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("hvctl-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    var bzImage: String { Toolchain.guestImages.appendingPathComponent("bzImage").path }

    func assertRejected(
        _ arguments: [String], mentions expected: [String], file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let result = try Toolchain.run(Toolchain.hvctl, arguments)
        XCTAssertNotEqual(result.status, 0, "exit status", file: file, line: line)
        let lines = result.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "exactly one error line, got: \(result.stderr)", file: file, line: line)
        XCTAssertTrue(result.stderr.hasPrefix("hvctl: "), result.stderr, file: file, line: line)
        for word in expected {
            XCTAssertTrue(
                result.stderr.contains(word), "'\(word)' missing from: \(result.stderr)", file: file, line: line)
        }
        XCTAssertFalse(result.stderr.contains("Fatal error"), file: file, line: line)
        XCTAssertEqual(result.stdout, "", "no guest output", file: file, line: line)
    }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = scratch.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    func testMissingKernel() throws {
        try assertRejected(
            ["run", "--kernel", "/nonexistent/vmlinuz"], mentions: ["/nonexistent/vmlinuz", "No such file"])
    }

    func testMissingInitrd() throws {
        try assertRejected(
            ["run", "--kernel", bzImage, "--initrd", "/nonexistent/initrd"], mentions: ["/nonexistent/initrd"])
    }

    func testUnreadableInitrd() throws {
        try assertRejected(
            ["run", "--kernel", bzImage, "--initrd", scratch.path], mentions: [scratch.path, "directory"])
    }

    func testNotAKernel() throws {
        let path = try write("notes.txt", Array("hello, world\n".utf8))
        try assertRejected(["run", "--kernel", path], mentions: [path, "neither a bzImage nor an x86-64 ELF"])
    }

    func testBootProtocolTooOld() throws {
        var image = Array(try Data(contentsOf: URL(fileURLWithPath: bzImage)))
        image[0x206] = 0x04  // boot protocol 2.04
        let path = try write("old-bzImage", image)
        try assertRejected(["run", "--kernel", path], mentions: [path, "2.04", "2.12"])
    }

    func testInitrdDoesNotFit() throws {
        let initrd = try write("big-initrd", [UInt8](repeating: 0, count: 60 << 20))
        try assertRejected(
            ["run", "--kernel", bzImage, "--initrd", initrd, "--memory", "96"],
            mentions: [initrd, "does not fit", "--memory"])
    }

    func testMemoryTooSmallForKernel() throws {
        try assertRejected(["run", "--kernel", bzImage, "--memory", "8"], mentions: [bzImage, "--memory"])
    }

    func testZeroOrExcessiveCPUs() throws {
        try assertRejected(["run", "--kernel", bzImage, "--cpus", "0"], mentions: ["--cpus 0"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--cpus", "100000"], mentions: ["--cpus 100000", "allows 1 to"])
    }

    func testZeroMemory() throws {
        try assertRejected(["run", "--kernel", bzImage, "--memory", "0"], mentions: ["--memory 0"])
    }

    func testUnknownFlag() throws {
        try assertRejected(["run", "--kernel", bzImage, "--frobnicate"], mentions: ["--frobnicate"])
    }

    func testStatsJSONInUnwritableDirectoryIsRejectedBeforeBoot() throws {
        try assertRejected(
            ["run", "--kernel", bzImage, "--stats-json", "/nonexistent/dir/stats.json"],
            mentions: ["/nonexistent/dir/stats.json"])
    }

    func testStatsJSONIsNotCreatedWhenTheKernelIsBad() throws {
        let stats = scratch.appendingPathComponent("stats.json").path
        try assertRejected(["run", "--kernel", "/nonexistent/k", "--stats-json", stats], mentions: ["/nonexistent/k"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: stats), "nothing left behind")
    }

    func testBadDiskOptions() throws {
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=/nonexistent/disk.img"],
            mentions: ["/nonexistent/disk.img", "No such file"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=\(scratch.path)"], mentions: [scratch.path, "directory"])
        try assertRejected(["run", "--kernel", bzImage, "--disk", "path=x,queues=0"], mentions: ["queues"])
        try assertRejected(["run", "--kernel", bzImage, "--disk", "path=x,colour=blue"], mentions: ["colour"])
        try assertRejected(["run", "--kernel", bzImage, "--disk", "backend=null"], mentions: ["size"])
        try assertRejected(["run", "--kernel", bzImage, "--disk", "readonly=maybe,path=x"], mentions: ["readonly"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=x,queues=2,path=y"], mentions: ["path is given twice"])
        try assertRejected(["run", "--kernel", bzImage, "--disk", "path=x,"], mentions: ["is not key=value"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=x,queues=2,num_queues=2"],
            mentions: ["queues and num_queues are the same option"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=x,queue_size=100"],
            mentions: ["--disk queue_size=100", "power of two from 2 to 1024"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=x,queue_size=2048"], mentions: ["queue_size=2048"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "backend=null,size=1000"],
            mentions: ["--disk backend=null,size=1000", "not a multiple of 512"])
    }

    func testBadNetOptions() throws {
        try assertRejected(["run", "--kernel", bzImage, "--net", "mac=52:54:00:00:00:01"], mentions: ["tap=NAME"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--net", "tap=t0,mac=01:00:00:00:00:01"],
            mentions: ["01:00:00:00:00:01", "unicast"])
        try assertRejected(["run", "--kernel", bzImage, "--net", "tap=t0,queues=99"], mentions: ["queues"])
        try assertRejected(["run", "--kernel", bzImage, "--net", "tap=this-name-is-too-long"], mentions: ["15 bytes"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--net", "tap=t0,queues=2,rss=maybe"], mentions: ["rss", "on or off"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--net", "tap=t0,mac=52:54:00:12:34:56:zz"],
            mentions: ["52:54:00:12:34:56:zz", "unicast MAC"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--net", "tap=t0,mac=52:54:00:12:34:+6"], mentions: ["52:54:00:12:34:+6"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--net", "tap=t0,mac=52:54:00:12:34:56:78"],
            mentions: ["52:54:00:12:34:56:78", "unicast MAC"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--net", "tap=t0", "--net", "tap=t0,mac=52:54:00:12:34:57"],
            mentions: ["--net tap=t0,mac=52:54:00:12:34:57", "TAP t0 serves another --net"])
        try assertRejected(["run", "--kernel", bzImage, "--net", "tap=t0,tap=t1"], mentions: ["tap is given twice"])
        try assertRejected(["run", "--kernel", bzImage, "--net", "tap=t0,num_queues=3"], mentions: ["even"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--net", "tap=t0,queues=2,num_queues=4"], mentions: ["the same option"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--net", "tap=t0,queue_size=3"],
            mentions: ["--net queue_size=3", "power of two"])
    }

    func testIOEngineOptionsNeedTheirMode() throws {
        try assertRejected(
            ["run", "--kernel", bzImage, "--io-mode", "notify", "--side-cores", "2"],
            mentions: ["--side-cores", "poll or hybrid"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--io-mode", "poll", "--poll-max-us", "50"],
            mentions: ["--poll-max-us", "hybrid"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--io-mode", "notify", "--irq-coalesce", "on"], mentions: ["--irq-coalesce"])
        try assertRejected(["run", "--kernel", bzImage, "--side-cores", "0"], mentions: ["--side-cores 0"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--irq-redirect", "maybe"], mentions: ["--irq-redirect", "maybe"])
        try assertRejected(["run", "--kernel", bzImage, "--io-mode", "sometimes"], mentions: ["sometimes"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--side-core-cpus", "4096"], mentions: ["--side-core-cpus 4096", "online CPU"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--side-cores", "2", "--side-cores-max", "1"], mentions: ["--side-cores-max 1"]
        )
        try assertRejected(["run", "--kernel", bzImage, "--side-cores", "many"], mentions: ["many"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--side-cores", "2", "--side-cores-min", "1"],
            mentions: ["--side-cores-min", "auto"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--side-cores", "auto", "--side-cores-min", "3", "--side-cores-max", "2"],
            mentions: ["--side-cores-max 2"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--io-mode", "notify", "--side-cores-max", "2"], mentions: ["--side-cores-max"]
        )
        try assertRejected(
            ["run", "--kernel", bzImage, "--side-core-cpus", "0,1"], mentions: ["2 CPUs for 1 side cores"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--io-mode", "notify", "--side-core-cpus", "none"],
            mentions: ["--side-core-cpus"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--io-mode", "notify", "--side-cores", "auto"],
            mentions: ["--side-cores", "poll or hybrid"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--side-cores", "auto", "--side-cores-min=-1"],
            mentions: ["--side-cores-min -1"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--side-cores", "1", "--side-cores-latency-us", "50"],
            mentions: ["--side-cores-latency-us", "auto"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--side-cores", "auto", "--side-cores-latency-us", "0"],
            mentions: ["--side-cores-latency-us 0"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--side-cores", "auto", "--side-cores-min", "0", "--side-cores-max", "0"],
            mentions: ["--side-cores-max 0", "1"])
    }

    func testBadConfigFiles() throws {
        try assertRejected(
            ["run", "--config", "/nonexistent/vms.json"], mentions: ["/nonexistent/vms.json", "No such file"])
        let notJSON = try write("bad.json", Array("{vms: nope".utf8))
        try assertRejected(["run", "--config", notJSON], mentions: [notJSON, "JSON"])
        let noKernel = try write("nokernel.json", Array(#"{"vms": [{"name": "a"}]}"#.utf8))
        try assertRejected(["run", "--config", noKernel], mentions: [noKernel, "kernel"])
        let twice = try write(
            "twice.json", Array(#"{"vms": [{"name": "a", "kernel": "k"}, {"name": "a", "kernel": "k"}]}"#.utf8))
        try assertRejected(["run", "--config", twice], mentions: [twice, "unique"])
        let badCPUs = try write("cpus.json", Array(#"{"vms": [{"name": "a", "kernel": "k", "cpus": 0}]}"#.utf8))
        try assertRejected(["run", "--config", badCPUs], mentions: [badCPUs, "vm a", "cpus 0"])
        let missingKernel = try write("k.json", Array(#"{"vms": [{"name": "b", "kernel": "/nonexistent/k"}]}"#.utf8))
        try assertRejected(["run", "--config", missingKernel], mentions: ["vm b", "/nonexistent/k"])
        try assertRejected(["run", "--config", badCPUs, "--kernel", bzImage], mentions: ["--kernel", "--config"])
        try assertRejected(["run"], mentions: ["--kernel"])
        let misspelt = try write("memroy.json", Array(#"{"vms": [{"name": "a", "kernel": "k", "memroy": 64}]}"#.utf8))
        try assertRejected(["run", "--config", misspelt], mentions: [misspelt, ".vms[0].memroy: unknown key"])
        let topLevel = try write("top.json", Array(#"{"vms": [{"name": "a", "kernel": "k"}], "vsm": []}"#.utf8))
        try assertRejected(["run", "--config", topLevel], mentions: [".vsm: unknown key"])
        let sameID = try write(
            "ids.json",
            Array(#"{"vms": [{"name": "a", "kernel": "k", "disks": ["path=x,id=d", "path=y,id=d"]}]}"#.utf8))
        try assertRejected(["run", "--config", sameID], mentions: ["vm a", "id d is given to two disks"])
        let badNet = try write(
            "net.json", Array(#"{"vms": [{"name": "a", "kernel": "k", "nets": ["tap=t0,mac=zz"]}]}"#.utf8))
        try assertRejected(["run", "--config", badNet], mentions: [badNet, "vm a: --net tap=t0,mac=zz", "mac 'zz'"])
        let sharedTAP = try write(
            "tap.json",
            Array(
                #"{"vms": [{"name": "a", "kernel": "k", "nets": ["tap=t0"]}, {"name": "b", "kernel": "k", "nets": ["tap=t0"]}]}"#
                    .utf8))
        try assertRejected(["run", "--config", sharedTAP], mentions: ["vm b: --net tap=t0", "TAP t0 serves vm a too"])
    }

    /// Foundation's decoder alone would take these (the last duplicate winning); hvctl refuses
    /// them with the line and column, and a duplicate with its JSON path.
    func testConfigJSONIsStrict() throws {
        let cases: [(String, [String])] = [
            ("{\"vms\": [{\"name\": \"a\", \"kernel\": \"k\",}]}", ["line 1, column 38", "trailing comma"]),
            ("{\"vms\": [{\"name\": \"a\", \"kernel\": \"k\"},]}", ["line 1, column 39", "trailing comma"]),
            (
                "{\"vms\": [\n  {\"name\": \"a\", \"kernel\": \"k\",\n   \"cpus\": 1, \"cpus\": 2}]}",
                ["line 3, column 15", ".vms[0].cpus: the key is given twice"]
            ),
            ("{\"vms\": [{\"name\": \"a\"\n  \"kernel\": \"k\"}]}", ["line 2, column 3", "expected ',' or '}'"]),
            ("{\"vms\": []} {}", ["line 1, column 13", "after the document"]),
            ("{\"vms\": [{\"name\": \"a\", \"kernel\": \"k\", \"cpus\": 01}]}", ["cannot start with 0"]),
        ]
        for (index, (text, expected)) in cases.enumerated() {
            let file = try write("strict\(index).json", Array(text.utf8))
            try assertRejected(["run", "--config", file], mentions: [file, "not valid JSON at "] + expected)
        }
    }

    /// The accepted side of the same options: a size suffix, more memory than the host has when
    /// asked to overcommit (guest RAM is only reserved), and cloud-hypervisor's `num_queues`.
    func testSuffixedMemoryOvercommitAndCloudHypervisorSpellingsBoot() throws {
        let image = try write("plain.img", [UInt8](repeating: 0, count: 1 << 20))
        for options in [
            ["--memory", "2G", "--disk", "path=\(image),num_queues=2,readonly=on"],
            ["--memory", "32G", "--memory-overcommit", "--disk", "path=\(image),readonly=on"],
        ] {
            let result = try Toolchain.run(
                Toolchain.hvctl,
                ["run", "--kernel", Toolchain.iobenchGuest, "--cmdline", "qd=1 requests=10 verify=0"] + options)
            XCTAssertEqual(result.status, 0, "\(options): \(result.stderr)")
            XCTAssertTrue(
                result.stdout.contains("iobench: result") && result.stdout.contains("errors=0"), result.stdout)
        }
    }

    func testMemoryTakesSuffixesAndIsNoMoreThanTheHostHas() throws {
        try assertRejected(["run", "--kernel", bzImage, "--memory", "8M"], mentions: [bzImage, "--memory"])
        try assertRejected(["run", "--kernel", bzImage, "--memory", "512X"], mentions: ["--memory", "512X"])
        try assertRejected(["run", "--kernel", bzImage, "--memory", "1000000G"], mentions: ["--memory"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--memory", "900G"], mentions: ["--memory 921600", "--memory-overcommit"])
    }

    func testDuplicatesAndDirectoriesAreRefused() throws {
        try assertRejected(
            ["run", "--kernel", bzImage, "--io-mode", "poll", "--side-cores", "2", "--side-core-cpus", "1,1"],
            mentions: ["--side-core-cpus 1,1", "given twice"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--stats-json", scratch.path], mentions: [scratch.path, "directory"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=x,id=same", "--disk", "path=y,id=same"],
            mentions: ["id same is given to two disks"])
    }

    /// Another process's lock (QEMU takes the same OFD locks) and a second disk on one image.
    func testADiskImageInUseIsRefusedNamingItsHolder() throws {
        let image = try write("locked.img", [UInt8](repeating: 0, count: 1 << 20))
        let fd = open(image, O_RDWR | O_CLOEXEC)
        defer { close(fd) }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        XCTAssertEqual(fcntl(fd, 37 /* F_OFD_SETLK */, &lock), 0, String(cString: strerror(errno)))
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=\(image)"], mentions: [image, "process \(getpid())"])
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=\(image),readonly=on"], mentions: [image, "for reading"])
        // A shared (read) lock, as another read-only user holds: a read-only disk runs beside it.
        lock.l_type = Int16(F_RDLCK)
        XCTAssertEqual(fcntl(fd, 37 /* F_OFD_SETLK */, &lock), 0, String(cString: strerror(errno)))
        let shared = try Toolchain.run(
            Toolchain.hvctl,
            [
                "run", "--kernel", Toolchain.iobenchGuest, "--memory", "64", "--disk", "path=\(image),readonly=on",
                "--cmdline", "qd=1 requests=10 verify=0",
            ])
        XCTAssertEqual(shared.status, 0, "two read-only users share an image: \(shared.stderr)")
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=\(image)"], mentions: [image, "process \(getpid())"])
        close(fd)
        let other = try write("other.img", [UInt8](repeating: 0, count: 1 << 20))
        try assertRejected(
            ["run", "--kernel", bzImage, "--disk", "path=\(other),id=a", "--disk", "path=\(other),id=b"],
            mentions: [other, "by this process"])
    }

    /// On a terminal the console goes raw; every way out gives the modes back: a guest that powers
    /// off, a stop by SIGTERM, a guest that fails, and a bad option refused before boot. Run in a
    /// background process group (`timeout` without --foreground) hvctl leaves the terminal alone
    /// instead of being stopped by SIGTTOU. `script` gives hvctl a pseudo-terminal.
    func testTheTerminalIsRestoredOnEveryExit() throws {
        let iobench =
            "\(Toolchain.hvctl) run --kernel \(Toolchain.iobenchGuest) --memory 256 --disk backend=null,size=64M --cmdline"
        let cases = [
            "\(iobench) 'qd=1 requests=100'",
            "timeout --foreground -s TERM 2 \(iobench) 'qd=1 requests=1000000000'",
            "timeout -s TERM 2 \(iobench) 'qd=1 requests=1000000000'",
            "\(iobench) 'qd=99'",
            "\(Toolchain.hvctl) run --kernel \(bzImage) --disk path=/nonexistent",
        ]
        for (index, command) in cases.enumerated() {
            let before = scratch.appendingPathComponent("before-\(index)").path
            let after = scratch.appendingPathComponent("after-\(index)").path
            let shell = "stty -g > \(before); \(command) > /dev/null 2>&1; stty -g > \(after)"
            let result = try Toolchain.run(
                "/usr/bin/timeout", ["-s", "KILL", "60", "/usr/bin/script", "-qec", shell, "/dev/null"])
            XCTAssertEqual(result.status, 0, "\(command): \(result.stdout) \(result.stderr)")
            let modes = try [before, after].map { try String(contentsOfFile: $0, encoding: .utf8) }
            XCTAssertFalse(modes[0].isEmpty)
            XCTAssertEqual(modes[0], modes[1], "terminal modes after \(command)")
        }
    }

    func testBadLogOptions() throws {
        try assertRejected(
            ["run", "--kernel", bzImage, "--log-file", "/nonexistent/dir/hvctl.log"],
            mentions: ["--log-file /nonexistent/dir/hvctl.log", "No such file"])
        try assertRejected(["run", "--kernel", bzImage, "--log-level", "loud"], mentions: ["--log-level", "loud"])
    }

    func testVersion() throws {
        let result = try Toolchain.run(Toolchain.hvctl, ["--version"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("0."), result.stdout)
    }

    /// `run --help` leads with what boots a VM (the kernel, its memory, its devices), then the I/O
    /// engine's options, then the rest.
    func testRunHelpListsTheBootOptionsFirst() throws {
        let result = try Toolchain.run(Toolchain.hvctl, ["run", "--help"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let help = result.stdout
        func position(_ text: String) throws -> String.Index {
            try XCTUnwrap(help.range(of: text)?.lowerBound, "\(text) in: \(help)")
        }
        let order = try [
            "BOOT:", "  --kernel <", "  --memory <", "  --disk <", "  --config <", "I/O ENGINE:", "  --io-mode <",
            "  --api-socket <",
        ]
        .map(position)
        XCTAssertEqual(order, order.sorted(), help)
    }

    func testControlSocketErrors() throws {
        try assertRejected(
            ["stats", "--socket", "/nonexistent/api.sock"], mentions: ["/nonexistent/api.sock", "No such file"])
        try assertRejected(
            ["iocm", "--socket", "/nonexistent/api.sock", "--side-cores", "2"], mentions: ["/nonexistent/api.sock"])
        let taken = try write("taken.sock", [])
        try assertRejected(
            ["run", "--kernel", bzImage, "--api-socket", taken], mentions: ["--api-socket", taken, "not a socket"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: taken), "an existing file is left alone")
    }

    func testCheckReportsTheHost() throws {
        let result = try Toolchain.run(Toolchain.hvctl, ["check"])
        XCTAssertEqual(result.status, 0, result.stderr)
        for line in [
            "KVM API version:     12", "guest kernel code:", "posted interrupts:", "io_uring:", "IRQCHIP",
            "BINARY_STATS_FD",
        ] {
            XCTAssertTrue(result.stdout.contains(line), "missing '\(line)' in:\n\(result.stdout)")
        }
        if FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm") {
            XCTAssertTrue(result.stdout.contains("emulated (PVM"), result.stdout)
            XCTAssertEqual(try Toolchain.run(Toolchain.hvctl, ["check", "--require-native"]).status, 3)
        }
    }
}
