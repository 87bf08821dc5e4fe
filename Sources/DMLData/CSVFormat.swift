#if canImport(Glibc)
import Glibc
#endif
import DMLKernels

/// How CSV fields are separated (`--delimiter`).
public enum Delimiter: String, Sendable, CaseIterable {
    /// Detected from the first record (outside quotes, so every rank decides alike from the same bytes): `;` when
    /// it has one (spreadsheets in locales whose decimal mark is the comma write `;` between fields, so such a
    /// file may also hold commas), else `,`, else tab, else whitespace.
    case auto
    /// `,` (spaces around fields are allowed).
    case comma
    /// `;` (a decimal comma, `1,5`, is then read as 1.5).
    case semicolon
    /// One tab between fields (empty fields allowed).
    case tab
    /// Runs of spaces and tabs.
    case whitespace

    /// The separator byte; nil for whitespace (and for `auto`, which `resolved` replaces).
    var byte: UInt8? {
        switch self {
        case .comma: return UInt8(ascii: ",")
        case .semicolon: return UInt8(ascii: ";")
        case .tab: return 9
        case .whitespace, .auto: return nil
        }
    }

    /// `auto`'s choice for a file whose first record (without its line end) is `record`; other cases unchanged.
    func resolved(firstRecord record: [UInt8]) -> Delimiter {
        guard self == .auto else { return self }
        var inside = false
        var seen: Set<UInt8> = []
        for b in record {
            if b == UInt8(ascii: "\"") { inside.toggle() } else if !inside { seen.insert(b) }
        }
        if seen.contains(UInt8(ascii: ";")) { return .semicolon }
        if seen.contains(UInt8(ascii: ",")) { return .comma }
        if seen.contains(9) { return .tab }
        return .whitespace
    }
}

/// What a CSV reader does with a missing feature value: an empty field, or `NA`, `NaN`, `null`, `?` (any case),
/// quoted or not (`--missing`).
public enum MissingPolicy: String, Sendable, CaseIterable {
    /// Refuse the file, naming the first missing value's line and column.
    case error
    /// Read it as 0.
    case zero
    /// Replace it with the column's mean over the training rows of all ranks (one allreduce), which the model
    /// file stores (`missing_fill`) so prediction fills its inputs with the same values.
    case mean
}

/// How `--categorical` columns become features (`--categorical-encoding`).
public enum CategoricalEncoding: String, Sendable, CaseIterable {
    /// One 0/1 feature per category of the training data (the sorted union over all ranks), in the column's place.
    case onehot
    /// Feature hashing into the 2^B columns of `--hash-bits` (`FeatureHash`): the rows become CSR; numeric feature
    /// i (1-based, in file order among the numeric ones) goes where LIBSVM index i would, a category to the bucket
    /// of `COLUMN=VALUE`. No category list: any value has a bucket, so none is unseen.
    case hash
}

/// What a `--categorical` value the training data did not have becomes at prediction (`--categorical-unseen`).
public enum UnseenCategory: String, Sendable, CaseIterable {
    /// An all-zero block (the row matches no category); the count is logged.
    case zero
    /// One message naming the file, line and column.
    case error
}

/// The CSV layout every rank derives from the file's first record (each rank reads that record itself, so no
/// communication is needed and all ranks decide the same).
struct CSVLayout {
    /// Nil: fields are separated by runs of blanks.
    var separator: UInt8?
    var delimiter: Delimiter
    var hasHeader: Bool
    var columns: Int
    var labelColumn: Int?
    /// The header's fields (unquoted), or empty without a header.
    var names: [String]
    /// Per column, whether `--drop-columns` removed it (its fields are skipped unread).
    var dropped: [Bool]
    /// Bytes of a UTF-8 byte-order mark at the file's start (0 or 3).
    var bom: Int
    /// Whether the first record holds a `"`: the reader then parses quotes from the start.
    var quotedHead: Bool
    /// Per column, its slot among the `--categorical` columns (in file order), or -1 for other columns.
    var categorySlot: [Int]

    /// The feature columns in file order (neither the label nor dropped), categorical ones included.
    var featureColumns: [Int] { (0..<columns).filter { $0 != labelColumn && !dropped[$0] } }
    /// The number of `--categorical` columns.
    var categoricalCount: Int { categorySlot.filter { $0 >= 0 }.count }
    /// Per column, whether it is dropped or categorical (the parser's fast path skips such columns).
    var special: [Bool] { (0..<columns).map { dropped[$0] || categorySlot[$0] >= 0 } }
}

/// Splits a (short) record into its fields as strings, RFC 4180 quotes removed (`""` inside quotes is one `"`):
/// for the header, the first record and error messages only.
func splitFields(_ line: [UInt8], separator: UInt8?) -> [String] {
    var fields: [String] = []
    var i = 0
    let n = line.count
    while true {
        if separator == nil {
            while i < n && isBlank(line[i]) { i += 1 }
            if i == n { break }
        } else {
            while i < n && isBlank(line[i]) { i += 1 }
        }
        var field: [UInt8] = []
        if i < n && line[i] == UInt8(ascii: "\"") {
            i += 1
            while i < n {
                if line[i] == UInt8(ascii: "\"") {
                    if i + 1 < n && line[i + 1] == UInt8(ascii: "\"") { field.append(line[i]); i += 2; continue }
                    i += 1
                    break
                }
                field.append(line[i])
                i += 1
            }
            while i < n && line[i] != separator && !(separator == nil && isBlank(line[i])) { i += 1 }
        } else {
            while i < n && line[i] != separator && !(separator == nil && isBlank(line[i])) { field.append(line[i]); i += 1 }
            while let last = field.last, isBlank(last) { field.removeLast() }
        }
        fields.append(String(decoding: field, as: UTF8.self))
        if i == n { break }
        if separator != nil { i += 1 } else { i += 1 }
    }
    return fields
}

/// A `"` met while quotes were not being parsed (`CSVParser.quoted` false): the loader then reads the file
/// again with quote-aware record splitting. Thrown by the fast path only.
struct QuoteSeen: Error {
    let localLine: Int
}

/// Parses the records of one rank's byte range of a CSV file (RFC 4180 and as spreadsheets write it).
///
/// **Fast path**: an unquoted numeric field is parsed straight from the bytes (`DecimalParser`), as before
/// quotes existed; only a field that is not a plain number takes the slow path (a missing value, a text label,
/// a quoted field, a decimal comma). **Quotes**: with `quoted` false (the loader's first try) the first `"`
/// throws `QuoteSeen`; with `quoted` true the range was opened with its quote parity (`LineRange.quoteParity`),
/// records may hold quoted newlines, and a quoted field's content (`""` → `"`) is read like any other field.
/// Errors: an unterminated quote, text after a closing quote, a `"` inside an unquoted field, a record whose
/// field count (after unquoting) is not the first record's.
struct CSVParser {
    let layout: CSVLayout
    let classification: Bool
    var missing: MissingPolicy = .error
    var quoted = false

    /// Parses every owned record; throws `LocalLineError` at the first bad one (or `QuoteSeen`, see above).
    /// Missing values under `.mean` are stored as NaN (the loader fills them once the means are agreed).
    func parse(_ lines: LineRange, estimatedRows: Int) throws -> RawShard {
        let features = layout.featureColumns.count - layout.categoricalCount
        var shard = RawShard(features: features, x: [], labels: [])
        shard.x.reserveCapacity(estimatedRows * features)
        shard.labels.reserveCapacity(estimatedRows)
        let atFileStart = lines.range.lowerBound == 0
        let skipFirst = atFileStart && layout.hasHeader
        let columns = layout.columns
        let labelColumn = layout.labelColumn ?? -1
        let separator = layout.separator ?? 0
        let sepMode = layout.separator != nil
        let specialColumns = layout.special
        let special = specialColumns.contains(true)
        let trackIndex = !layout.dropped[0] && layout.categorySlot[0] < 0
        let slots = layout.categoricalCount
        if slots > 0 {
            shard.categoryTexts = Array(repeating: [], count: slots)
            shard.categoryIndex = Array(repeating: [:], count: slots)
            shard.categoryFirstSeen = Array(repeating: [], count: slots)
        }
        var scratch: [UInt8] = []
        shard.indexLike = trackIndex
        shard.lines = try lines.forEachLine { line, index in
            if index == 0 && skipFirst { return }
            guard var p = line.baseAddress else { return }
            let end = p + line.count
            if index == 0 && atFileStart { p += Swift.min(layout.bom, line.count) }
            while p < end && isBlank(p.pointee) { p += 1 }
            if p == end { return }          // blank lines hold no row
            var column = 0
            var label = 0.0
            var textLabel: String?
            var first = Double.nan          // column 0's value, for the index check
            while true {
                if !sepMode { while p < end && isBlank(p.pointee) { p += 1 } }
                if !sepMode && p == end { break }
                guard column < columns else {
                    throw LocalLineError(localLine: index, column: column + 1,
                                         message: "\(fieldCount(line)) fields, but the file has \(columns) (as line 1 shows)")
                }
                if sepMode { while p < end && isBlank(p.pointee) { p += 1 } }
                // The fast path first: a plain column whose field is an unquoted number. Everything else (a
                // quote, a dropped or categorical column, a missing value, a text label) is `rareField`'s, kept out
                // of line so that this loop stays small.
                if !(special && specialColumns[column]), let (v, after) = DecimalParser.parse(p, end),
                   case let q = sepMode ? skipBlanks(after, end) : after,
                   q == end || (sepMode ? q.pointee == separator : isBlank(q.pointee)) {
                    // The grammar has no nan or inf, so a non-finite value is an overflow.
                    let f = Float(v)
                    guard f.isFinite else {
                        throw LocalLineError(localLine: index, column: column + 1,
                                             message: "\(token(p, end)) is outside the 32-bit float range")
                    }
                    p = q
                    if column == 0 { first = v }
                    if column == labelColumn {
                        label = v
                    } else {
                        // Written straight into the shard; a bad line ends the read, so a partial row never survives.
                        shard.x.append(f)
                    }
                } else {
                    p = try rareField(p, end, column: column, line: index, shard: &shard, label: &label, textLabel: &textLabel,
                                      first: &first, scratch: &scratch)
                }
                column += 1
                if p == end { break }
                p += 1      // the separator (or, whitespace-separated, the first blank)
            }
            guard column == columns else {
                throw LocalLineError(localLine: index, column: nil,
                                     message: "\(column) fields, but the file has \(columns) (as line 1 shows)")
            }
            if trackIndex && shard.indexLike {
                if shard.labels.isEmpty { shard.indexStart = first }
                if !(first == shard.indexStart + Double(shard.labels.count)) { shard.indexLike = false }
            }
            if labelColumn >= 0 {
                if let textLabel {
                    shard.addTextLabel(textLabel, line: index)
                } else {
                    try shard.addLabel(label, line: index, column: labelColumn + 1, classification: classification)
                }
            } else {
                shard.labels.append(0)
            }
        }
        return shard
    }

    /// A field the fast path does not take (see `parse`): returns the byte after it (its separator or the
    /// record's end).
    @inline(never)
    private func rareField(_ start: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>, column: Int, line index: Int, shard: inout RawShard,
                           label: inout Double, textLabel: inout String?, first: inout Double, scratch: inout [UInt8]) throws -> UnsafePointer<UInt8> {
        var p = start
        let sepMode = layout.separator != nil
        let dropped = layout.dropped[column], slot = layout.categorySlot[column]
        if p < end && p.pointee == UInt8(ascii: "\"") {
            guard quoted else { throw QuoteSeen(localLine: index) }
            p = try unquote(p, end, into: &scratch, line: index, column: column)
            if sepMode { p = skipBlanks(p, end) }
            guard p == end || (sepMode ? p.pointee == layout.separator! : isBlank(p.pointee)) else {
                throw LocalLineError(localLine: index, column: column + 1,
                                     message: "text after the closing quote of a quoted field (a quote inside a field is written \"\")")
            }
            if slot >= 0 {
                scratch.withUnsafeBufferPointer { shard.addCategory($0, slot: slot, line: index) }
            } else if !dropped {
                try scratch.withUnsafeBufferPointer {
                    try slowField($0, column: column, line: index, shard: &shard, label: &label, textLabel: &textLabel, first: &first)
                }
            }
            return p
        }
        let stop = try tokenEnd(p, end, line: index, column: column)
        if dropped { return stop }
        var last = stop
        while last > p && isBlank((last - 1).pointee) { last -= 1 }
        let field = UnsafeBufferPointer(start: p, count: last - p)
        if slot >= 0 {
            shard.addCategory(field, slot: slot, line: index)
        } else {
            try slowField(field, column: column, line: index, shard: &shard, label: &label, textLabel: &textLabel, first: &first)
        }
        p = stop
        return p
    }

    @inline(__always)
    private func skipBlanks(_ p: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> UnsafePointer<UInt8> {
        var q = p
        while q < end && isBlank(q.pointee) { q += 1 }
        return q
    }

    /// The end of an unquoted field starting at `p`: the next separator (whitespace-separated: blank) or the
    /// record's end. A `"` inside it is `QuoteSeen` (fast path) or an error (quoted path: a quote that neither
    /// opens nor closes a field would make the record boundaries ambiguous).
    private func tokenEnd(_ p: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>, line: Int, column: Int) throws -> UnsafePointer<UInt8> {
        var q = p
        let sep = layout.separator
        while q < end {
            let c = q.pointee
            if let sep { if c == sep { break } } else if isBlank(c) { break }
            if c == UInt8(ascii: "\"") {
                guard quoted else { throw QuoteSeen(localLine: line) }
                throw LocalLineError(localLine: line, column: column + 1,
                                     message: "a quote inside an unquoted field (quote the whole field and write the quote as \"\")")
            }
            q += 1
        }
        return q
    }

    /// Reads the quoted field at `p` (on its opening `"`) into `out`, `""` becoming `"`; returns the byte after
    /// the closing quote. A field that never closes is the unterminated-quote error (at its line and column).
    private func unquote(_ p: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>, into out: inout [UInt8], line: Int, column: Int) throws -> UnsafePointer<UInt8> {
        out.removeAll(keepingCapacity: true)
        var q = p + 1
        while true {
            guard q < end, let hit = memchr(q, Int32(UInt8(ascii: "\"")), end - q) else {
                throw LocalLineError(localLine: line, column: column + 1,
                                     message: "unterminated quote: the quoted field that starts here never closes (a quote inside a field is written \"\")")
            }
            let close = UnsafePointer<UInt8>(hit.assumingMemoryBound(to: UInt8.self))
            out.append(contentsOf: UnsafeBufferPointer(start: q, count: close - q))
            if close + 1 < end && (close + 1).pointee == UInt8(ascii: "\"") {
                out.append(UInt8(ascii: "\""))
                q = close + 2
                continue
            }
            return close + 1
        }
    }

    /// Whether a field (unquoted, trimmed) is a missing value: empty, `NA`, `NaN`, `null` or `?`, in any case.
    static func isMissing(_ t: UnsafeBufferPointer<UInt8>) -> Bool {
        switch t.count {
        case 0: return true
        case 1: return t[0] == UInt8(ascii: "?")
        case 2: return t[0] | 0x20 == UInt8(ascii: "n") && t[1] | 0x20 == UInt8(ascii: "a")
        case 3: return t[0] | 0x20 == UInt8(ascii: "n") && t[1] | 0x20 == UInt8(ascii: "a") && t[2] | 0x20 == UInt8(ascii: "n")
        case 4: return t[0] | 0x20 == UInt8(ascii: "n") && t[1] | 0x20 == UInt8(ascii: "u") && t[2] | 0x20 == UInt8(ascii: "l") && t[3] | 0x20 == UInt8(ascii: "l")
        default: return false
        }
    }

    /// A whole field as a number, or nil: blanks around it allowed; with `;` separators a decimal comma too.
    private func number(_ t: UnsafeBufferPointer<UInt8>) -> Double? {
        guard var p = t.baseAddress else { return nil }
        var end = p + t.count
        while p < end && isBlank(p.pointee) { p += 1 }
        while end > p && isBlank((end - 1).pointee) { end -= 1 }
        if let (v, after) = DecimalParser.parse(p, end), after == end { return v }
        if layout.separator == UInt8(ascii: ";"), let comma = UnsafeBufferPointer(start: p, count: end - p).firstIndex(of: UInt8(ascii: ",")) {
            var copy = Array(UnsafeBufferPointer(start: p, count: end - p))
            copy[comma] = UInt8(ascii: ".")
            return DecimalParser.parse(String(decoding: copy, as: UTF8.self))
        }
        return nil
    }

    /// A field that is not a plain unquoted number: a quoted field's content, a missing value, a text label, a
    /// decimal comma, or an error naming the column.
    private func slowField(_ raw: UnsafeBufferPointer<UInt8>, column: Int, line: Int, shard: inout RawShard,
                           label: inout Double, textLabel: inout String?, first: inout Double) throws {
        var a = 0, b = raw.count
        while a < b && isBlank(raw[a]) { a += 1 }
        while b > a && isBlank(raw[b - 1]) { b -= 1 }
        let t = UnsafeBufferPointer(rebasing: raw[a..<b])
        let text = { String(decoding: t, as: UTF8.self) }
        if let v = number(t) {
            guard Float(v).isFinite else {
                throw LocalLineError(localLine: line, column: column + 1, message: "\(text()) is outside the 32-bit float range")
            }
            if column == 0 { first = v }
            if column == layout.labelColumn { label = v } else { shard.x.append(Float(v)) }
            return
        }
        let missingValue = Self.isMissing(t)
        if column == layout.labelColumn {
            if missingValue {
                throw LocalLineError(localLine: line, column: column + 1,
                                     message: "missing label (\(t.isEmpty ? "an empty field" : "\"\(text())\"")): every training row needs one")
            }
            guard classification else {
                throw LocalLineError(localLine: line, column: column + 1, message: "target " + badNumber(text()) + " (--task regression needs numeric targets)")
            }
            textLabel = text()
            return
        }
        if missingValue {
            switch missing {
            case .error:
                throw LocalLineError(localLine: line, column: column + 1,
                                     message: "missing value (\(t.isEmpty ? "an empty field" : "\"\(text())\"")): fill missing values with --missing zero or --missing mean")
            case .zero: shard.x.append(0)
            case .mean: shard.x.append(.nan)
            }
            return
        }
        // With a header, a text column can be named: say how to leave it out.
        let message = badNumber(text())
        let hint = layout.names.indices.contains(column) && message.hasSuffix("is not a number")
            ? " (is '\(layout.names[column])' a text column? encode it with --categorical \(layout.names[column]) or leave it out with --drop-columns \(layout.names[column]))" : ""
        throw LocalLineError(localLine: line, column: column + 1, message: message + hint)
    }

    private func token(_ start: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> String {
        var p = start
        while p < end && isBlank(p.pointee) { p += 1 }
        var q = p
        while q < end && q.pointee != (layout.separator ?? 0) && (layout.separator != nil || !isBlank(q.pointee)) { q += 1 }
        while q > p && isBlank((q - 1).pointee) { q -= 1 }
        return String(decoding: UnsafeBufferPointer(start: p, count: q - p), as: UTF8.self)
    }

    private func fieldCount(_ line: UnsafeBufferPointer<UInt8>) -> Int {
        splitFields(Array(line), separator: layout.separator).count
    }
}
