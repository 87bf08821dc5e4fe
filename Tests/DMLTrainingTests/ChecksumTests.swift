import XCTest
import DMLComm
import DMLData
import DMLModels
import DMLTraining
import DMLTestSupport

/// The digest behind checkpoints, replica checks and data identity (`Checksum`, XXH3-64) against the damage
/// the FNV-1a it replaced let through: two flips of the same high bit in two different words.
final class ChecksumTests: XCTestCase {
    /// A real checkpoint: logistic regression trained with Adam for a few steps (so parameters and both
    /// moments hold trained values), encoded as `dml-train` writes it.
    func trainedLogisticCheckpoint() throws -> (Checkpoint, [UInt8]) {
        let task = SyntheticClassification(seed: 5, features: 64, classes: 2)
        let checkpoint = try LocalCommunicator.run(size: 1) { comm -> Checkpoint in
            let shard = task.trainingShard(rows: 300, rank: 0, ranks: 1)
            let trainer = Trainer(comm: comm, model: LogisticRegression(features: 64), train: shard,
                                  config: TrainingConfig(steps: 12, batchSize: 50, learningRate: 0.05, seed: 5, logEvery: 100,
                                                         optimizer: OptimizerConfig(kind: .adam)),
                                  allreduce: RingAllreduce(comm: comm))
            try trainer.run { _ in }
            return try trainer.checkpoint(identity: ["config.model.kind": "logistic", "config.optimization.seed": "5"])
        }[0]
        return (checkpoint, try checkpoint.encode())
    }

    /// Where the data section starts: after the 8-byte header length and the header.
    func dataStart(_ bytes: [UInt8]) -> Int {
        8 + Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
    }

    /// Every pair of single-bit flips at the same position (bits 56–63) in two different 64-bit words of the
    /// data section: each damaged file must be refused. FNV-1a cancelled every bit-63 pair.
    func testEveryDoubleFlipOfAHighBitInTwoWordsIsDetected() throws {
        let (_, good) = try trainedLogisticCheckpoint()
        let start = dataStart(good)
        let words = (good.count - start) / 8
        XCTAssertGreaterThan(words, 50, "a checkpoint of some size")
        var trials = 0
        for bit in 56..<64 {
            let byte = start + bit / 8, mask = UInt8(1) << UInt8(bit % 8)
            for i in 0..<words {
                for j in (i + 1)..<words {
                    var b = good
                    b[byte + 8 * i] ^= mask
                    b[byte + 8 * j] ^= mask
                    XCTAssertThrowsError(try Checkpoint.decode(b), "bit \(bit) of words \(i) and \(j) flipped: loaded")
                    trials += 1
                }
            }
        }
        print("double flips: \(trials) damaged files, all refused")
    }

    /// The reproduction: byte 7 and byte len−5 of the data section XOR 0x40.
    func testTheReportedDamageIsDetected() throws {
        let (_, good) = try trainedLogisticCheckpoint()
        let start = dataStart(good)
        var b = good
        b[start + 7] ^= 0x40
        b[good.count - 5] ^= 0x40
        XCTAssertThrowsError(try Checkpoint.decode(b)) { error in
            XCTAssertTrue(String(describing: error).contains("checksum mismatch"), "\(error)")
        }
    }

    /// 1,000 seeded random corruptions of 2–16 bytes anywhere in the file (header and data): none may load
    /// as different content (a flip of header padding to other whitespace leaves the content as it was).
    func testRandomMultiByteCorruptionsAreDetected() throws {
        let (original, good) = try trainedLogisticCheckpoint()
        var rng = TestRandom(seed: 20261201)
        var refused = 0, unchanged = 0
        for trial in 0..<1000 {
            var b = good
            let count = 2 + Int(rng.next() % 15)
            var places: [Int] = []
            for _ in 0..<count {
                let at = Int(rng.next() % UInt64(b.count))
                b[at] ^= UInt8(1 + rng.next() % 255)
                places.append(at)
            }
            do {
                let loaded = try Checkpoint.decode(b)
                XCTAssertEqual(loaded, original, "trial \(trial): bytes \(places) damaged and loaded with different content")
                unchanged += 1
            } catch {
                refused += 1
            }
        }
        XCTAssertGreaterThanOrEqual(refused, 990)
        print("random corruptions: \(refused) refused, \(unchanged) loaded with identical content")
    }

    /// A file whose checksum was made by another digest is refused as such, not as "damaged".
    func testAFileFromAnotherDigestIsNamedAsSuch() throws {
        let (_, good) = try trainedLogisticCheckpoint()
        let file = try Safetensors.decode(good)
        var metadata = file.metadata
        metadata.removeValue(forKey: "checksum_algorithm")
        let tensors = file.entries.keys.sorted().map { name -> Safetensors.Tensor in
            let e = file.entries[name]!
            return e.dtype == .i64 ? Safetensors.Tensor(name: name, shape: e.shape, int64s: (try? file.int64s(name)) ?? [])
                : (try! file.floats(name)).withUnsafeBufferPointer { Safetensors.Tensor(name: name, shape: e.shape, floats: $0) }
        }
        XCTAssertThrowsError(try Checkpoint.decode(try Safetensors.encode(tensors, metadata: metadata))) { error in
            XCTAssertTrue(String(describing: error).contains("another version of DML"), "\(error)")
        }
    }

    /// The replica check and data identity use the same digest: chained, seeded, order-sensitive.
    func testTheDigestIsSeededAndChained() {
        let a: [Float] = [1, 2, 3], b: [Float] = [3, 2, 1]
        XCTAssertNotEqual(Checksum.hash(a), Checksum.hash(b))
        XCTAssertNotEqual(Checksum.hash(a, seed: 1), Checksum.hash(a, seed: 2))
        XCTAssertEqual(Checksum.hash(b, seed: Checksum.hash(a)), Checksum.hash(b, seed: Checksum.hash(a)))
        XCTAssertEqual(Checksum.hex(0xAB), "00000000000000ab")
        XCTAssertEqual(Checksum.algorithm, "xxh3-64")
    }
}
