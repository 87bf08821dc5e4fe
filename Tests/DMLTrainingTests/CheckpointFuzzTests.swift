import XCTest
import DMLTraining
import DMLTestSupport

/// Hostile checkpoint files: every damaged variant is rejected with an error (never a crash, never loaded
/// as different values), and the store falls back to the previous valid file.
final class CheckpointFuzzTests: XCTestCase {
    func valid(step: Int = 7) throws -> (Checkpoint, [UInt8]) {
        let c = Checkpoint(step: step, epoch: 1, parameters: (0..<37).map { Float($0) * 0.25 - 3 },
                           optimizerState: (0..<74).map { Float($0) * 0.5 }, identity: ["config.model.kind": "softmax", "config.optimization.seed": "1"])
        return (c, try c.encode())
    }

    /// A safetensors file with a hand-written header (and `data` bytes after it).
    func file(header: String, data: [UInt8], length: UInt64? = nil) -> [UInt8] {
        var out = [UInt8]()
        withUnsafeBytes(of: (length ?? UInt64(header.utf8.count)).littleEndian) { out.append(contentsOf: $0) }
        return out + Array(header.utf8) + data
    }

    func testDamagedCheckpointsAreNeverLoaded() throws {
        let (original, good) = try valid()
        var variants: [(String, [UInt8])] = []
        // Truncations at many offsets, including inside the length, the header and the data.
        for cut in Set(Array(0..<24) + stride(from: 24, to: good.count, by: max(1, good.count / 60)).map { $0 } + [good.count - 1]) {
            variants.append(("truncated at \(cut)", Array(good[..<cut])))
        }
        // Flipped bytes at pseudo-random places (a flip may only be accepted if the content is unchanged,
        // e.g. a space of header padding turned into another whitespace).
        var rng = TestRandom(seed: 8)
        for i in 0..<80 {
            var b = good
            let at = Int(rng.next() % UInt64(b.count))
            b[at] ^= UInt8(1 + rng.next() % 255)
            variants.append(("byte \(at) flipped (\(i))", b))
        }
        // Header length larger than the file, or absurd.
        for n in [UInt64(good.count), UInt64(good.count) * 2, UInt64.max, 1 << 62] {
            var b = good
            withUnsafeBytes(of: n.littleEndian) { for k in 0..<8 { b[k] = $0[k] } }
            variants.append(("header length \(n)", b))
        }
        let data = [UInt8](repeating: 0, count: 16)
        let hostile = [
            #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}}"#,            // out of range
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,  // overlap
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,             // reversed
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#,            // negative
            #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,            // shape vs size
            #"{"a":{"dtype":"F16","shape":[8],"data_offsets":[0,16]}}"#,            // unsupported dtype
            #"{"a":{"dtype":7,"shape":[4],"data_offsets":[0,16]}}"#,                // dtype not a string
            #"{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#,           // negative dimension
            #"{"a":{"dtype":"F32","shape":[4.5],"data_offsets":[0,16]}}"#,          // fractional dimension
            #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#,  // overflow
            #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16,32]}}"#,         // three offsets
            #"{"a":{"dtype":"F32","shape":[4]}}"#,                                  // no offsets
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,             // a gap at the end
            #"{"a":[1,2]}"#, #"[1,2,3]"#, #""text""#, #"{"#, #"{"a":}"#, "", "\u{0}\u{1}",
            #"{"__metadata__":{"format":3},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            #"{"__metadata__":{"format":"dml-checkpoint"},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,  // no checksum
            #"{"__metadata__":{"format":"dml-checkpoint","checksum":"0"},"parameters":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            #"{"__metadata__":{"format":"dml-checkpoint","checksum":"0"},"parameters":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#,
        ]
        for h in hostile { variants.append(("header \(h)", file(header: h, data: data))) }
        variants.append(("invalid UTF-8 header", file(header: "", data: [0xFF, 0xFE, 0x7B, 0x7D], length: 4)))
        // A well-formed file of the wrong content: tensors with the wrong dtype or shape, no step.
        let wrongDtype = try Safetensors.encode([Safetensors.Tensor(name: "parameters", shape: [2], doubles: [1, 2]),
                                                 Safetensors.Tensor(name: "step", shape: [1], int64s: [1]),
                                                 Safetensors.Tensor(name: "epoch", shape: [1], int64s: [0])],
                                                metadata: ["format": "dml-checkpoint", "checksum": "x"])
        variants.append(("wrong dtype", wrongDtype))
        variants.append(("not a checkpoint", try Safetensors.encode([Safetensors.Tensor(name: "step", shape: [1], int64s: [1])], metadata: [:])))

        var rejected = 0, harmless = 0
        for (what, bytes) in variants {
            do {
                let c = try Checkpoint.decode(bytes)
                XCTAssertEqual(c, original, "\(what): accepted with different content")
                harmless += 1
            } catch {
                XCTAssertFalse(String(describing: error).isEmpty, what)
                rejected += 1
            }
        }
        XCTAssertGreaterThanOrEqual(variants.count, 150)
        XCTAssertGreaterThan(rejected, variants.count - 10, "only whitespace flips may pass")
        print("checkpoint fuzz: \(variants.count) variants, \(rejected) rejected, \(harmless) accepted with identical content")
    }

    func testTheStoreFallsBackToTheNewestValidFileOrSaysNoneIsValid() throws {
        let dir = MPIRunner.temporaryDirectory()
        let store = CheckpointStore(directory: dir, keep: 0)
        try store.prepare()
        let (older, _) = try valid(step: 4)
        try store.save(older)
        let (_, newest) = try valid(step: 8)
        var warnings: [String] = []
        for cut in [0, 7, 100, newest.count - 1] {
            try Data(newest[..<cut]).write(to: URL(fileURLWithPath: store.path(step: 8)))
            let found = try XCTUnwrap(try store.newestValid { warnings.append($0) })
            XCTAssertEqual(found.checkpoint, older)
        }
        XCTAssertEqual(warnings.count, 4)
        unlink(store.path(step: 4))
        XCTAssertThrowsError(try store.newestValid { _ in }) { error in
            XCTAssertTrue(String(describing: error).contains("no valid checkpoint in \(dir)"), "\(error)")
        }
    }
}

