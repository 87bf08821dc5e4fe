import Foundation
import DMLTraining

/// A model's outputs for this rank's rows, and what they mean: class probabilities (softmax, MLP), P(class 1)
/// (logistic, one output) or values (linear).
public struct Predictions {
    /// `rows × outputs` values, row-major, as `Model.predict` wrote them.
    public let outputs: [Float]
    public let rows: Int
    /// Values per row: the model's outputs (1 for logistic and linear).
    public let width: Int
    /// Classes, 0 for regression.
    public let classes: Int

    public init(outputs: [Float], rows: Int, width: Int, classes: Int) {
        precondition(outputs.count == rows * width)
        self.outputs = outputs
        self.rows = rows
        self.width = width
        self.classes = classes
    }

    /// P(class `c`) of row `row`, in Double. A one-output classifier (logistic) gives p = P(class 1) and
    /// 1 − p formed in Double, as scikit-learn forms it from a 1-D score.
    @inline(__always)
    public func probability(_ row: Int, _ c: Int) -> Double {
        if width == 1 { let p = Double(outputs[row]); return c == 1 ? p : 1 - p }
        return Double(outputs[row * width + c])
    }

    /// The predicted class of `row`: the most probable, the lowest on a tie (for logistic: class 1 when
    /// p > ½, as scikit-learn predicts from a positive decision function).
    @inline(__always)
    public func predictedClass(_ row: Int) -> Int {
        if width == 1 { return outputs[row] > 0.5 ? 1 : 0 }
        let base = row * width
        var best = 0
        for c in 1..<width where outputs[base + c] > outputs[base + best] { best = c }
        return best
    }

    /// A binary classifier's score for ROC AUC: P(class 1) as the model computed it.
    @inline(__always)
    public func positiveScore(_ row: Int) -> Float { width == 1 ? outputs[row] : outputs[row * width + 1] }

    /// The first row whose outputs are not all finite, if any.
    public var firstNonFiniteRow: Int? {
        outputs.firstIndex { !$0.isFinite }.map { $0 / width }
    }
}

/// This rank's part of the predictions file: its rows, in order, as bytes (rank 0's part starts with the
/// file's header). Parts concatenated in rank order are the whole file (`SharedAtomicFile`), whose content
/// depends on the rows alone, not on how they were shared out.
///
/// - CSV: a header line (`prediction`, or the class labels with probabilities), then one line per row: the
///   label as the training file wrote it, the probabilities (comma-separated, class order) or the value.
///   Numbers are the shortest text that reads back as the same Float32 (Swift's `description`).
/// - `.npy` (version 1.0, C order): labels as int64 (float64 when a label is not an integer) of shape
///   (rows,), probabilities as float32 (rows, classes), values as float32 (rows,); the header carries the
///   global row count, so only the ranks' row counts are needed to place every part.
///
/// Cost: one pass over this rank's outputs; memory: its part.
public struct PredictionFile {
    public let format: PredictionFileFormat
    public let content: PredictionContent
    /// The class labels as text, class i first (the model's `labels`, or 0…k−1).
    public let labels: [String]

    public init(format: PredictionFileFormat, content: PredictionContent, labels: [String]) {
        self.format = format
        self.content = content
        self.labels = labels
    }

    /// Columns per row: classes for probabilities, else 1.
    var columns: Int { content == .probabilities ? labels.count : 1 }

    /// This rank's bytes; `globalRows` (all ranks' rows) goes into the `.npy` header, written when `first`.
    public func part(_ p: Predictions, first: Bool, globalRows: Int) -> [UInt8] {
        switch format {
        case .csv: return csv(p, first: first)
        case .npy: return npy(p, first: first, globalRows: globalRows)
        }
    }

    private func csv(_ p: Predictions, first: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(p.rows * columns * 12 + 64)
        if first {
            out += Array((content == .probabilities ? labels.map(Self.csvField).joined(separator: ",") : "prediction").utf8)
            out.append(UInt8(ascii: "\n"))
        }
        let labelBytes = labels.map { Array(Self.csvField($0).utf8) }
        for r in 0..<p.rows {
            switch content {
            case .labels:
                out += labelBytes[p.predictedClass(r)]
            case .values:
                out += Array(p.outputs[r].description.utf8)
            case .probabilities:
                for c in 0..<columns {
                    if c > 0 { out.append(UInt8(ascii: ",")) }
                    // A one-output classifier's class 0 is 1 − p, in the Float32 the file holds.
                    let v = p.width == 1 ? (c == 1 ? p.outputs[r] : 1 - p.outputs[r]) : p.outputs[r * p.width + c]
                    out += Array(v.description.utf8)
                }
            }
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// A text label as a CSV field: quoted (RFC 4180, `"` doubled) when it holds a comma, a quote, a line end or
    /// blanks at either end, so that a CSV reader gets the label back exactly.
    static func csvField(_ s: String) -> String {
        let needs = s.contains { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" || $0 == ";" || $0 == "\t" }
            || s.first == " " || s.last == " "
        return needs ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    /// Whether the labels can be written to `.npy` (numbers only: text labels need a CSV output).
    public var labelsAreNumbers: Bool { labels.allSatisfy { Double($0) != nil } }

    /// Labels as int64 when every one is an integer, else float64.
    private var integerLabels: [Int64]? {
        let values = labels.map { Int64($0) }
        return values.allSatisfy { $0 != nil } ? values.map { $0! } : nil
    }

    private func npy(_ p: Predictions, first: Bool, globalRows: Int) -> [UInt8] {
        var out: [UInt8] = []
        func append<T>(_ v: T) { withUnsafeBytes(of: v) { out += $0 } }
        switch content {
        case .labels:
            if first { out += Self.npyHeader(descr: integerLabels == nil ? "<f8" : "<i8", shape: [globalRows]) }
            if let ints = integerLabels {
                for r in 0..<p.rows { append(ints[p.predictedClass(r)].littleEndian) }
            } else {
                let values = labels.map { Double($0) ?? .nan }
                for r in 0..<p.rows { append(values[p.predictedClass(r)].bitPattern.littleEndian) }
            }
        case .values:
            if first { out += Self.npyHeader(descr: "<f4", shape: [globalRows]) }
            for r in 0..<p.rows { append(p.outputs[r].bitPattern.littleEndian) }
        case .probabilities:
            if first { out += Self.npyHeader(descr: "<f4", shape: [globalRows, columns]) }
            for r in 0..<p.rows {
                for c in 0..<columns {
                    let v = p.width == 1 ? (c == 1 ? p.outputs[r] : 1 - p.outputs[r]) : p.outputs[r * p.width + c]
                    append(v.bitPattern.littleEndian)
                }
            }
        }
        return out
    }

    /// A `.npy` version 1.0 header: magic, version, header length, the dict padded with spaces and ended
    /// by a newline so that the data starts at a multiple of 64 bytes.
    static func npyHeader(descr: String, shape: [Int]) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        while (10 + dict.utf8.count + 1) % 64 != 0 { dict += " " }
        dict += "\n"
        let n = dict.utf8.count
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 0xFF), UInt8(n >> 8)] + Array(dict.utf8)
    }
}
