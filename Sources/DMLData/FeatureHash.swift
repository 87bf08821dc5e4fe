import DMLComm

/// Feature hashing (`--hash-bits B`): LIBSVM feature index i (1-based, as written in the file) goes to bucket
/// `XXH3_64bits_withSeed(i as 8 little-endian bytes, seed) & (2^B − 1)` (0-based column of the model's 2^B
/// inputs), with XXH3-64 from xxHash 0.8 (`Checksum.hash`) and `seed` = `FeatureHash.defaultSeed`
/// (0x444D_4C5F_4841_5348, "DML_HASH"). Values of one row that land in the same bucket are added (in the
/// order of their indices, in Float). The map depends on nothing but (i, seed, bits), so every rank, and
/// `dml-predict` reading the map from the model file (`feature_hash` metadata), computes the same.
///
/// In Python: `xxhash.xxh3_64_intdigest(struct.pack('<Q', i), seed=0x444D4C5F48415348) & ((1 << B) - 1)`.
public struct FeatureHash: Sendable, Equatable {
    public static let defaultSeed: UInt64 = 0x444D_4C5F_4841_5348
    /// The hash's name as the model file records it.
    public static let algorithm = "xxh3-64"
    public let bits: Int
    public let seed: UInt64

    /// `bits` in 1…31 (nil otherwise: 2^31 columns is the most an Int32 index holds).
    public init?(bits: Int, seed: UInt64 = FeatureHash.defaultSeed) {
        guard (1...31).contains(bits) else { return nil }
        self.bits = bits
        self.seed = seed
    }

    /// Columns of the hashed rows: 2^bits.
    public var buckets: Int { 1 << bits }

    /// The 0-based bucket of 1-based feature index `index`. Cost one XXH3 of 8 bytes.
    @inline(__always)
    public func bucket(_ index: Int) -> Int32 {
        var le = UInt64(index).littleEndian
        let h = withUnsafeBytes(of: &le) { Checksum.hash($0, seed: seed) }
        return Int32(truncatingIfNeeded: h & UInt64(buckets - 1))
    }

    /// The 0-based bucket of a `--categorical` CSV value under `--categorical-encoding hash`: XXH3-64 (same seed) of
    /// the UTF-8 text `COLUMN=VALUE`, COLUMN being the `--categorical` reference as given (a header name, or an
    /// index), so `dml-predict` finds the same bucket from the model's `categorical` list. Cost one XXH3 of the text.
    public func bucket(category value: String, column: String) -> Int32 {
        Int32(truncatingIfNeeded: Checksum.hash(column + "=" + value, seed: seed) & UInt64(buckets - 1))
    }

    /// The model file's `feature_hash` text: `xxh3-64 seed=0x444d4c5f48415348 bits=B`.
    public var description: String { "\(Self.algorithm) seed=0x\(String(seed, radix: 16)) bits=\(bits)" }

    /// Parses `description`'s form; nil for anything else (another algorithm included).
    public init?(description text: String) {
        let parts = text.split(separator: " ")
        guard parts.count == 3, parts[0] == Self.algorithm, parts[1].hasPrefix("seed=0x"), parts[2].hasPrefix("bits="),
              let seed = UInt64(parts[1].dropFirst(7), radix: 16), let bits = Int(parts[2].dropFirst(5)) else { return nil }
        self.init(bits: bits, seed: seed)
    }

    /// Hashes one row's (0-based index, value) pairs, given in increasing index order, in place: buckets
    /// ascending, one value per bucket (the values of a bucket added in index order). Cost one hash per
    /// non-zero and a sort of the row.
    func hashRow(indices: inout [Int32], values: inout [Float], from start: Int, scratch: inout [(Int32, Float)]) {
        let n = indices.count - start
        guard n > 0 else { return }
        scratch.removeAll(keepingCapacity: true)
        indices.withUnsafeBufferPointer { ix in
            values.withUnsafeBufferPointer { vx in
                for k in start..<ix.count { scratch.append((bucket(Int(ix[k]) + 1), vx[k])) }
            }
        }
        // Stable: equal buckets keep index order, so their sum's order is fixed. Insertion sort for short rows;
        // longer ones sort (bucket, position) pairs, O(n log n).
        if scratch.count <= 64 {
            scratch.withUnsafeMutableBufferPointer { sc in
                for i in 1..<Swift.max(1, sc.count) {
                    let e = sc[i]
                    var j = i
                    while j > 0 && sc[j - 1].0 > e.0 { sc[j] = sc[j - 1]; j -= 1 }
                    sc[j] = e
                }
            }
        } else {
            let keyed = scratch.enumerated().sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }
            for (i, e) in keyed.enumerated() { scratch[i] = e.element }
        }
        // Written back over the row in place (m ≤ the entries read so far, which come from scratch).
        var m = 0
        indices.withUnsafeMutableBufferPointer { ix in
            values.withUnsafeMutableBufferPointer { vx in
                scratch.withUnsafeBufferPointer { sc in
                    for (b, v) in sc {
                        if m > 0 && ix[start + m - 1] == b { vx[start + m - 1] += v } else { ix[start + m] = b; vx[start + m] = v; m += 1 }
                    }
                }
            }
        }
        indices.removeLast(n - m)
        values.removeLast(n - m)
    }

    /// Appends (bucket, value) pairs sorted by bucket (stable) to a row that starts at `start`, one value per
    /// bucket: the values of a bucket added in the pairs' order.
    static func appendMerged(_ sorted: [(Int32, Float)], indices: inout [Int32], values: inout [Float], from start: Int) {
        for (b, v) in sorted {
            if indices.count > start, indices[indices.count - 1] == b { values[values.count - 1] += v }
            else { indices.append(b); values.append(v) }
        }
    }
}
