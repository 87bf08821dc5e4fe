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

    /// The 0-based bucket of 1-based feature index `index`: XXH3-64 of its 8 little-endian bytes with `seed`,
    /// computed inline — xxHash 0.8's short-input path (`XXH3_len_4to8_64b` with the default secret, then
    /// `XXH3_rrmxmx`), the very value `Checksum.hash` returns (`FeatureHashTests` compares them), without a call
    /// into the library per non-zero. Cost a few integer operations and two multiplications.
    @inline(__always)
    public func bucket(_ index: Int) -> Int32 {
        let x = UInt64(truncatingIfNeeded: index)
        // readLE32(input) is the low half, readLE32(input + 4) the high half.
        let input64 = (x >> 32) &+ (x << 32)
        var h = input64 ^ Self.bitflip(seed: seed)
        h ^= ((h << 49) | (h >> 15)) ^ ((h << 24) | (h >> 40))
        h = h &* 0x9FB2_1C65_1E98_DF25
        h ^= (h >> 35) &+ 8
        h = h &* 0x9FB2_1C65_1E98_DF25
        h ^= h >> 28
        return Int32(truncatingIfNeeded: h & UInt64(buckets - 1))
    }

    /// XXH3's `bitflip` for 4–8 byte inputs under `seed`: `(readLE64(kSecret + 8) ^ readLE64(kSecret + 16)) −
    /// (seed ^ (bswap32(low 32 bits of seed) << 32))`.
    @inline(__always) static func bitflip(seed: UInt64) -> UInt64 {
        let secret8: UInt64 = 0x1CAD_21F7_2C81_017C, secret16: UInt64 = 0xDB97_9083_E96D_D4DE
        let s = seed ^ (UInt64(UInt32(truncatingIfNeeded: seed).byteSwapped) << 32)
        return (secret8 ^ secret16) &- s
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
    /// non-zero and a stable sort of the row: a counting pass on the bucket's top 6 bits (64 bins), then an
    /// insertion sort that only has to order each bin (about one entry each for a short row). `scratch` is
    /// reused between rows.
    func hashRow(indices: inout [Int32], values: inout [Float], from start: Int, scratch: inout [(Int32, Float)]) {
        let n = indices.count - start
        guard n > 0 else { return }
        if scratch.count < 2 * n { scratch = [(Int32, Float)](repeating: (0, 0), count: 2 * n) }
        let shift = Swift.max(0, bits - 6)
        var m = 0
        indices.withUnsafeMutableBufferPointer { ix in
            values.withUnsafeMutableBufferPointer { vx in
                scratch.withUnsafeMutableBufferPointer { sc in
                    let hashed = sc.baseAddress!, sorted = sc.baseAddress! + n
                    withUnsafeTemporaryAllocation(of: Int.self, capacity: 65) { count in
                        count.initialize(repeating: 0)
                        for k in 0..<n {
                            let b = bucket(Int(ix[start + k]) + 1)
                            hashed[k] = (b, vx[start + k])
                            count[Int(b) >> shift + 1] += 1
                        }
                        for bin in 1...64 { count[bin] += count[bin - 1] }
                        // Stable counting sort on the top bits: equal buckets keep index order.
                        for k in 0..<n {
                            let bin = Int(hashed[k].0) >> shift
                            sorted[count[bin]] = hashed[k]
                            count[bin] += 1
                        }
                    }
                    // Stable insertion sort: the entries are already in order of their top bits.
                    for i in 1..<Swift.max(1, n) {
                        let e = sorted[i]
                        var j = i
                        while j > 0 && sorted[j - 1].0 > e.0 { sorted[j] = sorted[j - 1]; j -= 1 }
                        sorted[j] = e
                    }
                    // Written back over the row, the values of a bucket added in index order.
                    for k in 0..<n {
                        let (b, v) = sorted[k]
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
