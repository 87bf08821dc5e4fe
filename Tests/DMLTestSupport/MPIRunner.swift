import Foundation

/// Launches the built executables under a real `mpirun`, for the integration tests.
public enum MPIRunner {
    public struct Result: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
        public var stdoutLines: [String] { stdout.split(separator: "\n").map(String.init) }
    }

    /// The folder holding the built products (`.build/<triple>/debug` when run from `swift test`), or
    /// `DML_TEST_PRODUCTS` when set: the integration tests then run another build's executables (a release
    /// build, or an older commit's to see a new test fail there).
    public static var productsDirectory: URL {
        if let other = ProcessInfo.processInfo.environment["DML_TEST_PRODUCTS"] { return URL(fileURLWithPath: other) }
        #if os(macOS)
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            return bundle.bundleURL.deletingLastPathComponent()
        }
        #endif
        return Bundle.main.bundleURL
    }

    /// The path of the executable `name` next to the test bundle.
    public static func executable(_ name: String) -> String {
        productsDirectory.appendingPathComponent(name).path
    }

    /// True when `mpirun` is on the PATH.
    public static var available: Bool {
        ProcessInfo.processInfo.environment["PATH", default: ""].split(separator: ":")
            .contains { FileManager.default.isExecutableFile(atPath: "\($0)/mpirun") }
    }

    /// Runs `mpirun -np ranks <executable> arguments…` and waits for it, killing it after `timeout`
    /// seconds (a hang is a test failure, never a hung suite).
    public static func run(ranks: Int, _ executableName: String, _ arguments: [String],
                           mpirunOptions: [String] = [], environment extra: [String: String] = [:],
                           timeout: TimeInterval = 120) throws -> Result {
        var argv = ["--oversubscribe", "-np", String(ranks)] + mpirunOptions
        argv += [executable(executableName)] + arguments
        return try runProcess("mpirun", argv, environment: extra, timeout: timeout)
    }

    /// The environment a child gets: ours without OpenMPI's variables (a parent that called MPI_Init
    /// carries them, and a child mpirun then fails silently), with root allowed for mpirun (unless
    /// `allowRoot` is false: then as in a plain shell), no Swift backtraces, and `extra`.
    public static func environment(_ extra: [String: String] = [:], allowRoot: Bool = true) -> [String: String] {
        var env = ProcessInfo.processInfo.environment.filter { key, _ in
            !["OMPI_", "PMIX_", "ORTE_", "OPAL_"].contains { key.hasPrefix($0) }
        }
        if allowRoot {
            env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        }
        env["SWIFT_BACKTRACE"] = "enable=no"
        env.merge(extra) { _, new in new }
        return env
    }

    /// Runs a program found on the PATH, capturing its output; `allowRoot` as in `environment`.
    public static func runProcess(_ program: String, _ arguments: [String], environment extra: [String: String] = [:],
                                  allowRoot: Bool = true, timeout: TimeInterval = 120) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program] + arguments
        process.environment = environment(extra, allowRoot: allowRoot)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
        // Read both pipes to the end before waiting, or a chatty child blocks on a full pipe.
        let errData = DataBox()
        let errHandle = err.fileHandleForReading
        let errReader = Thread { errData.set(errHandle.readDataToEndOfFile()) }
        errReader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !errReader.isFinished { usleep(1000) }
        timer.cancel()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData.get(), as: UTF8.self))
    }

    /// A fresh empty directory for one test.
    public static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "dml-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

extension MPIRunner {
    /// Runs `body(j)` for j in 0..<count, two at a time (each job is mostly mpirun's start-up), and returns
    /// the results by index.
    public static func twoAtATime<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) -> T?) -> [T?] {
        let slots = Slots<T>(count: count)
        DispatchQueue.concurrentPerform(iterations: (count + 1) / 2) { pair in
            for j in [2 * pair, 2 * pair + 1] where j < count { slots.set(j, body(j)) }
        }
        return slots.all
    }
}

/// Results written by several threads.
final class Slots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [T?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ v: T?) { lock.lock(); values[i] = v; lock.unlock() }
    var all: [T?] { lock.lock(); defer { lock.unlock() }; return values }
}

/// Bytes read on one thread and used on another.
final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}
