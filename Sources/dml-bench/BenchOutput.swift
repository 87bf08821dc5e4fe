import DMLStatus
import DMLTraining
import Foundation

/// What every `dml-bench` subcommand shares for its output: a CSV table written atomically, a median,
/// and right-aligned columns for the printed tables.
enum BenchOutput {
    /// A CSV file: the header line, then one line per row (fields are plain numbers and names, no quoting).
    static func csvText(header: [String], rows: [[String]]) -> String {
        ([header] + rows).map { $0.joined(separator: ",") + "\n" }.joined()
    }

    /// Writes `csvText(header:rows:)` to `path` atomically (temp file, fsync, rename); a failure names the
    /// flag and the file.
    static func writeCSV(header: [String], rows: [[String]], to path: String) throws {
        do { try AtomicFile.write(Array(csvText(header: header, rows: rows).utf8), to: path) } catch {
            throw BenchError("--csv: \(error)", cause: error)
        }
    }

    /// The median of `values` (the mean of the middle two for an even count). `values` must not be empty.
    static func median(_ values: [Double]) -> Double {
        let s = values.sorted(), n = s.count
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    }

    /// `s` right-aligned in `width` columns (with one leading space when it is wider).
    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? " " + s : String(repeating: " ", count: width - s.count) + s
    }

    /// `s` centred in `width` columns.
    static func center(_ s: String, _ width: Int) -> String {
        let left = Swift.max(0, (width - s.count) / 2)
        return String(repeating: " ", count: left) + s + String(repeating: " ", count: Swift.max(0, width - left - s.count))
    }
}

/// A benchmark failure with its message (printed once, by `dml-bench`'s error handling) and the kind of
/// the error it reports (its exit status).
struct BenchError: ClassifiedError, CustomStringConvertible {
    let description: String
    let failureKind: FailureKind
    /// `message` about `cause`: the kind is the cause's.
    init(_ message: String, cause: Error) {
        description = message
        failureKind = FailureKind(of: cause)
    }
}
