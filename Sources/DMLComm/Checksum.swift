internal import CXXHash

/// DML's one digest: 64-bit XXH3 (xxHash 0.8, Debian's `libxxhash`), for checkpoint files, replica checks,
/// configuration agreement and data identity. Not cryptographic: it guards against damage and mistakes
/// (a flipped bit on disk, a rank whose memory went wrong, a file from another run), not against an attacker.
///
/// Why this one (measured on the 2-core AMD EPYC of `benchmarks/RESULTS.md`, "Checksum"): XXH3 hashes at
/// memory speed (tens of GB/s in cache, as fast as a copy out of it), SHA-256 with the CPU's SHA extensions
/// at about 2 GB/s; a replica check hashes every parameter and optimizer value every `--verify-every` steps
/// and a checkpoint is hashed on every save and load, so the digest must cost no more than reading the bytes.
/// XXH3 passes SMHasher's differential tests (few-bit flips change every output bit with probability ½),
/// which the hand-rolled FNV-1a it replaces did not: FNV's multiply only carries a difference upwards, so
/// flipping bit 63 of any two 64-bit words cancelled exactly (`ChecksumTests` shows both).
///
/// Invariants: the value depends only on the bytes and the seed (not on alignment, the machine or the
/// number of ranks); `hash(b, seed: hash(a))` chains two buffers. Cost: one pass over the bytes.
public enum Checksum {
    /// The name recorded next to a stored digest (`checksum_algorithm` in checkpoints), so a file hashed
    /// with another digest is recognised as such rather than reported as damaged.
    public static let algorithm = "xxh3-64"

    /// The digest of `bytes`, continuing from `seed` (chain calls by passing the previous result).
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        #if arch(x86_64)
        // Run-time dispatch to the CPU's widest vector unit (the plain entry point is SSE2: 4× slower here).
        XXH3_64bits_withSeed_dispatch(bytes.baseAddress, bytes.count, seed)
        #else
        XXH3_64bits_withSeed(bytes.baseAddress, bytes.count, seed)
        #endif
    }

    public static func hash(_ floats: [Float], seed: UInt64 = 0) -> UInt64 {
        floats.withUnsafeBytes { hash($0, seed: seed) }
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    public static func hash(_ string: String, seed: UInt64 = 0) -> UInt64 {
        hash(Array(string.utf8), seed: seed)
    }

    /// 16 lower-case hex digits.
    public static func hex(_ h: UInt64) -> String {
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
