#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLComm

/// Rank 0's progress output. On a terminal the line rewrites itself; in a batch log (stdout not a
/// terminal, as under Slurm) each report is a plain line, so the log stays readable. Under mpirun the
/// rank's stdout is a relay that may look like a terminal wherever the output goes, so plain lines are used.
public struct ProgressPrinter {
    public let interactive: Bool
    private let started = Date()
    /// The step the run (re)started from: the ETA is measured from here.
    public let firstStep: Int

    public init(interactive: Bool = isatty(STDOUT_FILENO) == 1 && !LauncherEnvironment.isLaunched, firstStep: Int = 0) {
        self.interactive = interactive
        self.firstStep = firstStep
    }

    public func report(_ r: StepReport) {
        let elapsed = Date().timeIntervalSince(started)
        let done = r.step - firstStep
        let eta = done > 0 ? elapsed / Double(done) * Double(r.totalSteps - r.step) : 0
        let width = String(r.totalSteps).count
        let line = "step \(pad(r.step, width))/\(r.totalSteps)  epoch \(r.epoch + 1)  loss \(String(format: "%.6f", r.loss))  "
            + r.figures.map { "\($0.name.replacingOccurrences(of: "_", with: " ")) \(Self.figure($0.value))  " }.joined()
            + "\(Self.grouped(r.samplesPerSecond)) samples/s  elapsed \(Self.duration(elapsed))  eta \(Self.duration(eta))"
        if interactive {
            print("\r" + line + "\u{1B}[K", terminator: r.step == r.totalSteps ? "\n" : "")
        } else {
            print(line)
        }
        fflush(nil)
    }

    private func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return String(repeating: " ", count: Swift.max(0, width - s.count)) + s
    }

    /// A strategy's figure: an integer as it is, else 7 significant digits (`%.7g`).
    static func figure(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : String(format: "%.7g", value)
    }

    /// 1234567.8 → "1,234,568".
    public static func grouped(_ value: Double) -> String {
        let digits = String(Int(value.rounded()))
        var out = ""
        for (i, ch) in digits.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return String(out.reversed())
    }

    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds < 1e12 else { return "?" }
        let s = Int(seconds.rounded())
        if s >= 86_400 { return "\(s / 86_400)d\(String(format: "%02d", s % 86_400 / 3600))h" }
        if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", s % 3600 / 60))m" }
        return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }
}
