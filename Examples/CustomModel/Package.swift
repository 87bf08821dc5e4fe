// swift-tools-version:6.0
import PackageDescription

// A package of its own that uses DML as a library, by version, the way any package depends on another: it
// defines a model DML does not ship and trains it with DML's trainer under mpirun.
let package = Package(
    name: "CustomModel",
    platforms: [.macOS(.v13)],
    dependencies: [
        // Where your copy of DML lives (a git URL, or file:///path/to/a/clone), tagged with a release.
        // `ExamplePackageTests` rewrites this line to a temporary clone tagged 99.0.0.
        .package(url: "https://example.invalid/dml.git", from: "1.0.0"),
    ],
    targets: [
        .executableTarget(name: "CustomModel", dependencies: [
            .product(name: "DMLTraining", package: "dml"),
            .product(name: "DMLModels", package: "dml"),
            .product(name: "DMLKernels", package: "dml"),
            .product(name: "DMLData", package: "dml"),
            .product(name: "DMLComm", package: "dml"),
        ]),
    ]
)
