// swift-tools-version: 6.0
import Foundation
import PackageDescription

// hvctl's code is laid out so that what runs once the VMs are up sits together: the kernel maps
// every code page it faults with 64 KiB of cached neighbours, so scattered hot code keeps
// several MiB resident (issue 15's memory budget). Each function gets its own section and lld
// places the ones listed in linker/hvctl-hot-text.order (made by `make hot-text-order`) first;
// -z now binds every library call at start, so the dynamic symbol tables are not read again;
// libstdc++ goes in statically (linker/static), its hot parts laid out with the rest.
let ownCodeSections: [SwiftSetting] = [.unsafeFlags(["-Xfrontend", "-function-sections"])]
let linkerDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("linker")
let hvctlLayout: [LinkerSetting] = [
    .unsafeFlags([
        "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "now", "-L\(linkerDirectory.path)/static",
        "-Xlinker", "--symbol-ordering-file=\(linkerDirectory.path)/hvctl-hot-text.order",
        "-Xlinker", "--no-warn-symbol-ordering",
    ])
]

let package = Package(
    name: "Sidecore",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "hvctl", targets: ["hvctl"]),
        .library(name: "Hypervisor", targets: ["Hypervisor"]),
        // For the fuzz package (Fuzz/), which builds the device code with coverage instrumentation.
        .library(name: "VirtioDevices", targets: ["VirtioDevices"]),
        // For the fuzz package too: the API's HTTP parser.
        .library(name: "VMM", targets: ["VMM"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // Only what Swift cannot import: ioctl request macros, kvm_run union accessors, raw syscalls.
        // Also the io_uring helpers over Debian's liburing (liburing-dev): liburing's API is mostly
        // static inline and its headers clash with Glibc's module when imported directly.
        .target(
            name: "CKVM", cSettings: [.unsafeFlags(["-ffunction-sections"])],
            linkerSettings: [.linkedLibrary("uring")]),
        .target(
            name: "Hypervisor", dependencies: ["CKVM", .product(name: "Logging", package: "swift-log")],
            swiftSettings: ownCodeSections),
        .target(
            name: "VirtioDevices",
            dependencies: ["Hypervisor", "CKVM", .product(name: "Logging", package: "swift-log")],
            swiftSettings: ownCodeSections),
        // The VMM runtime: VMs built from validated configurations on one I/O engine, run and
        // taken down in order, and their statistics. hvctl is a command line over it.
        .target(
            name: "VMM",
            dependencies: [
                "Hypervisor", "VirtioDevices", "CKVM", .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: ownCodeSections),
        .executableTarget(
            name: "hvctl",
            dependencies: [
                "Hypervisor",
                "VirtioDevices",
                "VMM",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                // bench merges the guest's latency histograms.
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: ownCodeSections,
            linkerSettings: hvctlLayout
        ),
        // Deadline-bounded waits the unit tests synchronise on.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "CKVM", "TestSupport"]),
        .testTarget(name: "VirtioDevicesTests", dependencies: ["VirtioDevices", "Hypervisor", "CKVM", "TestSupport"]),
        // The API's HTTP parser, server and metrics rendering, without a VM.
        .testTarget(name: "VMMTests", dependencies: ["VMM", "Hypervisor", "TestSupport"]),
        // hvctl's own pieces that need no guest (bench's result handling).
        .testTarget(name: "HVCtlTests", dependencies: ["hvctl", "Hypervisor", "TestSupport"]),
        // VirtioDevices for the Toeplitz hash the RSS rig test predicts queues with; VMM for the
        // runtime's own tests, which boot the iobench guest without the CLI.
        .testTarget(name: "IntegrationTests", dependencies: ["VirtioDevices", "VMM", "Hypervisor", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
