#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DMLKernels

/// What the readers produce on one rank before the ranks agree on anything: the rows of its part, labels
/// still as they were written in the file.
struct RawShard {
    /// The rows as CSR (LIBSVM kept sparse); `x` is then empty.
    var csr: CSRMatrix? = nil
    var features: Int
    /// `rows × features` values, row-major.
    var x: [Float]
    /// The label or target of each row, as written.
    var labels: [Double]
    /// Lines (text) this rank read, blank ones included: the other ranks need them to number lines.
    var lines: Int = 0
    /// For each distinct label, the first local line (text) or local row (`.npy`) it occurs on: enough to
    /// point at a label that the training set does not have.
    var labelFirstSeen: [Double: Int] = [:]
    /// `labelFirstSeen` for the labels 0 ..< 256 (-1: not seen), checked first.
    var smallLabelsSeen: [Int] = []
    /// Class labels that are not numbers (CSV: `cat`, `"dog"`), this rank's distinct ones in first-seen order,
    /// with the local line each first occurs on.
    var labelTexts: [String] = []
    var labelTextIndex: [String: Int32] = [:]
    var labelTextFirstSeen: [Int] = []
    /// Per row, -1 for a numeric label (in `labels`) or its index in `labelTexts`; empty while no text label
    /// has been seen (so numeric files pay nothing for it).
    var textLabelOfRow: [Int32] = []
    /// CSV `--categorical` columns: per slot, this rank's distinct values (first-seen order), their index and the
    /// local line each first occurs on; `categoryIds` holds `rows × slots` local value indices.
    var categoryTexts: [[String]] = []
    var categoryIndex: [[String: Int32]] = []
    var categoryFirstSeen: [[Int]] = []
    var categoryIds: [Int32] = []
    /// CSV: whether column 0 held exactly `indexStart, indexStart + 1, …` on every row (a pandas index).
    var indexLike = true
    var indexStart = 0.0
    /// A chunked parse with `--missing mean` (`parseCSVInChunks`, whose `x` is empty): each feature's sum of
    /// non-missing values, then their counts (`2 × features`), and the missing values seen.
    var columnSums: [Double]? = nil
    var missingValues = 0

    var rows: Int { labels.count }
}

@inline(__always) func isBlank(_ c: UInt8) -> Bool { c == 32 || c == 9 }

/// The message for a token that is not a number.
func badNumber(_ token: String) -> String {
    let t = token.lowercased().trimmingCharacters(in: ["+", "-"])
    if ["nan", "inf", "infinity"].contains(t) { return "\(token) is not a finite number (NaN and infinite values are not allowed)" }
    if token.isEmpty { return "empty value (missing values are not supported)" }
    return "\"\(token.prefix(40))\" is not a number"
}

extension String {
    fileprivate func trimmingCharacters(in set: Set<Character>) -> Substring {
        self.drop { set.contains($0) }
    }
}

extension RawShard {
    /// Appends a row's label, checking it (finite; an integer for classification).
    mutating func addLabel(_ v: Double, line: Int, column: Int?, classification: Bool) throws {
        if classification {
            guard v == v.rounded(), abs(v) < 1e15 else {
                throw LocalLineError(localLine: line, column: column,
                                     message: "class label \(v) is not an integer (use --task regression for real-valued targets)")
            }
            // Most label sets are small non-negative integers: an array spares a hash lookup per row.
            if v >= 0 && v < 256 {
                if smallLabelsSeen.isEmpty { smallLabelsSeen = [Int](repeating: -1, count: 256) }
                let i = Int(v)
                if smallLabelsSeen[i] < 0 { smallLabelsSeen[i] = line; labelFirstSeen[v] = line }
            } else if labelFirstSeen[v] == nil {
                labelFirstSeen[v] = line
            }
        }
        labels.append(v)
        if !textLabelOfRow.isEmpty { textLabelOfRow.append(-1) }
    }

    /// Records a row's value of categorical slot `slot` (its text as written, unquoted and trimmed).
    mutating func addCategory(_ bytes: UnsafeBufferPointer<UInt8>, slot: Int, line: Int) {
        let text = String(decoding: bytes, as: UTF8.self)
        if let id = categoryIndex[slot][text] { categoryIds.append(id); return }
        let id = Int32(categoryTexts[slot].count)
        categoryIndex[slot][text] = id
        categoryTexts[slot].append(text)
        categoryFirstSeen[slot].append(line)
        categoryIds.append(id)
    }

    /// Appends a class label that is not a number (as written, unquoted and trimmed).
    mutating func addTextLabel(_ text: String, line: Int) {
        if textLabelOfRow.isEmpty { textLabelOfRow = [Int32](repeating: -1, count: labels.count) }
        let id: Int32
        if let known = labelTextIndex[text] { id = known } else {
            id = Int32(labelTexts.count)
            labelTextIndex[text] = id
            labelTexts.append(text)
            labelTextFirstSeen.append(line)
        }
        labels.append(0)
        textLabelOfRow.append(id)
    }
}

/// Parses the lines of one rank's byte range of a LIBSVM / SVMlight file: `label idx:val idx:val …`, indices
/// 1-based, `# comments` and `qid:` tokens ignored. Rows are kept sparse (CSR) until the ranks agree on the
/// number of features (the largest index over all ranks, or `--features`, or 2^B hashed) and on whether they
/// stay CSR (`--sparse`). With `hash`, each row's indices are checked as written, then mapped to their
/// buckets (`FeatureHash.hashRow`).
struct LIBSVMParser {
    let file: String
    let classification: Bool
    /// Indices above this are an error (from `--features`, or the training set's count for a test set).
    let maxFeatures: Int?
    var hash: FeatureHash? = nil

    struct Sparse {
        var shard = RawShard(features: 0, x: [], labels: [])
        var indices: [Int32] = []
        var values: [Float] = []
        var rowEnds: [Int] = []
        var maxIndex = 0
    }

    /// `estimatedRows`/`estimatedNonZeros`: the arrays are reserved once at about their final size, so they
    /// do not grow by doubling copies (which would double the peak memory).
    func parse(_ lines: LineRange, estimatedRows: Int = 0, estimatedNonZeros: Int = 0) throws -> Sparse {
        var s = Sparse()
        s.indices.reserveCapacity(estimatedNonZeros)
        s.values.reserveCapacity(estimatedNonZeros)
        s.rowEnds.reserveCapacity(estimatedRows)
        s.shard.labels.reserveCapacity(estimatedRows)
        try parse(lines, into: &s)
        return s
    }

    /// Appends the rows of `lines` to `s`, the rows of the lines just before them: line indices (of errors and
    /// first-seen labels) continue from `s.shard.lines`. Throws at the first bad line, leaving `s` partly
    /// appended.
    func parse(_ lines: LineRange, into s: inout Sparse) throws {
        var scratch: [(Int32, Float)] = []
        let base = s.shard.lines
        let count = try lines.forEachLine { line, local in
            let index = base + local
            let rowStart = s.indices.count
            guard var p = line.baseAddress else { return }
            var end = p + line.count
            // memchr (vectorised) rather than a byte loop: every line is scanned for a comment.
            if let hash = memchr(p, Int32(UInt8(ascii: "#")), line.count) { end = UnsafePointer(hash.assumingMemoryBound(to: UInt8.self)) }
            while p < end && isBlank(p.pointee) { p += 1 }
            if p == end { return }
            var column = 1
            guard let (label, afterLabel) = DecimalParser.parse(p, end),
                  afterLabel == end || isBlank(afterLabel.pointee) else {
                throw LocalLineError(localLine: index, column: 1, message: "label " + badNumber(word(p, end)))
            }
            guard label.isFinite else {
                throw LocalLineError(localLine: index, column: 1, message: "label " + badNumber(word(p, end)))
            }
            try s.shard.addLabel(label, line: index, column: 1, classification: classification)
            p = afterLabel
            var previous = 0
            while true {
                while p < end && isBlank(p.pointee) { p += 1 }
                if p == end { break }
                column += 1
                let tokenStart = p
                var idx = 0
                var idxDigits = 0
                while p < end, case let d = p.pointee &- 48, d < 10 {
                    if idx < Int(Int32.max) { idx = idx * 10 + Int(d) }
                    idxDigits += 1
                    p += 1
                }
                if idxDigits == 0 && word(tokenStart, end).hasPrefix("qid:") {
                    while p < end && !isBlank(p.pointee) { p += 1 }
                    continue
                }
                guard idxDigits > 0 && p < end && p.pointee == UInt8(ascii: ":") else {
                    throw LocalLineError(localLine: index, column: column, message: "\"\(word(tokenStart, end))\" is not index:value")
                }
                guard idx >= 1 else {
                    throw LocalLineError(localLine: index, column: column, message: "feature index 0: LIBSVM indices start at 1")
                }
                // idx stops growing at Int32.max, so a longer index would be silently wrong: refuse it.
                guard idx < Int(Int32.max) else {
                    throw LocalLineError(localLine: index, column: column, message: "feature index \(word(tokenStart, p)) is too large (at most \(Int32.max - 1))")
                }
                guard idx != previous else {
                    throw LocalLineError(localLine: index, column: column, message: "feature index \(idx) appears twice in the row")
                }
                guard idx > previous else {
                    throw LocalLineError(localLine: index, column: column, message: "feature index \(idx) is not above the previous one (\(previous))")
                }
                if let m = maxFeatures, idx > m {
                    throw LocalLineError(localLine: index, column: column, message: "feature index \(idx) but the data has \(m) features")
                }
                p += 1
                // A lone single digit ("1": most values of one-hot and hashed data) is that digit, exactly what
                // DecimalParser gives, without the call.
                if p < end, case let d = p.pointee &- 48, d < 10, p + 1 == end || isBlank((p + 1).pointee) {
                    p += 1
                    previous = idx
                    s.indices.append(Int32(idx - 1))
                    s.values.append(Float(d))
                    continue
                }
                guard let (v, after) = DecimalParser.parse(p, end), after == end || isBlank(after.pointee) else {
                    throw LocalLineError(localLine: index, column: column, message: badNumber(word(p, end)))
                }
                guard v.isFinite && abs(v) <= Double(Float.greatestFiniteMagnitude) else {
                    throw LocalLineError(localLine: index, column: column, message: "\(word(p, end)) is not a finite number in 32-bit float range")
                }
                p = after
                previous = idx
                s.indices.append(Int32(idx - 1))
                s.values.append(Float(v))
            }
            s.maxIndex = Swift.max(s.maxIndex, previous)
            if let hash { hash.hashRow(indices: &s.indices, values: &s.values, from: rowStart, scratch: &scratch) }
            s.rowEnds.append(s.indices.count)
        }
        s.shard.lines += count
    }

    private func word(_ start: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> String {
        var q = start
        while q < end && !isBlank(q.pointee) { q += 1 }
        return String(decoding: UnsafeBufferPointer(start: start, count: q - start), as: UTF8.self)
    }
}

extension LIBSVMParser.Sparse {
    /// The rows as CSR, `features` wide; frees the parser's arrays (moved, not copied).
    mutating func csr(features: Int) -> CSRMatrix {
        var starts = [Int]()
        starts.reserveCapacity(rowEnds.count + 1)
        starts.append(0)
        starts.append(contentsOf: rowEnds)
        rowEnds = []
        let m = CSRMatrix(columns: features, rowStarts: starts, indices: indices, values: values)
        indices = []
        values = []
        return m
    }

    /// The dense rows, `features` wide; frees the sparse form.
    mutating func densify(features: Int) -> RawShard {
        var out = shard
        out.features = features
        out.x = [Float](repeating: 0, count: rowEnds.count * features)
        out.x.withUnsafeMutableBufferPointer { x in
            var start = 0
            for (r, end) in rowEnds.enumerated() {
                for k in start..<end { x[r * features + Int(indices[k])] = values[k] }
                start = end
            }
        }
        indices = []
        values = []
        return out
    }
}
