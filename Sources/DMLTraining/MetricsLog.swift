import Foundation
import DMLStatus

/// The `--metrics` file: JSON lines, one object per logged step, per evaluation and a last
/// `"event": "final"` line. Only rank 0 creates one. Keys: `step`, `epoch`, `loss`, `lr`,
/// `samples_per_s` on every line; evaluation lines add `event: "eval"`, `test_loss`, `test_accuracy`.
/// A strategy's own figures (`TrainingStrategy.stepFigures`: a full-batch method's `objective`, `grad_norm`, …)
/// follow on its step lines; a strategy without a learning rate (`usesLearningRate`) writes no `lr`.
/// A fresh run starts the file anew; a resumed run keeps the lines up to its checkpoint. A failed write
/// (a full disk) is an `AtomicFile.WriteError` (`.ioError`), never a crash.
public final class MetricsLog {
    public let path: String
    private let handle: FileHandle

    /// Opens `path` for a run starting at `resumedStep`: a fresh run truncates it; a resumed run keeps
    /// the lines of steps up to `resumedStep` (dropping what the interrupted run logged after its last
    /// checkpoint, and its final line), so the file reads as one continuous run.
    public init(path: String, resumedStep: Int?) throws {
        self.path = path
        var kept: [UInt8] = []
        if let s = resumedStep, let old = FileManager.default.contents(atPath: path) {
            for line in String(decoding: old, as: UTF8.self).split(separator: "\n") {
                guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let step = obj["step"] as? Int, step <= s, obj["event"] as? String != "final" else { continue }
                kept += Array(line.utf8) + [0x0A]
            }
        }
        try AtomicFile.write(kept, to: path)
        guard let h = FileHandle(forWritingAtPath: path) else {
            throw AtomicFile.WriteError(path: path, reason: "cannot open for appending", kind: .cannotCreate)
        }
        h.seekToEndOfFile()
        handle = h
    }

    deinit { try? handle.close() }

    /// Appends one line; keys keep the given order. Non-finite numbers are written as null. Throws
    /// `AtomicFile.WriteError` (`.ioError`) when the write fails.
    public func append(_ fields: KeyValuePairs<String, Any?>) throws {
        try append(fields.map { ($0.key, $0.value) })
    }

    /// `append` with the fields as an array (a line whose keys are known only at run time).
    public func append(_ fields: [(key: String, value: Any?)]) throws {
        var parts = ["\"time\": " + Self.json(Self.timestamp.string(from: Date()))]
        for (k, v) in fields {
            guard let v = v else { continue }
            parts.append("\"\(k)\": " + Self.json(v))
        }
        do {
            try handle.write(contentsOf: Data(("{" + parts.joined(separator: ", ") + "}\n").utf8))
        } catch {
            throw AtomicFile.WriteError(path: path, reason: "write failed: \((error as NSError).localizedDescription)", kind: .ioError)
        }
    }

    /// Wall-clock time of each line (ISO 8601, UTC, milliseconds).
    nonisolated(unsafe) static let timestamp: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    static func json(_ v: Any) -> String {
        switch v {
        case let d as Double: return d.isFinite ? "\(d)" : "null"
        case let f as Float: return f.isFinite ? "\(f)" : "null"
        case let i as Int: return String(i)
        case let s as String:
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default: out += u.value < 0x20 ? String(format: "\\u%04x", u.value) : String(u)
                }
            }
            return out + "\""
        default: return "null"
        }
    }
}
