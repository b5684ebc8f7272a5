// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Sidecore",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "hvctl", targets: ["hvctl"]),
        .library(name: "Hypervisor", targets: ["Hypervisor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Only what Swift cannot import: ioctl request macros, kvm_run union accessors, raw syscalls.
        .target(name: "CKVM"),
        .target(name: "Hypervisor", dependencies: ["CKVM"]),
        .target(name: "VirtioDevices", dependencies: ["Hypervisor", "CKVM"]),
        .executableTarget(
            name: "hvctl",
            dependencies: [
                "Hypervisor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "CKVM"]),
        .testTarget(name: "VirtioDevicesTests", dependencies: ["VirtioDevices", "Hypervisor"]),
        .testTarget(name: "IntegrationTests"),
    ],
    swiftLanguageModes: [.v5]
)
