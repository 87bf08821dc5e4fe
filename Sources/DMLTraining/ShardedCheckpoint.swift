#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLComm

/// A sharded update's checkpoint, written in parallel (`--shard-update` with `--checkpoint-dir`): each rank
/// writes its own part of the optimizer state, and rank 0, once every part is durable, the **manifest**: the
/// usual checkpoint file `ckpt-<step>.safetensors` with the parameters, no optimizer tensors, and in its
/// `strategy.shard_*` metadata the number of parts, how the state was cut (the pieces) and an XXH3-64 of every
/// part's bytes.
///
/// ```
/// every rank: ckpt-00000008.part-R-of-P.safetensors   (AtomicFile: its compact state, step, rank, parts; sealed)
///   ─▶ allgather of the parts' checksums (agreed: a failed write stops every rank, no manifest)
///   ─▶ rank 0: ckpt-00000008.safetensors  (AtomicFile; the manifest, written last) ─▶ prune older sets
/// ```
/// Invariants: a checkpoint counts only when its manifest exists and reads (the store lists manifests, never
/// parts), and it loads only when every part it names is present, verifies its own seal, holds the manifest's
/// step, rank and part count, and has the manifest's checksum — so a part missing, damaged, from another step or
/// from another run makes the whole checkpoint unusable and `CheckpointStore.newestValid` falls back to the
/// previous complete one (or names every problem). Loading assembles the whole state (`UpdateShards.wholeState`'s
/// layout) on rank 0, so a sharded checkpoint resumes on any np, sharded or not.
///
/// Cost: each rank writes `copies × n/p` floats in parallel, rank 0 also the n parameters; no state crosses the
/// network (8 bytes per rank of checksums).
public struct CheckpointPart: Equatable {
    public var rank: Int
    public var parts: Int
    public var step: Int
    /// This rank's compact optimizer state (`Optimizer.state` of its owned coordinates).
    public var state: [Float]

    public static let format = "dml-checkpoint-part"

    public init(rank: Int, parts: Int, step: Int, state: [Float]) {
        self.rank = rank
        self.parts = parts
        self.step = step
        self.state = state
    }

    /// The part's file beside its manifest `ckpt-<step>.safetensors`.
    /// The manifest's file name of a part's file name `ckpt-NNNNNNNN.part-R-of-P.safetensors` (R < P, eight digits),
    /// or nil when `name` is not exactly such a name.
    static func manifestName(ofPart name: String) -> String? {
        guard name.hasPrefix("ckpt-"), name.hasSuffix(".safetensors") else { return nil }
        let stem = name.dropFirst(5).dropLast(".safetensors".count)
        let pieces = stem.split(separator: ".", omittingEmptySubsequences: false)
        guard pieces.count == 2, pieces[0].count == 8, pieces[0].allSatisfy(\.isASCII), Int(pieces[0]) != nil,
              pieces[1].hasPrefix("part-") else { return nil }
        let numbers = pieces[1].dropFirst(5).split(separator: "-", omittingEmptySubsequences: false)
        guard numbers.count == 3, numbers[1] == "of", let r = Int(numbers[0]), let p = Int(numbers[2]), r >= 0, r < p,
              String(r) == numbers[0], String(p) == numbers[2] else { return nil }
        return "ckpt-\(pieces[0]).safetensors"
    }

    public static func path(manifest: String, rank: Int, parts: Int) -> String {
        String(manifest.dropLast(".safetensors".count)) + ".part-\(rank)-of-\(parts).safetensors"
    }

    public func encode() throws -> [UInt8] {
        try state.withUnsafeBufferPointer { s in
            try Safetensors.sealed([Safetensors.Tensor(name: "state", shape: [state.count], floats: s)],
                                   metadata: ["format": Self.format, "rank": String(rank), "parts": String(parts), "step": String(step)])
        }
    }

    public static func decode(_ bytes: [UInt8]) throws -> CheckpointPart {
        let file = try Safetensors.decode(bytes)
        guard file.metadata["format"] == format else { throw Safetensors.FormatError(reason: "not a DML checkpoint part") }
        try Safetensors.verifySeal(file)
        guard let rank = file.metadata["rank"].flatMap({ Int($0) }), let parts = file.metadata["parts"].flatMap({ Int($0) }),
              let step = file.metadata["step"].flatMap({ Int($0) }) else {
            throw Safetensors.FormatError(reason: "its rank, part count or step is missing")
        }
        return CheckpointPart(rank: rank, parts: parts, step: step, state: try file.floats("state"))
    }
}

extension Checkpoint {
    /// The `strategyState` keys of a sharded manifest.
    static let shardKeys = (parts: "shard_parts", pieces: "shard_pieces", count: "shard_count", copies: "shard_copies", checksums: "shard_checksums")

    /// True for a manifest whose optimizer state lies in parts.
    public var isShardedManifest: Bool { strategyState[Self.shardKeys.parts] != nil }

    /// This snapshot (parameters and identity, no optimizer state) as the manifest of parts cut by `shards`, each
    /// holding `copies` copies, with the XXH3-64 of each part's bytes in rank order.
    func manifest(shards: UpdateShards, copies: Int, checksums: [UInt64]) -> Checkpoint {
        var m = self
        m.optimizerState = []
        m.strategyState[Self.shardKeys.parts] = String(shards.parts)
        m.strategyState[Self.shardKeys.pieces] = shards.pieces.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",")
        m.strategyState[Self.shardKeys.count] = String(shards.count)
        m.strategyState[Self.shardKeys.copies] = String(copies)
        m.strategyState[Self.shardKeys.checksums] = checksums.map(Checksum.hex).joined(separator: ",")
        return m
    }

    /// A manifest read from `path` with its parts read, checked and put together: the checkpoint with the whole
    /// optimizer state, as an unsharded run writes it. Throws naming the first part that is missing, damaged,
    /// of another step or run (its checksum), or cut otherwise than the manifest says.
    func assemblingParts(manifest path: String) throws -> Checkpoint {
        let k = Self.shardKeys
        guard let parts = strategyState[k.parts].flatMap({ Int($0) }), parts >= 1,
              let count = strategyState[k.count].flatMap({ Int($0) }), count == parameters.count,
              let copies = strategyState[k.copies].flatMap({ Int($0) }), copies >= 0,
              let sums = strategyState[k.checksums]?.split(separator: ",").map(String.init), sums.count == parts,
              let pieceText = strategyState[k.pieces] else {
            throw Safetensors.FormatError(reason: "its manifest of parts is incomplete")
        }
        let pieces = try pieceText.split(separator: ",").map { text -> Range<Int> in
            let ends = text.split(separator: "-").compactMap { Int($0) }
            guard ends.count == 2, ends[0] <= ends[1] else { throw Safetensors.FormatError(reason: "its manifest names a piece '\(text)'") }
            return ends[0] ..< ends[1]
        }
        let shards = UpdateShards(count: count, pieces: pieces, parts: parts)
        var whole = [Float](repeating: 0, count: copies * count)
        for rank in 0..<parts {
            let partPath = CheckpointPart.path(manifest: path, rank: rank, parts: parts)
            guard let data = FileManager.default.contents(atPath: partPath) else {
                throw Safetensors.FormatError(reason: "its part \(partPath) is missing")
            }
            let bytes = [UInt8](data)
            let part: CheckpointPart
            do { part = try CheckpointPart.decode(bytes) } catch { throw Safetensors.FormatError(reason: "its part \(partPath) is damaged (\(error))") }
            guard Checksum.hex(Checksum.hash(bytes)) == sums[rank] else {
                throw Safetensors.FormatError(reason: "its part \(partPath) is not the one the manifest lists (checksum \(Checksum.hex(Checksum.hash(bytes))), "
                                              + "expected \(sums[rank]): a part of another step or run)")
            }
            let n = shards.ownedCount(rank: rank)
            guard part.rank == rank, part.parts == parts, part.step == step, part.state.count == copies * n else {
                throw Safetensors.FormatError(reason: "its part \(partPath) holds rank \(part.rank) of \(part.parts) at step \(part.step) "
                                              + "with \(part.state.count) values; the manifest needs rank \(rank) of \(parts) at step \(step) with \(copies * n)")
            }
            shards.place(part.state, rank: rank, copies: copies, into: &whole)
        }
        var assembled = self
        assembled.optimizerState = whole
        for key in [k.parts, k.pieces, k.count, k.copies, k.checksums] { assembled.strategyState[key] = nil }
        return assembled
    }
}

extension CheckpointStore {
    /// Any rank: writes its part of the checkpoint of step `step` atomically (`AtomicFile`, with `fault`) and
    /// returns the XXH3-64 of its bytes (for the manifest).
    public func savePart(_ part: CheckpointPart, fault: AtomicFile.Fault? = nil) throws -> UInt64 {
        let bytes = try part.encode()
        try AtomicFile.write(bytes, to: CheckpointPart.path(manifest: path(step: part.step), rank: part.rank, parts: part.parts), fault: fault)
        return Checksum.hash(bytes)
    }

    /// Rank 0, after every part is written: the manifest of `checkpoint`'s parts (`Checkpoint.manifest`),
    /// written last, then pruning as `save` does (manifests and their parts). First it checks that it sees every
    /// rank's part: a `--checkpoint-dir` that is not one shared directory (a node-local path of the same name)
    /// would otherwise make every checkpoint incomplete, found only at `--resume`. Cost: one `stat` per rank.
    @discardableResult
    public func saveManifest(_ checkpoint: Checkpoint, shards: UpdateShards, copies: Int, checksums: [UInt64],
                             fault: AtomicFile.Fault? = nil) throws -> String {
        let manifest = path(step: checkpoint.step)
        for rank in 0..<checksums.count {
            let part = CheckpointPart.path(manifest: manifest, rank: rank, parts: checksums.count)
            guard FileManager.default.fileExists(atPath: part) else {
                throw AtomicFile.WriteError(path: manifest, reason: "rank \(rank) wrote its part \(part), which rank 0 does not see: "
                                            + "with --shard-update every rank writes into --checkpoint-dir, which must be one directory shared by every node",
                                            kind: .cannotCreate)
            }
        }
        let written = try save(checkpoint.manifest(shards: shards, copies: copies, checksums: checksums), fault: fault)
        // A step written again at another np (a resume whose newest set was damaged): the other set's parts
        // are no longer listed by any manifest.
        // (Compared by name: `partFiles` gives absolute paths, the store's directory may be relative.)
        let mine = Set((0..<checksums.count).map { URL(fileURLWithPath: CheckpointPart.path(manifest: manifest, rank: $0, parts: checksums.count)).lastPathComponent })
        for part in Self.partFiles(of: manifest) where !mine.contains(URL(fileURLWithPath: part).lastPathComponent) { unlink(part) }
        return written
    }

    /// The part files beside the manifest `path` (any part count).
    static func partFiles(of manifest: String) -> [String] {
        let url = URL(fileURLWithPath: manifest)
        let prefix = String(url.lastPathComponent.dropLast(".safetensors".count)) + ".part-"
        let directory = url.deletingLastPathComponent().path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".safetensors") }.map { directory + "/" + $0 }
    }

    /// Deletes a checkpoint: its manifest (or whole file) and its parts.
    static func remove(_ manifest: String) {
        unlink(manifest)
        for part in partFiles(of: manifest) { unlink(part) }
    }
}
