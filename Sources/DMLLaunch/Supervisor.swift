#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Runs the attempts of a job as child processes and takes `dml-launch`'s stop signals (SIGTERM, SIGINT):
/// the first one is recorded as the stop request, every one is passed on to a running attempt (translated,
/// see `translate`), and a back-off wait (`wait(seconds:)`) ends as soon as one arrives.
///
/// Thread safety: the signal handlers run on a dispatch queue, the attempts on the caller's thread; the
/// stop request and the running child are only touched under `condition`'s lock. A child is started with
/// that lock held, so a signal is either seen before the start (the attempt is not started) or passed on
/// to the child: it cannot fall in between.
public final class Supervisor: @unchecked Sendable {
    /// What one attempt did.
    public struct Attempt: Sendable {
        /// The exit status (128 + N when killed by signal N).
        public let status: Int32
        /// The last lines the attempt wrote to standard error (blank lines and mpirun's `-----` rules
        /// left out), for the final report.
        public let errorTail: [String]
        public let seconds: Double
    }

    /// Signals sent to the child instead of the one received. mpirun does not pass SIGTERM/SIGINT on to its
    /// ranks (it kills them a second later) but forwards SIGUSR1, which dml-train takes as a stop request.
    public let translate: [Int32: Int32]
    private let condition = NSCondition()
    /// The first stop signal received (guarded by `condition`).
    private var received: Int32?
    /// The running attempt (guarded by `condition`).
    private var child: Process?
    private var sources: [DispatchSourceSignal] = []

    /// Takes over `signals` for the life of the process (their default action, ending the process, is
    /// replaced by the stop request). Create one per process.
    public init(translate: [Int32: Int32] = [:], signals: [Int32] = [SIGINT, SIGTERM]) {
        self.translate = translate
        for sig in signals {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in self?.stop(by: sig) }
            source.resume()
            sources.append(source)
        }
    }

    /// The first stop signal received, or nil.
    public var stopSignal: Int32? {
        condition.lock()
        defer { condition.unlock() }
        return received
    }

    /// Records a stop request (as a signal does): passes `sig` on to the running attempt, wakes a back-off
    /// wait. Safe from any thread.
    public func stop(by sig: Int32) {
        condition.lock()
        if received == nil { received = sig }
        if let c = child, c.isRunning { kill(c.processIdentifier, translate[sig] ?? sig) }
        condition.broadcast()
        condition.unlock()
    }

    /// Waits `seconds`, or less if a stop is requested; returns the stop signal (at once if one came
    /// earlier), or nil when the time ran out. Cost: one sleep on a condition, no polling.
    public func wait(seconds: Double) -> Int32? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock()
        defer { condition.unlock() }
        while received == nil && condition.wait(until: deadline) {}
        return received
    }

    /// Runs `argv` (looked up on the PATH through `/usr/bin/env`), with `environment` added to this
    /// process's, and waits for it. Its standard output passes straight through; its standard error is
    /// passed through and its last 20 lines kept. Returns nil without starting it when a stop has been
    /// requested. Throws when it cannot be started at all.
    public func run(_ argv: [String], environment: [String: String] = [:]) throws -> Attempt? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let err = Pipe()
        process.standardError = err
        // A plain thread doing blocking reads until end of file: Foundation's readabilityHandler does not
        // reliably deliver the end of file on Linux, which left the supervisor waiting forever.
        let reader = StderrTail(fd: err.fileHandleForReading.fileDescriptor, keep: 20)
        let started = Date()
        condition.lock()
        guard received == nil else {
            condition.unlock()
            return nil
        }
        do { try process.run() } catch {
            condition.unlock()
            throw LaunchError("cannot start \(argv.first ?? ""): \(error.localizedDescription)")
        }
        child = process
        condition.unlock()
        // Our copy of the pipe's write end must go, or the reader never sees the end of file.
        try? err.fileHandleForWriting.close()
        reader.start()
        process.waitUntilExit()
        let tail = reader.finish()
        condition.lock()
        child = nil
        condition.unlock()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Attempt(status: status,
                       errorTail: tail.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty && !$0.hasPrefix("-----") },
                       seconds: Date().timeIntervalSince(started))
    }
}

/// Copies a child's stderr to ours as it arrives and keeps its last `keep` lines for the final report.
/// `lines` and `pending` belong to the reading thread until `finish` has waited for it (the semaphore
/// orders the two).
final class StderrTail: @unchecked Sendable {
    private let fd: Int32
    private let keep: Int
    private var lines: [String] = []
    private var pending: [UInt8] = []
    private let done = DispatchSemaphore(value: 0)

    init(fd: Int32, keep: Int) { self.fd = fd; self.keep = keep }

    func start() {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                _ = buffer.withUnsafeBytes { write(2, $0.baseAddress, n) }
                pending.append(contentsOf: buffer[0..<n])
                while let nl = pending.firstIndex(of: 0x0A) {
                    lines.append(String(decoding: pending[0..<nl], as: UTF8.self))
                    pending.removeSubrange(0...nl)
                    if lines.count > keep { lines.removeFirst(lines.count - keep) }
                }
            }
            done.signal()
        }
        thread.start()
    }

    /// Waits for the end of the child's stderr and returns the kept lines.
    func finish() -> [String] {
        done.wait()
        if !pending.isEmpty { lines.append(String(decoding: pending, as: UTF8.self)) }
        return lines
    }
}

/// A launcher failure with its message (a command that cannot be started).
public struct LaunchError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
