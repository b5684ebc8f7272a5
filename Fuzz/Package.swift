// swift-tools-version: 6.0
// libFuzzer targets for the guest-facing code (`make fuzz`). A package of its own because its
// one executable needs libFuzzer's runtime and coverage instrumentation (fuzz/run builds it).
import PackageDescription

let package = Package(
    name: "SidecoreFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "Sidecore", path: "..")],
    targets: [
        .executableTarget(
            name: "sidecore-fuzz",
            dependencies: [
                .product(name: "Hypervisor", package: "Sidecore"),
                .product(name: "VirtioDevices", package: "Sidecore"),
                .product(name: "VMM", package: "Sidecore"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
