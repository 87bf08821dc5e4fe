// swift-tools-version:6.0
import PackageDescription
import Foundation

// Kernels are written with explicit SIMD types. On x86-64 they only become AVX2/FMA code when the
// compiler is told which CPU to target (the default baseline is SSE2, where `addProduct` turns into calls
// to `fmaf`). DML_TARGET_CPU picks that CPU: `haswell` (AVX2+FMA, the default: runs on any x86-64 machine
// made since 2013), `native` (the build machine, e.g. AVX-512), or `generic` for no flag at all.
let targetCPU = ProcessInfo.processInfo.environment["DML_TARGET_CPU"] ?? "haswell"
#if arch(x86_64)
let cpuFlags: [SwiftSetting] = targetCPU == "generic" ? [] : [.unsafeFlags(["-target-cpu", targetCPU])]
#else
let cpuFlags: [SwiftSetting] = []
#endif
let fast: [SwiftSetting] = cpuFlags + [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

let package = Package(
    name: "DML",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "dml-train", targets: ["dml-train"]),
        .executable(name: "dml-launch", targets: ["dml-launch"]),
        .executable(name: "dml-bench", targets: ["dml-bench"]),
        .executable(name: "dml-predict", targets: ["dml-predict"]),
        .library(name: "DMLTraining", targets: ["DMLTraining"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // OpenMPI through pkg-config; the header turns its macro handles into inline functions.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi", providers: [.apt(["libopenmpi-dev"])]),
        // xxHash's XXH3 through pkg-config: the one digest (checkpoints, replica checks, data identity).
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        // What a failure means to whoever runs the job (the exit statuses); no dependencies, so the
        // launcher can use it without linking MPI.
        .target(name: "DMLStatus"),
        .target(name: "DMLComm", dependencies: ["CMPI", "CXXHash", "DMLStatus"], swiftSettings: cpuFlags),
        // A software prefetch (a compiler builtin Swift cannot call), for the kernels' row gathers.
        .target(name: "CKernelHints"),
        // Stop signals recorded by an async-signal-safe C handler, installed before main in dml-train.
        .target(name: "CStopSignals"),
        .target(name: "DMLKernels", dependencies: ["CKernelHints"], swiftSettings: fast),
        .target(name: "DMLModels", dependencies: ["DMLKernels"], swiftSettings: fast),
        .target(name: "DMLData", dependencies: ["DMLStatus", "DMLComm", "DMLKernels"], swiftSettings: fast),
        .target(name: "DMLTraining", dependencies: ["DMLStatus", "DMLComm", "DMLKernels", "DMLModels", "DMLData", "CStopSignals"],
                swiftSettings: cpuFlags),
        .executableTarget(name: "dml-train", dependencies: [
            "DMLTraining", "DMLStatus", "DMLCommandLine",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: cpuFlags),
        // Prediction and evaluation with a trained model (the library side of dml-predict and of dml-bench
        // predict): its own module, so training does not carry the metrics, the sort and the writers.
        .target(name: "DMLPredict", dependencies: ["DMLStatus", "DMLComm", "DMLData", "DMLModels", "DMLTraining"], swiftSettings: cpuFlags),
        .executableTarget(name: "dml-predict", dependencies: [
            "DMLPredict", "DMLTraining", "DMLData", "DMLStatus", "DMLCommandLine",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: cpuFlags),
        // The command-line forms of the library's values that more than one command parses (--format, --task, …).
        .target(name: "DMLCommandLine", dependencies: ["DMLData", "DMLComm", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // The restart supervisor: the library runs and restarts the job, the executable parses its flags.
        .target(name: "DMLLaunch", dependencies: ["DMLStatus"]),
        .executableTarget(name: "dml-launch", dependencies: [
            "DMLLaunch",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "dml-bench", dependencies: [
            "DMLTraining", "DMLPredict", "DMLKernels", "DMLModels", "DMLStatus",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: fast),
        .target(name: "DMLTestSupport", dependencies: ["DMLComm"], path: "Tests/DMLTestSupport"),
        .testTarget(name: "DMLCommTests", dependencies: ["DMLComm", "DMLStatus", "DMLTestSupport"]),
        .testTarget(name: "DMLKernelsTests", dependencies: ["DMLKernels", "DMLTestSupport"]),
        .testTarget(name: "DMLModelsTests", dependencies: ["DMLModels", "DMLTestSupport"]),
        .testTarget(name: "DMLDataTests", dependencies: ["DMLData", "DMLStatus", "DMLTestSupport"]),
        .testTarget(name: "DMLTrainingTests", dependencies: ["DMLTraining", "DMLStatus", "DMLTestSupport"]),
        .testTarget(name: "DMLPredictTests", dependencies: ["DMLPredict", "DMLTraining", "DMLData", "DMLStatus", "DMLTestSupport"]),
        .testTarget(name: "LauncherTests", dependencies: ["DMLLaunch", "DMLStatus"]),
        .testTarget(name: "IntegrationTests", dependencies: ["DMLTraining", "DMLPredict", "DMLData", "DMLComm", "DMLStatus", "DMLTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
