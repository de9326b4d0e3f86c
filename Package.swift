// swift-tools-version:6.0
// cnl: Commonality Neuron Localization (capability neurons of LLMs), one Swift package.
// Rooms (DESIGN.md): cnl → Coordinator → Shard → Engine → system libraries; imports point down.
import PackageDescription

let package = Package(
    name: "cnl",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cnl", targets: ["cnl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // System libraries: module map + shim header, nothing else.
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),

        // The model: checkpoints, tokenizers, architectures, forward/backward, attribution.
        .target(name: "Engine", dependencies: ["COpenBLAS"]),
        // One rank's work and the only owner of MPI.
        .target(name: "Shard", dependencies: ["Engine", "CMPI", "CZstd"]),
        // One run seen from the root.
        .target(name: "Coordinator", dependencies: [
            "Shard", "Engine", "COpenBLAS",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // The command line.
        .executableTarget(name: "cnl", dependencies: [
            "Coordinator",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "EngineTests", dependencies: ["Engine"]),
        .testTarget(name: "ShardTests", dependencies: ["Shard"]),
        .testTarget(name: "CoordinatorTests", dependencies: ["Coordinator"]),
        .testTarget(name: "CLITests", dependencies: ["Coordinator"]),
    ],
    swiftLanguageModes: [.v5]
)
