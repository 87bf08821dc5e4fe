import XCTest
import DMLComm
@testable import DMLTraining
import DMLTestSupport

/// Sharded checkpoints (`ShardedCheckpoint.swift`): parts and a manifest put together into the whole state;
/// a part missing, damaged, of another step or of another run, or parts without a manifest (a writer killed
/// before it), make the store fall back to the previous complete checkpoint or name every problem; pruning
/// and a fresh start remove parts with their manifests.
final class ShardedCheckpointTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = MPIRunner.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let count = 50, copies = 2
    /// Pieces as the MLP's would be: top layer first, then the tail.
    var shards: UpdateShards { UpdateShards(count: count, pieces: [30..<50, 0..<30, 50..<52], parts: 3) }

    func state(_ step: Int, salt: Float = 0) -> [Float] { (0..<(copies * count)).map { Float($0) * 0.5 + Float(step) + salt } }

    /// Writes step `step`'s parts (each rank's cut of `whole`) and its manifest; returns the manifest's path.
    @discardableResult
    func write(_ store: CheckpointStore, step: Int, whole: [Float]? = nil) throws -> String {
        let whole = whole ?? state(step)
        let sums = try (0..<shards.parts).map { rank in
            try store.savePart(CheckpointPart(rank: rank, parts: shards.parts, step: step,
                                              state: shards.ownedState(whole, copies: copies, rank: rank)))
        }
        let snapshot = Checkpoint(step: step, epoch: 0, parameters: (0..<count).map { Float($0 + step) }, optimizerState: [], identity: ["config.x": "1"])
        return try store.saveManifest(snapshot, shards: shards, copies: copies, checksums: sums)
    }

    func store() throws -> CheckpointStore {
        let s = CheckpointStore(directory: dir + "/ckpt", keep: 0)
        try s.prepare()
        try s.startFresh(overwrite: false)
        return s
    }

    func testPartsAndTheManifestGiveTheWholeState() throws {
        let s = try store()
        let path = try write(s, step: 4)
        XCTAssertEqual(CheckpointStore.partFiles(of: path).count, 3)
        let found = try XCTUnwrap(try s.newestValid { XCTFail($0) })
        XCTAssertEqual(found.checkpoint.step, 4)
        XCTAssertEqual(found.checkpoint.optimizerState, state(4))
        XCTAssertEqual(found.checkpoint.parameters, (0..<count).map { Float($0 + 4) })
        XCTAssertTrue(found.checkpoint.strategyState.isEmpty, "the manifest's keys are not carried on")
        // What every rank decodes from the broadcast bytes is the assembled checkpoint.
        XCTAssertEqual(try Checkpoint.decode(found.bytes).optimizerState, state(4))
        // The manifest alone holds no optimizer tensors.
        XCTAssertEqual(try Safetensors.read(path: path).metadata["optimizer_copies"], "0")
    }

    /// A part rank 0 does not see (a node-local --checkpoint-dir of the same name on another node): no manifest
    /// is written, and the error says why.
    func testAPartRankZeroDoesNotSeeStopsTheManifest() throws {
        let s = try store()
        let sums = try (0..<shards.parts).map { rank in
            try s.savePart(CheckpointPart(rank: rank, parts: shards.parts, step: 6, state: shards.ownedState(state(6), copies: copies, rank: rank)))
        }
        let missing = CheckpointPart.path(manifest: s.path(step: 6), rank: 2, parts: shards.parts)
        XCTAssertEqual(unlink(missing), 0)
        let snapshot = Checkpoint(step: 6, epoch: 0, parameters: [Float](repeating: 1, count: count), optimizerState: [], identity: ["config.x": "1"])
        XCTAssertThrowsError(try s.saveManifest(snapshot, shards: shards, copies: copies, checksums: sums)) { error in
            XCTAssertTrue("\(error)".contains("rank 2 wrote its part \(missing), which rank 0 does not see"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: s.path(step: 6)), "no manifest")
    }

    func testABrokenSetFallsBackToThePreviousCompleteCheckpoint() throws {
        let attacks: [(String, (String) throws -> Void)] = [
            ("is missing", { m in unlink(CheckpointPart.path(manifest: m, rank: 1, parts: 3)) }),
            ("is damaged", { m in
                let p = CheckpointPart.path(manifest: m, rank: 2, parts: 3)
                var b = [UInt8](FileManager.default.contents(atPath: p)!)
                b[b.count - 3] ^= 0x10
                _ = FileManager.default.createFile(atPath: p, contents: Data(b))
            }),
            ("is not the one the manifest lists", { m in   // a part of another step, under this step's name
                let other = m.replacingOccurrences(of: "00000008", with: "00000004")
                let p = CheckpointPart.path(manifest: m, rank: 0, parts: 3)
                unlink(p)
                try FileManager.default.copyItem(atPath: CheckpointPart.path(manifest: other, rank: 0, parts: 3), toPath: p)
            }),
        ]
        for (n, (what, attack)) in attacks.enumerated() {
            let s = CheckpointStore(directory: dir + "/ckpt-\(n)", keep: 0)
            try s.prepare()
            try s.startFresh(overwrite: false)
            try write(s, step: 4)
            let newest = try write(s, step: 8)
            try attack(newest)
            var warnings: [String] = []
            let found = try XCTUnwrap(try s.newestValid { warnings.append($0) })
            XCTAssertEqual(found.checkpoint.step, 4, what)
            XCTAssertEqual(found.checkpoint.optimizerState, state(4), what)
            XCTAssertEqual(warnings.count, 1, what)
            XCTAssertTrue(warnings.first?.contains(what) == true, "\(what): \(warnings)")
        }
    }

    /// A part of another run at the same step: a valid file with its own seal, but not the bytes the manifest
    /// lists.
    func testAPartOfAnotherRunIsRefused() throws {
        let s = try store()
        try write(s, step: 4)
        let newest = try write(s, step: 8)
        let other = CheckpointStore(directory: dir + "/other", keep: 0)
        try other.prepare()
        try other.startFresh(overwrite: false)
        let foreign = try write(other, step: 8, whole: state(8, salt: 1))
        let p = CheckpointPart.path(manifest: newest, rank: 1, parts: 3)
        unlink(p)
        try FileManager.default.copyItem(atPath: CheckpointPart.path(manifest: foreign, rank: 1, parts: 3), toPath: p)
        var warnings: [String] = []
        XCTAssertEqual(try s.newestValid { warnings.append($0) }?.checkpoint.step, 4)
        XCTAssertTrue(warnings.first?.contains("another step or run") == true, "\(warnings)")
    }

    /// Parts written without their manifest (a rank or rank 0 killed before the set was complete) are no
    /// checkpoint; when nothing is complete the error names every problem.
    func testPartsWithoutAManifestAreNoCheckpointAndNoneValidIsOneError() throws {
        let s = try store()
        try write(s, step: 4)
        _ = try s.savePart(CheckpointPart(rank: 0, parts: 3, step: 8, state: shards.ownedState(state(8), copies: copies, rank: 0)))
        XCTAssertEqual(try s.newestValid { XCTFail($0) }?.checkpoint.step, 4)
        unlink(CheckpointPart.path(manifest: s.path(step: 4), rank: 2, parts: 3))
        XCTAssertThrowsError(try s.newestValid { _ in }) { error in
            XCTAssertTrue("\(error)".contains("no valid checkpoint") && "\(error)".contains("part-2-of-3.safetensors is missing"), "\(error)")
        }
    }

    func testPruningAndAFreshStartRemoveThePartsWithTheirManifest() throws {
        func first() throws {   // (its store, and the directory's lock, released on return)
            let s = CheckpointStore(directory: dir + "/ckpt", keep: 2)
            try s.prepare()
            try s.startFresh(overwrite: false)
            for step in [2, 4, 6] { try write(s, step: step) }
            XCTAssertEqual(s.list().map(\.step), [6, 4])
            XCTAssertTrue(CheckpointStore.partFiles(of: s.path(step: 2)).isEmpty)
            XCTAssertEqual(CheckpointStore.partFiles(of: s.path(step: 4)).count, 3)
        }
        try first()
        let again = CheckpointStore(directory: dir + "/ckpt", keep: 2)
        try again.prepare()
        try again.startFresh(overwrite: true)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir + "/ckpt").filter { !$0.hasPrefix(".") }
        XCTAssertEqual(left, [], "\(left)")
    }
    /// Parts no manifest lists can never be resumed, and nothing else removes them: the next job's `prepare`
    /// (holding the lock) removes parts whose manifest is absent, and a step written again at another np removes
    /// the other set's parts. Parts beside an existing manifest stay, even a damaged one's.
    func testOrphanPartsAreRemovedAndListedPartsStay() throws {
        func first() throws {
            // A relative --checkpoint-dir, as users give it (the part files are found by absolute path).
            let cwd = FileManager.default.currentDirectoryPath
            _ = FileManager.default.changeCurrentDirectoryPath(dir)
            defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
            let s = CheckpointStore(directory: "ckpt", keep: 0)
            try s.prepare()
            try s.startFresh(overwrite: false)
            try write(s, step: 4)
            _ = try s.savePart(CheckpointPart(rank: 1, parts: 3, step: 8, state: shards.ownedState(state(8), copies: copies, rank: 1)))
            // Step 4 written again by 2 ranks (a resume at np 2): the 3-rank set of step 4 goes.
            let two = UpdateShards(count: count, pieces: [0..<50], parts: 2)
            let sums = try (0..<2).map { rank in
                try s.savePart(CheckpointPart(rank: rank, parts: 2, step: 4, state: two.ownedState(state(4), copies: copies, rank: rank)))
            }
            let snapshot = Checkpoint(step: 4, epoch: 0, parameters: (0..<count).map { Float($0 + 4) }, optimizerState: [], identity: ["config.x": "1"])
            try s.saveManifest(snapshot, shards: two, copies: copies, checksums: sums)
            XCTAssertEqual(CheckpointStore.partFiles(of: s.path(step: 4)).map { URL(fileURLWithPath: $0).lastPathComponent }.sorted(),
                           ["ckpt-00000004.part-0-of-2.safetensors", "ckpt-00000004.part-1-of-2.safetensors"])
            XCTAssertEqual(try s.newestValid { XCTFail($0) }?.checkpoint.optimizerState, state(4))
        }
        try first()
        let userFiles = ["ckpt-notes.part-1.txt", "ckpt-00000008.part-1-of-3.safetensors.bak"].map { dir + "/ckpt/" + $0 }
        for f in userFiles { _ = FileManager.default.createFile(atPath: f, contents: Data([1])) }
        let again = CheckpointStore(directory: dir + "/ckpt", keep: 0)
        let note = try again.prepare()
        for f in userFiles { XCTAssertTrue(FileManager.default.fileExists(atPath: f), "a user's file is kept: \(f)") }
        XCTAssertEqual(note, "removed 1 checkpoint part without a manifest from \(dir)/ckpt")
        // Files that only look like parts are the user's, never removed.
        for name in ["ckpt-notes.part-1.txt", "ckpt-00000009.part-0-of-2.safetensors.bak", "ckpt-9.part-0-of-2.safetensors",
                     "ckpt-00000009.part-2-of-2.safetensors", "ckpt-0000000x.part-0-of-2.safetensors"] {
            XCTAssertNil(CheckpointPart.manifestName(ofPart: name), name)
        }
        XCTAssertEqual(CheckpointPart.manifestName(ofPart: "ckpt-00000009.part-1-of-2.safetensors"), "ckpt-00000009.safetensors")
        XCTAssertTrue(CheckpointStore.partFiles(of: again.path(step: 8)).isEmpty)
        XCTAssertEqual(CheckpointStore.partFiles(of: again.path(step: 4)).count, 2, "a manifest's parts stay")
    }
}
