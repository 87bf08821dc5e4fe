// swift-tools-version:6.0
import PackageDescription

// No unsafe flags anywhere: SwiftPM refuses them in a package that is depended on by version, and DML is meant to
// be used as a library. The kernels' speed does not come from compiler flags: the arithmetic kernels are C
// (CDMLKernels), compiled once per instruction set with function-level target attributes and chosen at run time
// from the CPU (AVX-512, AVX2+FMA, or the baseline), so `swift build -c release` on any x86-64 machine, and any
// package that depends on DML, gets the fast code. Every target builds with the default `-O` in release
// (bounds and overflow checks kept, the data parsers' included): measured against `-Ounchecked`, only gemm's packing
// gained from it, and its loops use wrapping arithmetic instead (benchmarks/RESULTS.md).
let package = Package(
    name: "DML",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "dml-train", targets: ["dml-train"]),
        .executable(name: "dml-launch", targets: ["dml-launch"]),
        .executable(name: "dml-bench", targets: ["dml-bench"]),
        .executable(name: "dml-predict", targets: ["dml-predict"]),
        // The library: a package depending on DML by version trains its own `Model` with the trainer
        // (Examples/CustomModel).
        .library(name: "DMLKernels", targets: ["DMLKernels"]),
        .library(name: "DMLModels", targets: ["DMLModels"]),
        .library(name: "DMLComm", targets: ["DMLComm"]),
        .library(name: "DMLData", targets: ["DMLData"]),
        .library(name: "DMLTraining", targets: ["DMLTraining"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
    ],
    targets: [
        // OpenMPI through pkg-config; the header turns its macro handles into inline functions.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi", providers: [.apt(["libopenmpi-dev"])]),
        // xxHash's XXH3 through pkg-config: the one digest (checkpoints, replica checks, data identity).
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        // HDF5's C library, the serial build, through pkg-config: Debian's libhdf5-dev names it hdf5-serial (its plain
        // `hdf5` is an alternative that the MPI build may take over). Serial because each rank reads only its own
        // hyperslab: no MPI-IO is needed (docs/ARCHITECTURE.md).
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial", providers: [.apt(["libhdf5-dev"])]),
        // What a failure means to whoever runs the job (the exit statuses); no dependencies, so the
        // launcher can use it without linking MPI.
        .target(name: "DMLStatus"),
        // The arithmetic kernels in C, one copy per ISA, dispatched at run time (and a software prefetch).
        .target(name: "CDMLKernels"),
        .target(name: "DMLComm", dependencies: ["CMPI", "CXXHash", "DMLStatus", "CDMLKernels"]),
        // Stop signals recorded by an async-signal-safe C handler, installed before main in dml-train.
        .target(name: "CStopSignals"),
        .target(name: "DMLKernels", dependencies: ["CDMLKernels"]),
        .target(name: "DMLModels", dependencies: ["DMLKernels"]),
        .target(name: "DMLData", dependencies: ["DMLStatus", "DMLComm", "DMLKernels", "CHDF5"]),
        .target(name: "DMLTraining", dependencies: ["DMLStatus", "DMLComm", "DMLKernels", "DMLModels", "DMLData", "CStopSignals"]),
        // What the executables share about their command lines: config files (--config) and the
        // effective configuration of a run, read off each command's own flag declarations.
        // The command-line forms of the library's values that more than one command parses (--format,
        // --task, …), and how every rank parses.
        .target(name: "DMLCommandLine", dependencies: [
            "DMLStatus", "DMLData", "DMLComm",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),
        .executableTarget(name: "dml-train", dependencies: [
            "DMLTraining", "DMLStatus", "DMLCommandLine", "DMLKernels",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Prediction and evaluation with a trained model (the library side of dml-predict and of dml-bench
        // predict): its own module, so training does not carry the metrics, the sort and the writers.
        .target(name: "DMLPredict", dependencies: ["DMLStatus", "DMLComm", "DMLData", "DMLModels", "DMLTraining"]),
        .executableTarget(name: "dml-predict", dependencies: [
            "DMLPredict", "DMLTraining", "DMLData", "DMLStatus", "DMLCommandLine",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The restart supervisor: the library runs and restarts the job, the executable parses its flags.
        .target(name: "DMLLaunch", dependencies: ["DMLStatus"]),
        .executableTarget(name: "dml-launch", dependencies: [
            "DMLLaunch",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "dml-bench", dependencies: [
            "DMLTraining", "DMLPredict", "DMLKernels", "DMLModels", "DMLStatus",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "DMLTestSupport", dependencies: ["DMLComm", "CHDF5"], path: "Tests/DMLTestSupport"),
        .testTarget(name: "DMLCommTests", dependencies: ["DMLComm", "DMLKernels", "DMLStatus", "DMLTestSupport"]),
        .testTarget(name: "DMLKernelsTests", dependencies: ["DMLKernels", "DMLTestSupport"]),
        .testTarget(name: "DMLModelsTests", dependencies: ["DMLModels", "DMLKernels", "DMLTestSupport"]),
        .testTarget(name: "DMLDataTests", dependencies: ["DMLData", "DMLKernels", "DMLStatus", "DMLTestSupport"]),
        .testTarget(name: "DMLTrainingTests", dependencies: ["DMLTraining", "DMLStatus", "DMLTestSupport"]),
        .testTarget(name: "DMLCommandLineTests", dependencies: [
            "DMLCommandLine", "DMLStatus", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "DMLPredictTests", dependencies: ["DMLPredict", "DMLTraining", "DMLData", "DMLStatus", "DMLTestSupport"]),
        .testTarget(name: "LauncherTests", dependencies: ["DMLLaunch", "DMLStatus"]),
        .testTarget(name: "IntegrationTests", dependencies: ["DMLTraining", "DMLPredict", "DMLData", "DMLComm", "DMLStatus", "DMLTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
