import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs one attempt of the job as a child process: its stdout passes straight through, its stderr is
/// passed through *and* its last lines are kept for the final report. SIGINT and SIGTERM sent to the
/// supervisor are forwarded to the job (so a preempted job can checkpoint) and stop further restarts.
final class Supervisor {
    private(set) var interrupted = false
    /// Signals to send the job instead of the one received: mpirun does not pass SIGTERM/SIGINT on to its
    /// ranks (it kills them a second later) but forwards SIGUSR1, which dml-train takes as a stop request.
    var translate: [Int32: Int32] = [:]
    private var child: Process?
    private var signalSources: [DispatchSourceSignal] = []

    init() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.interrupted = true
                if let c = self.child, c.isRunning { kill(c.processIdentifier, self.translate[sig] ?? sig) }
            }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Runs `argv` (looked up on the PATH) and returns its exit status (128 + signal when killed by one)
    /// and the last 20 lines it wrote to stderr.
    func run(_ argv: [String]) throws -> (Int32, [String]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        let err = Pipe()
        process.standardError = err
        // A plain thread doing blocking reads until end of file: Foundation's readabilityHandler does not
        // reliably deliver the end of file on Linux, which left the supervisor waiting forever.
        let reader = StderrTail(fd: err.fileHandleForReading.fileDescriptor, keep: 20)
        do { try process.run() } catch {
            throw ValidationErrorMessage("cannot start \(argv.first ?? ""): \(error.localizedDescription)")
        }
        child = process
        // Our copy of the pipe's write end must go, or the reader never sees the end of file.
        try? err.fileHandleForWriting.close()
        reader.start()
        process.waitUntilExit()
        let tail = reader.finish()
        child = nil
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return (status, tail.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty && !$0.hasPrefix("-----") })
    }
}

/// Copies a child's stderr to ours as it arrives and keeps its last `keep` lines for the final report.
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

struct ValidationErrorMessage: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
