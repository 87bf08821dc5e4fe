/// A NumPy `.npy` file: its header, and positional reads of whole rows converted to Float/Double.
///
/// Supports versions 1–3, C order, little- or big-endian `f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1`, 1-D or 2-D.
/// A rank reads only its rows (by offset, in 1 MiB pieces): never the whole array.
final class NPYFile {
    enum Kind { case float, signed, unsigned, bool }

    let file: InputFile
    let rows: Int
    /// Columns per row (1 for a 1-D array).
    let columns: Int
    let twoDimensional: Bool
    let kind: Kind
    let itemSize: Int
    let bigEndian: Bool
    let dataOffset: Int

    var path: String { file.path }

    init(_ path: String) throws {
        let file = try InputFile(path)
        self.file = file
        func fail(_ m: String) -> DataError { DataError(file: path, m) }
        var head = [UInt8](repeating: 0, count: 12)
        let n = try head.withUnsafeMutableBytes { try file.read(into: $0.baseAddress!, count: 12, at: 0) }
        if file.size == 0 { throw fail("the file is empty") }
        guard n >= 10, head[0] == 0x93, Array(head[1...5]) == Array("NUMPY".utf8) else { throw fail("not a .npy file (no \\x93NUMPY magic)") }
        let major = head[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1: headerLength = Int(head[8]) | Int(head[9]) << 8; headerStart = 10
        case 2, 3:
            guard n >= 12 else { throw fail("truncated .npy header") }
            headerLength = Int(head[8]) | Int(head[9]) << 8 | Int(head[10]) << 16 | Int(head[11]) << 24; headerStart = 12
        default: throw fail(".npy format version \(major) is not supported")
        }
        guard headerStart + headerLength <= file.size, headerLength < 1 << 24 else { throw fail("truncated .npy header") }
        var text = [UInt8](repeating: 0, count: headerLength)
        _ = try text.withUnsafeMutableBytes { try file.read(into: $0.baseAddress!, count: headerLength, at: headerStart) }
        let header = String(decoding: text, as: UTF8.self)
        dataOffset = headerStart + headerLength

        func value(_ key: String) -> Substring? {
            guard let k = header.range(of: "'\(key)'") ?? header.range(of: "\"\(key)\""),
                  let colon = header[k.upperBound...].firstIndex(of: ":") else { return nil }
            return header[header.index(after: colon)...].drop { $0 == " " }
        }
        guard let descrValue = value("descr"), let q = descrValue.first, q == "'" || q == "\"",
              let close = descrValue.dropFirst().firstIndex(of: q) else { throw fail("the .npy header has no 'descr'") }
        let descr = String(descrValue[descrValue.index(after: descrValue.startIndex)..<close])
        guard descr.count >= 3, let size = Int(descr.dropFirst(2)) else { throw fail("dtype '\(descr)' is not supported") }
        let order = descr.first!
        bigEndian = order == ">"
        itemSize = size
        switch (descr.dropFirst().first!, size) {
        case ("f", 4), ("f", 8), ("f", 2): kind = .float
        case ("i", 1), ("i", 2), ("i", 4), ("i", 8): kind = .signed
        case ("u", 1), ("u", 2), ("u", 4), ("u", 8): kind = .unsigned
        case ("b", 1): kind = .bool
        default: throw fail("dtype '\(descr)' is not supported (use float32, float64 or an integer type)")
        }
        guard "<>|=".contains(order) else { throw fail("dtype '\(descr)' is not supported") }
        if let f = value("fortran_order"), f.hasPrefix("True") {
            throw fail("the array is in Fortran order; save it in C order (numpy.ascontiguousarray)")
        }
        guard let shapeValue = value("shape"), shapeValue.first == "(", let shut = shapeValue.firstIndex(of: ")") else {
            throw fail("the .npy header has no 'shape'")
        }
        let dims = shapeValue[shapeValue.index(after: shapeValue.startIndex)..<shut]
            .split(separator: ",").map { $0.trimmingCharacters(in: " ") }.filter { !$0.isEmpty }
        let shape = dims.compactMap { Int($0) }
        guard shape.count == dims.count, shape.count == 1 || shape.count == 2 else {
            throw fail("shape (\(dims.joined(separator: ", "))) is not supported: the array must be 1-D or 2-D")
        }
        rows = shape[0]
        columns = shape.count == 2 ? shape[1] : 1
        twoDimensional = shape.count == 2
        // Checked arithmetic: a hostile shape must be an error, not an overflow trap.
        let (cells, o1) = rows.multipliedReportingOverflow(by: columns)
        let (bytes, o2) = cells.multipliedReportingOverflow(by: itemSize)
        let (needed, o3) = bytes.addingReportingOverflow(dataOffset)
        guard rows >= 0, columns >= 0, !o1, !o2, !o3, file.size >= needed else {
            if o1 || o2 || o3 || rows < 0 || columns < 0 { throw fail("shape \(shape) is not a valid array size") }
            throw fail("the file is truncated: shape \(shape) needs \(needed) bytes, the file has \(file.size)")
        }
    }

    /// Reads rows `range` and calls `body(localRow, values)` per row, values converted to Double.
    func forEachRow(_ range: Range<Int>, _ body: (Int, UnsafeBufferPointer<Double>) throws -> Void) throws {
        let rowBytes = columns * itemSize
        let rowsPerPiece = Swift.max(1, (1 << 20) / Swift.max(rowBytes, 1))
        let raw = UnsafeMutableRawPointer.allocate(byteCount: rowsPerPiece * rowBytes, alignment: 16)
        defer { raw.deallocate() }
        var values = [Double](repeating: 0, count: columns)
        var r = range.lowerBound
        while r < range.upperBound {
            let count = Swift.min(rowsPerPiece, range.upperBound - r)
            let got = try file.read(into: raw, count: count * rowBytes, at: dataOffset + r * rowBytes)
            guard got == count * rowBytes else { throw DataError(file: path, "the file is truncated") }
            for i in 0..<count {
                let base = raw + i * rowBytes
                for c in 0..<columns { values[c] = element(base + c * itemSize) }
                try values.withUnsafeBufferPointer { try body(r + i - range.lowerBound, $0) }
            }
            r += count
        }
    }

    @inline(__always)
    private func element(_ p: UnsafeRawPointer) -> Double {
        switch (kind, itemSize) {
        case (.float, 4): let b = p.loadUnaligned(as: UInt32.self); return Double(Float(bitPattern: bigEndian ? b.byteSwapped : b))
        case (.float, 8): let b = p.loadUnaligned(as: UInt64.self); return Double(bitPattern: bigEndian ? b.byteSwapped : b)
        case (.float, 2): let b = p.loadUnaligned(as: UInt16.self); return Double(Float(float16Bits: bigEndian ? b.byteSwapped : b))
        case (.signed, 1): return Double(p.load(as: Int8.self))
        case (.signed, 2): let b = p.loadUnaligned(as: Int16.self); return Double(bigEndian ? b.byteSwapped : b)
        case (.signed, 4): let b = p.loadUnaligned(as: Int32.self); return Double(bigEndian ? b.byteSwapped : b)
        case (.signed, 8): let b = p.loadUnaligned(as: Int64.self); return Double(bigEndian ? b.byteSwapped : b)
        case (.unsigned, 1), (.bool, 1): return Double(p.load(as: UInt8.self))
        case (.unsigned, 2): let b = p.loadUnaligned(as: UInt16.self); return Double(bigEndian ? b.byteSwapped : b)
        case (.unsigned, 4): let b = p.loadUnaligned(as: UInt32.self); return Double(bigEndian ? b.byteSwapped : b)
        default: let b = p.loadUnaligned(as: UInt64.self); return Double(bigEndian ? b.byteSwapped : b)
        }
    }
}

extension Float {
    /// IEEE half precision bits to Float (Float16 is not available on every platform Swift targets).
    init(float16Bits h: UInt16) {
        let sign: UInt32 = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F), frac = UInt32(h & 0x3FF)
        if exp == 0 {
            self = Float(frac) * Float(sign: .plus, exponent: -24, significand: 1) * (sign != 0 ? -1 : 1)
        } else if exp == 31 {
            self = Float(bitPattern: sign | 0x7F80_0000 | (frac << 13))
        } else {
            self = Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (frac << 13))
        }
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in s: Character) -> Substring {
        drop { $0 == s }.reversed().drop { $0 == s }.reversed().map { $0 }.reduce(into: Substring()) { $0.append($1) }
    }
}
