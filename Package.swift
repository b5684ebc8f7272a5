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
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Only what Swift cannot import: ioctl request macros, kvm_run union accessors, raw syscalls.
        .target(name: "CKVM"),
        .target(
            name: "Hypervisor",
            dependencies: ["CKVM", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "hvctl",
            dependencies: [
                "Hypervisor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "CKVM"]),
        .testTarget(name: "IntegrationTests"),
    ],
    swiftLanguageModes: [.v5]
)
