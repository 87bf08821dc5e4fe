#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLComm
import DMLStatus

/// Everything a run needs to continue exactly where it stopped.
///
/// The batch sampler is a pure function of (seed, step) and the models draw no random numbers after
/// initialisation, so the step number *is* the sampler and RNG state: nothing else needs saving.
///
/// On disk: safetensors with tensors `parameters` [P], `optimizer_state` [copies, P] (absent for plain
/// SGD), `step` and `epoch` (I64); metadata holds the run's identity (the fields a resume checks), and
/// `checksum`, a `Checksum` (XXH3-64, named in `checksum_algorithm`) of the file's own content (metadata, tensor
/// table and data), verified on load.
public struct Checkpoint: Equatable {
    public var step: Int
    public var epoch: Int
    public var parameters: [Float]
    public var optimizerState: [Float]
    /// Fields that must be equal on resume (model, shapes, batch size, seed, optimizer, schedule, data…).
    public var identity: [String: String]

    public init(step: Int, epoch: Int, parameters: [Float], optimizerState: [Float], identity: [String: String]) {
        self.step = step
        self.epoch = epoch
        self.parameters = parameters
        self.optimizerState = optimizerState
        self.identity = identity
    }

    /// The identity fields, in the order a resume checks them (and names the first that differs).
    public static let identityFields = ["model", "model_shape", "batch_size", "seed", "optimizer", "lr_schedule",
                                        "data", "data_rows", "data_checksum"]

    public func encode() throws -> [UInt8] {
        var tensors = [
            parameters.withUnsafeBufferPointer { Safetensors.Tensor(name: "parameters", shape: [parameters.count], floats: $0) },
            Safetensors.Tensor(name: "step", shape: [1], int64s: [Int64(step)]),
            Safetensors.Tensor(name: "epoch", shape: [1], int64s: [Int64(epoch)]),
        ]
        if !optimizerState.isEmpty {
            tensors.append(optimizerState.withUnsafeBufferPointer {
                Safetensors.Tensor(name: "optimizer_state", shape: [optimizerState.count / parameters.count, parameters.count], floats: $0)
            })
        }
        var metadata = identity
        metadata["format"] = "dml-checkpoint"
        metadata["step"] = String(step)
        metadata["sampler"] = "a pure function of seed and step"
        metadata["checksum_algorithm"] = Checksum.algorithm
        let unsigned = try Safetensors.decode(Safetensors.encode(tensors, metadata: metadata))
        metadata["checksum"] = Checksum.hex(Self.contentChecksum(unsigned))
        return try Safetensors.encode(tensors, metadata: metadata)
    }

    /// Decodes and verifies a checkpoint file's bytes; any damage is an error saying what is wrong.
    public static func decode(_ bytes: [UInt8]) throws -> Checkpoint {
        let file = try Safetensors.decode(bytes)
        guard file.metadata["format"] == "dml-checkpoint" else { throw Safetensors.FormatError(reason: "not a DML checkpoint") }
        guard let stored = file.metadata["checksum"] else { throw Safetensors.FormatError(reason: "it has no checksum") }
        guard file.metadata["checksum_algorithm"] == Checksum.algorithm else {
            throw Safetensors.FormatError(reason: "its checksum is \(file.metadata["checksum_algorithm"].map { "'\($0)'" } ?? "the FNV-1a of DML before 2026-12"), "
                                          + "not \(Checksum.algorithm): it was written by another version of DML and cannot be verified")
        }
        let actual = Checksum.hex(contentChecksum(file))
        guard stored == actual else {
            throw Safetensors.FormatError(reason: "checksum mismatch (stored \(stored), content gives \(actual)): the file is damaged")
        }
        let parameters = try file.floats("parameters")
        let state = file.entries["optimizer_state"] == nil ? [] : try file.floats("optimizer_state")
        guard let step = try file.int64s("step").first, let epoch = try file.int64s("epoch").first else {
            throw Safetensors.FormatError(reason: "step or epoch is empty")
        }
        var identity: [String: String] = [:]
        for k in identityFields { identity[k] = file.metadata[k] }
        return Checkpoint(step: Int(step), epoch: Int(epoch), parameters: parameters, optimizerState: state, identity: identity)
    }

    /// The checksum of everything in a parsed file except the `checksum` entry itself: metadata (sorted),
    /// the tensor table (sorted by name) and the data section.
    static func contentChecksum(_ file: Safetensors.File) -> UInt64 {
        var text = ""
        for (k, v) in file.metadata.sorted(by: { $0.key < $1.key }) where k != "checksum" { text += "m \(k)=\(v)\n" }
        for (name, e) in file.entries.sorted(by: { $0.key < $1.key }) {
            text += "t \(name) \(e.dtype.rawValue) \(e.shape) \(e.range.lowerBound) \(e.range.upperBound)\n"
        }
        return Checksum.hash(file.data, seed: Checksum.hash(text))
    }

    /// The first identity field where this checkpoint and the current run differ, as a message; nil
    /// when they match.
    public func mismatch(with expected: [String: String]) -> String? {
        for k in Self.identityFields where identity[k] != expected[k] {
            return "field '\(k)' differs: the checkpoint has \(identity[k].map { "'\($0)'" } ?? "none"), "
                + "this run has \(expected[k].map { "'\($0)'" } ?? "none")"
        }
        return nil
    }
}

/// The checkpoint directory. Only rank 0 ever creates one of these: other ranks never touch the directory.
///
/// Files are `ckpt-<step, 8 digits>.safetensors`, written atomically (`AtomicFile`: temp file, fsync,
/// rename, directory fsync), so a crash leaves either the previous file set or the new complete file.
public struct CheckpointStore {
    public let directory: String
    /// Checkpoints kept after each save (older ones are deleted); 0 keeps all.
    public let keep: Int

    public init(directory: String, keep: Int) {
        self.directory = directory
        self.keep = keep
    }

    public func path(step: Int) -> String {
        directory + "/" + String(format: "ckpt-%08d.safetensors", step)
    }

    /// Creates the directory if needed and checks that files can be written in it.
    public func prepare() throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw AtomicFile.WriteError(path: directory, reason: "cannot create the checkpoint directory (\(error.localizedDescription))",
                                         kind: .cannotCreate)
        }
        try AtomicFile.checkWritable(directory + "/probe")
    }

    /// The checkpoint files present, newest (highest step) first.
    public func list() -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("ckpt-"), name.hasSuffix(".safetensors"),
                  let s = Int(name.dropFirst(5).dropLast(12)) else { return nil }
            return (s, directory + "/" + name)
        }.sorted { $0.0 > $1.0 }
    }

    /// Writes `checkpoint` atomically, then deletes all but the newest `keep`. Returns the file's path.
    @discardableResult
    public func save(_ checkpoint: Checkpoint, fault: AtomicFile.Fault? = nil) throws -> String {
        let p = path(step: checkpoint.step)
        try AtomicFile.write(checkpoint.encode(), to: p, fault: fault)
        if keep > 0 {
            for old in list().dropFirst(keep) { unlink(old.path) }
        }
        return p
    }

    /// The newest checkpoint that reads and verifies, with its path and bytes; each damaged newer file
    /// is passed to `warn` (and left in place for inspection). Nil when the directory has no checkpoint
    /// files; an error (`.dataFormat`) when it has some but none is valid.
    public func newestValid(warn: (String) -> Void) throws -> (checkpoint: Checkpoint, path: String, bytes: [UInt8])? {
        let files = list()
        guard !files.isEmpty else { return nil }
        var problems: [String] = []
        for f in files {
            do {
                guard let data = FileManager.default.contents(atPath: f.path) else {
                    throw Safetensors.FormatError(reason: "cannot be read")
                }
                let bytes = [UInt8](data)
                let c = try Checkpoint.decode(bytes)
                guard c.step == f.step else { throw Safetensors.FormatError(reason: "holds step \(c.step), not \(f.step)") }
                return (c, f.path, bytes)
            } catch {
                let message = "checkpoint \(f.path) is unusable (\(error)); trying an older one"
                problems.append("\(f.path): \(error)")
                warn(message)
            }
        }
        throw TrainingFailure("no valid checkpoint in \(directory): " + problems.joined(separator: "; "), kind: .dataFormat)
    }
}
