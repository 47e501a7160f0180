// swift-tools-version:6.1
//
// kusu-ha — high availability for the KUSU management node.
//
// Layering (each layer imports only the ones above it):
//   CSystemd      C shim over libsystemd (sd-bus, sd-event, sd-daemon, sd-journal)
//   DBusKit       a D-Bus binding over sd-bus; knows nothing of HA
//   ClusterCore   pure domain logic: configuration, heartbeat wire format, peer
//                 state machine. No sockets, no clocks, no D-Bus.
//   ClusterAPI    the wire names of the public contract (bus names, paths, members)
//   SystemSupport journal logging, sd_notify, files and persisted state
//   Monitor       kusu-hbd's shell: UDP links, the bus object
//   Effector      the effector's side effects, one type each: rtnetlink, ARP, libpq, systemd units
//   EffectorService kusu-effectord's engine (one operation at a time) and its bus object
//   FileSync      [[sync]]: rsyncd.conf, the rsync pull argv, the pull scheduler, the status file
//   kusu-hbd, kusu-effectord   thin executables
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "kusu-ha",
    products: [
        .executable(name: "kusu-hbd", targets: ["kusu-hbd"]),
        .executable(name: "kusu-effectord", targets: ["kusu-effectord"]),
        .executable(name: "kusu-ha", targets: ["kusu-ha"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .target(name: "DBusKit", dependencies: ["CSystemd"], swiftSettings: swiftSettings),
        .target(
            name: "ClusterCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(name: "ClusterAPI", swiftSettings: swiftSettings),
        .target(
            name: "SystemSupport",
            dependencies: ["CSystemd", "ClusterCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Monitor",
            dependencies: [
                "CSystemd", "DBusKit", "ClusterCore", "ClusterAPI", "SystemSupport", "FileSync",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "kusu-hbd",
            dependencies: [
                "Monitor", "ClusterCore", "ClusterAPI", "DBusKit", "SystemSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The effector's side effects: rtnetlink, AF_PACKET, libpq, systemd units.
        .target(name: "CNetlink"),
        .systemLibrary(name: "CLibpq", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .target(
            name: "Effector",
            dependencies: ["CNetlink", "CLibpq", "ClusterCore", "DBusKit"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "EffectorService",
            dependencies: [
                "Effector", "DBusKit", "ClusterCore", "ClusterAPI", "SystemSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "kusu-effectord",
            dependencies: [
                "EffectorService", "ClusterCore", "ClusterAPI", "DBusKit", "SystemSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // [[sync]]: the file trees the standby keeps (rsyncd.conf, rsync argv, pull scheduler, status file).
        .target(
            name: "FileSync",
            dependencies: ["ClusterCore", "SystemSupport", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        // The administrator's client: proxies, status model and rendering (testable), then the CLI.
        .target(
            name: "HAClient",
            dependencies: ["DBusKit", "ClusterAPI", "ClusterCore"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "kusu-ha",
            dependencies: [
                "HAClient", "DBusKit", "ClusterAPI", "ClusterCore", "SystemSupport", "FileSync",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Test tool (not installed): drives UnitManager against a systemd (Tests/System/units.sh).
        .executableTarget(name: "unit-manager-probe", dependencies: ["Effector", "DBusKit"], swiftSettings: swiftSettings),
        // Test tool (not installed): crafts heartbeat packets, valid and hostile.
        .executableTarget(
            name: "kusu-hb-inject",
            dependencies: [
                "ClusterCore", "Monitor", "SystemSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "DBusKitTests", dependencies: ["DBusKit"], swiftSettings: swiftSettings),
        .testTarget(name: "ClusterCoreTests", dependencies: ["ClusterCore"], swiftSettings: swiftSettings),
        .testTarget(name: "FileSyncTests", dependencies: ["FileSync", "ClusterCore"], swiftSettings: swiftSettings),
        .testTarget(name: "EffectorTests", dependencies: ["Effector", "DBusKit"], swiftSettings: swiftSettings),
        .testTarget(name: "HAClientTests", dependencies: ["HAClient", "DBusKit"], swiftSettings: swiftSettings),
        .testTarget(name: "EffectorDatabaseTests", dependencies: ["Effector", "ClusterCore"], swiftSettings: swiftSettings),
        .testTarget(name: "EffectorNetTests", dependencies: ["Effector", "CNetlink", "ClusterCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "EffectorServiceTests",
            dependencies: ["EffectorService", "ClusterCore", "DBusKit", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MonitorTests",
            dependencies: ["Monitor", "SystemSupport", "ClusterCore", "DBusKit", .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),
    ]
)
