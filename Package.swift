// swift-tools-version:6.0
// Meshwork: a serverless peer-to-peer encrypted mesh overlay for Linux, on libsodium.
// Module map and dependency direction: docs/architecture.md (and ../shared/design/ARCHITECTURE.md).
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Meshwork",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "meshwork", targets: ["meshwork"]),
        .library(name: "MeshCore", targets: ["MeshCore"]),
        .library(name: "MeshWire", targets: ["MeshWire"]),
        .library(name: "MeshCrypto", targets: ["MeshCrypto"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The config file (`up --config`): TOML, through toml++.
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        // `up --metrics`: the Prometheus text format and its counter and gauge types.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C shims.
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .target(name: "CTun"),

        // Pure modules: no I/O, no clock, no system randomness.
        .target(name: "MeshCore", swiftSettings: strict),
        .target(name: "MeshWire", dependencies: ["MeshCore"], swiftSettings: strict),
        .target(name: "MeshCrypto", dependencies: ["CSodium", "MeshCore", "MeshWire"], swiftSettings: strict),

        // Protocol cores: sans-I/O state machines.
        .target(name: "MeshGossip", dependencies: ["MeshCore", "MeshWire", "MeshCrypto"], swiftSettings: strict),
        .target(name: "MeshPool", dependencies: ["MeshCore", "MeshWire", "MeshCrypto"], swiftSettings: strict),
        .target(name: "MeshTunnel", dependencies: ["MeshCore", "MeshWire", "MeshCrypto"], swiftSettings: strict),
        .target(name: "MeshNode", dependencies: ["MeshCore", "MeshWire", "MeshCrypto", "MeshGossip", "MeshPool", "MeshTunnel"], swiftSettings: strict),
        .target(name: "MeshSim", dependencies: ["MeshCore", "MeshWire", "MeshCrypto", "MeshGossip", "MeshPool", "MeshNode", "MeshTunnel"], swiftSettings: strict),

        // The real world: sockets, files, the clock.
        .target(
            name: "MeshTransport",
            dependencies: [
                "CTun", "MeshCore", "MeshWire", "MeshCrypto", "MeshGossip", "MeshPool", "MeshNode", "MeshTunnel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "MeshDaemon",
            dependencies: [
                "MeshCore", "MeshWire", "MeshCrypto", "MeshGossip", "MeshPool", "MeshNode", "MeshTransport", "MeshTunnel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),

        // The executable: argument parsing and output only.
        .executableTarget(
            name: "meshwork",
            dependencies: [
                "MeshCore", "MeshWire", "MeshCrypto", "MeshDaemon", "MeshSim", "MeshGossip", "MeshPool", "MeshTunnel", "MeshTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),

        .testTarget(name: "MeshCoreTests", dependencies: ["MeshCore"], swiftSettings: strict),
        .testTarget(name: "MeshWireTests", dependencies: ["MeshCore", "MeshWire"], swiftSettings: strict),
        .testTarget(name: "MeshCryptoTests", dependencies: ["MeshCore", "MeshWire", "MeshCrypto", "MeshDaemon"], swiftSettings: strict),
        .testTarget(name: "MeshGossipTests", dependencies: ["MeshCore", "MeshWire", "MeshCrypto", "MeshGossip", "MeshPool", "MeshNode", "MeshSim"], swiftSettings: strict),
        .testTarget(name: "MeshPoolTests", dependencies: ["MeshCore", "MeshWire", "MeshCrypto", "MeshPool", "MeshNode", "MeshSim"], swiftSettings: strict),
        .testTarget(name: "MeshTunnelTests", dependencies: ["MeshCore", "MeshCrypto", "MeshTunnel", "MeshSim"], swiftSettings: strict),
        .testTarget(name: "MeshworkCLITests", dependencies: ["meshwork", "MeshCore", "MeshCrypto", "MeshDaemon", "MeshTransport", "MeshNode", "MeshPool", "MeshWire", "MeshGossip",
                                                             .product(name: "NIOCore", package: "swift-nio")], swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
