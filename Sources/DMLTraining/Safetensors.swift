import Foundation
import DMLStatus
import DMLComm

/// The safetensors format (what numpy, PyTorch and the `safetensors` package read): an 8-byte
/// little-endian header length N, N bytes of JSON mapping tensor names to
/// `{"dtype", "shape", "data_offsets": [begin, end]}` plus a `"__metadata__"` map of strings, then the raw
/// little-endian tensor data. Offsets are relative to the end of the header.
public enum Safetensors {
    public enum DType: String, Sendable {
        case f32 = "F32", f64 = "F64", i64 = "I64"
        public var size: Int { self == .f32 ? 4 : 8 }
    }

    /// A tensor to write: name, shape and raw little-endian bytes.
    public struct Tensor {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public let bytes: [UInt8]

        public init(name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
            self.name = name
            dtype = .f32
            self.shape = shape
            bytes = Array(UnsafeRawBufferPointer(floats))
        }

        public init(name: String, shape: [Int], doubles: [Double]) {
            self.name = name
            dtype = .f64
            self.shape = shape
            bytes = doubles.withUnsafeBytes { Array($0) }
        }

        public init(name: String, shape: [Int], int64s: [Int64]) {
            self.name = name
            dtype = .i64
            self.shape = shape
            bytes = int64s.withUnsafeBytes { Array($0) }
        }
    }

    /// A file that is not valid safetensors (or not a valid DML checkpoint): bad data (`.dataFormat`).
    public struct FormatError: ClassifiedError, CustomStringConvertible {
        public let reason: String
        public var failureKind: FailureKind { .dataFormat }
        public var description: String { reason }
    }

    /// Serialises tensors (in the given order) and metadata. The JSON has sorted keys, so the same input
    /// always gives the same bytes.
    public static func encode(_ tensors: [Tensor], metadata: [String: String]) throws -> [UInt8] {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for t in tensors {
            precondition(t.bytes.count == t.shape.reduce(1, *) * t.dtype.size, "tensor \(t.name): shape and data disagree")
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + t.bytes.count]] as [String: Any]
            offset += t.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .withoutEscapingSlashes])
        // Pad with spaces so the data starts 8-byte aligned (as the reference implementation does).
        while json.count % 8 != 0 { json.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        for t in tensors { out.append(contentsOf: t.bytes) }
        return out
    }

    /// A parsed file: every structural rule is checked before anything is returned, so a truncated or
    /// corrupted file is an error, never a crash or garbage values.
    public struct File {
        public struct Entry { public let dtype: DType; public let shape: [Int]; public let range: Range<Int> }
        public let metadata: [String: String]
        public let entries: [String: Entry]
        /// The data section (after the header).
        public let data: [UInt8]

        public func floats(_ name: String) throws -> [Float] {
            guard let e = entries[name] else { throw FormatError(reason: "no tensor named '\(name)'") }
            guard e.dtype == .f32 else { throw FormatError(reason: "tensor '\(name)' is \(e.dtype.rawValue), expected F32") }
            return data[e.range].withUnsafeBytes { raw in
                (0..<(e.range.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        }

        public func doubles(_ name: String) throws -> [Double] {
            guard let e = entries[name] else { throw FormatError(reason: "no tensor named '\(name)'") }
            guard e.dtype == .f64 else { throw FormatError(reason: "tensor '\(name)' is \(e.dtype.rawValue), expected F64") }
            return data[e.range].withUnsafeBytes { raw in
                (0..<(e.range.count / 8)).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
            }
        }

        public func int64s(_ name: String) throws -> [Int64] {
            guard let e = entries[name] else { throw FormatError(reason: "no tensor named '\(name)'") }
            guard e.dtype == .i64 else { throw FormatError(reason: "tensor '\(name)' is \(e.dtype.rawValue), expected I64") }
            return data[e.range].withUnsafeBytes { raw in
                (0..<(e.range.count / 8)).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
            }
        }
    }

    public static func read(path: String) throws -> File {
        guard let d = FileManager.default.contents(atPath: path) else {
            throw FormatError(reason: "cannot read \(path)")
        }
        do { return try decode([UInt8](d)) } catch let e as FormatError {
            throw FormatError(reason: "\(path): \(e.reason)")
        }
    }

    public static func decode(_ bytes: [UInt8]) throws -> File {
        guard bytes.count >= 8 else { throw FormatError(reason: "file is \(bytes.count) bytes, shorter than the 8-byte header length") }
        let n = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard n <= UInt64(bytes.count - 8) else {
            throw FormatError(reason: "header length \(n) is larger than the file (\(bytes.count) bytes)")
        }
        let headerEnd = 8 + Int(n)
        guard let json = try? JSONSerialization.jsonObject(with: Data(bytes[8..<headerEnd])),
              let header = json as? [String: Any] else {
            throw FormatError(reason: "header is not a JSON object")
        }
        let data = Array(bytes[headerEnd...])
        var metadata: [String: String] = [:]
        var entries: [String: File.Entry] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: String] else { throw FormatError(reason: "__metadata__ is not a map of strings") }
                metadata = m
                continue
            }
            guard let e = value as? [String: Any], let dtypeName = e["dtype"] as? String,
                  let shapeAny = e["shape"] as? [Any], let offsetsAny = e["data_offsets"] as? [Any] else {
                throw FormatError(reason: "tensor '\(name)' lacks dtype, shape or data_offsets")
            }
            guard let dtype = DType(rawValue: dtypeName) else { throw FormatError(reason: "tensor '\(name)' has unsupported dtype \(dtypeName)") }
            let shape = try shapeAny.map { v -> Int in
                guard let i = exactInt(v), i >= 0, i < 1 << 40 else { throw FormatError(reason: "tensor '\(name)' has an invalid shape") }
                return i
            }
            let offsets = try offsetsAny.map { v -> Int in
                guard let i = exactInt(v), i >= 0 else { throw FormatError(reason: "tensor '\(name)' has invalid data_offsets") }
                return i
            }
            guard offsets.count == 2, offsets[0] <= offsets[1], offsets[1] <= data.count else {
                throw FormatError(reason: "tensor '\(name)' data_offsets \(offsets) lie outside the \(data.count)-byte data section")
            }
            var elements = 1
            for s in shape {
                let (m, overflow) = elements.multipliedReportingOverflow(by: s)
                guard !overflow, m < 1 << 40 else { throw FormatError(reason: "tensor '\(name)' has an invalid shape") }
                elements = m
            }
            guard elements * dtype.size == offsets[1] - offsets[0] else {
                throw FormatError(reason: "tensor '\(name)': shape \(shape) of \(dtype.rawValue) needs \(elements * dtype.size) bytes, data_offsets give \(offsets[1] - offsets[0])")
            }
            entries[name] = File.Entry(dtype: dtype, shape: shape, range: offsets[0] ..< offsets[1])
        }
        // Tensors must tile the data section exactly: no overlaps, no holes.
        var end = 0
        for e in entries.values.sorted(by: { $0.range.lowerBound < $1.range.lowerBound }) {
            guard e.range.lowerBound == end else { throw FormatError(reason: "tensor data overlaps or leaves a gap at byte \(end)") }
            end = e.range.upperBound
        }
        guard end == data.count else { throw FormatError(reason: "data section has \(data.count - end) bytes that belong to no tensor") }
        return File(metadata: metadata, entries: entries, data: data)
    }

    private static func exactInt(_ v: Any) -> Int? {
        if let n = v as? NSNumber {
            let d = n.doubleValue
            guard d.rounded() == d, abs(d) < 9e15 else { return nil }
            return n.intValue
        }
        return nil
    }
}

extension Safetensors {
    /// Serialises like `encode`, adding to the metadata `checksum_algorithm` and `checksum`: a `Checksum` of
    /// the file's own content (metadata, tensor table and data), which `verifySeal` checks. Checkpoints and
    /// model files are sealed.
    public static func sealed(_ tensors: [Tensor], metadata: [String: String]) throws -> [UInt8] {
        var metadata = metadata
        metadata["checksum_algorithm"] = Checksum.algorithm
        let unsigned = try decode(encode(tensors, metadata: metadata))
        metadata["checksum"] = Checksum.hex(contentChecksum(unsigned))
        return try encode(tensors, metadata: metadata)
    }

    /// Checks a sealed file: `FormatError` (bad data) when it has no seal, a seal of another digest, or one
    /// that does not match its content (damage).
    public static func verifySeal(_ file: File) throws {
        guard let stored = file.metadata["checksum"] else { throw FormatError(reason: "it has no checksum") }
        guard file.metadata["checksum_algorithm"] == Checksum.algorithm else {
            throw FormatError(reason: "its checksum is \(file.metadata["checksum_algorithm"].map { "'\($0)'" } ?? "the FNV-1a of DML before 2026-12"), "
                              + "not \(Checksum.algorithm): it was written by another version of DML and cannot be verified")
        }
        let actual = Checksum.hex(contentChecksum(file))
        guard stored == actual else {
            throw FormatError(reason: "checksum mismatch (stored \(stored), content gives \(actual)): the file is damaged")
        }
    }

    /// The checksum of everything in a parsed file except the `checksum` entry itself: metadata (sorted),
    /// the tensor table (sorted by name) and the data section.
    static func contentChecksum(_ file: File) -> UInt64 {
        var text = ""
        for (k, v) in file.metadata.sorted(by: { $0.key < $1.key }) where k != "checksum" { text += "m \(k)=\(v)\n" }
        for (name, e) in file.entries.sorted(by: { $0.key < $1.key }) {
            text += "t \(name) \(e.dtype.rawValue) \(e.shape) \(e.range.lowerBound) \(e.range.upperBound)\n"
        }
        return Checksum.hash(file.data, seed: Checksum.hash(text))
    }
}

/// A named tensor of a flat parameter buffer: where it is and its shape (`layers.0.weight` [k, d]).
public struct NamedShape: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    public init(name: String, shape: [Int]) { self.name = name; self.shape = shape }
    public var count: Int { shape.reduce(1, *) }
}
