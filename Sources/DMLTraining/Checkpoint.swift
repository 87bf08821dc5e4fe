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
/// On disk: safetensors with one tensor per named parameter in the model's layout (`layers.0.weight`, …),
/// one per named parameter and copy of the optimizer state (`optimizer.0.layers.0.weight`: momentum's velocity,
/// Adam's first moment; `optimizer.1.…`: Adam's second moment), `step` and `epoch` (I64); metadata holds the
/// run's identity (the fields a resume checks: every `config.*` field of `JobConfiguration.identity` and the
/// `derived.*` values the session adds), the layout's order (`layout`), the run's `run_id`, and a seal
/// (`Safetensors.sealed`: an XXH3-64 of the file's own content), verified on load.
public struct Checkpoint: Equatable {
    public var step: Int
    public var epoch: Int
    /// The parameters, one flat buffer laid out by `layout`.
    public var parameters: [Float]
    /// `copies × parameters.count` values, each copy laid out like the parameters.
    public var optimizerState: [Float]
    /// The named tensors of the flat buffers, in order.
    public var layout: [NamedShape]
    /// Fields that must be equal on resume: keys `config.*` (the configuration that changes the math) and
    /// `derived.*` (model shape, schedule, data rows and checksum).
    public var identity: [String: String]
    /// The run that wrote it: made at a fresh start, kept by every resume of that run. Pruning deletes only
    /// this run's files.
    public var runID: String
    /// What the session needs besides the model to continue exactly (early stopping's best loss and count),
    /// stored as `session.*` metadata.
    public var sessionState: [String: String] = [:]
    /// What the strategy keeps besides the parameters and the optimizer's vectors (a full-batch method's
    /// scalars: the trust-region radius, the initial gradient norm), stored as `strategy.*` metadata.
    public var strategyState: [String: String] = [:]

    public static let format = "dml-checkpoint", formatVersion = 2

    /// `layout` defaults to one tensor `parameters` (tests of the file format itself).
    public init(step: Int, epoch: Int, parameters: [Float], optimizerState: [Float], layout: [NamedShape]? = nil,
                identity: [String: String], runID: String = "") {
        self.step = step
        self.epoch = epoch
        self.parameters = parameters
        self.optimizerState = optimizerState
        self.layout = layout ?? [NamedShape(name: "parameters", shape: [parameters.count])]
        self.identity = identity
        self.runID = runID
    }

    /// True for the metadata keys that are identity fields.
    static func isIdentityKey(_ k: String) -> Bool { k.hasPrefix("config.") || k.hasPrefix("derived.") }

    public func encode() throws -> [UInt8] {
        precondition(layout.reduce(0) { $0 + $1.count } == parameters.count, "the layout must cover the parameters")
        let p = parameters.count, copies = p > 0 ? optimizerState.count / p : 0
        var tensors: [Safetensors.Tensor] = []
        func add(_ values: [Float], base: Int, prefix: String) {
            var offset = base
            values.withUnsafeBufferPointer { v in
                for t in layout {
                    tensors.append(Safetensors.Tensor(name: prefix + t.name, shape: t.shape,
                                                      floats: UnsafeBufferPointer(rebasing: v[offset ..< offset + t.count])))
                    offset += t.count
                }
            }
        }
        add(parameters, base: 0, prefix: "")
        for c in 0..<copies { add(optimizerState, base: c * p, prefix: "optimizer.\(c).") }
        tensors.append(Safetensors.Tensor(name: "step", shape: [1], int64s: [Int64(step)]))
        tensors.append(Safetensors.Tensor(name: "epoch", shape: [1], int64s: [Int64(epoch)]))
        var metadata = identity
        metadata["run_id"] = runID
        for (k, v) in sessionState { metadata["session." + k] = v }
        for (k, v) in strategyState { metadata["strategy." + k] = v }
        metadata["format"] = Self.format
        metadata["format_version"] = String(Self.formatVersion)
        metadata["layout"] = layout.map(\.name).joined(separator: ",")
        metadata["optimizer_copies"] = String(copies)
        metadata["step"] = String(step)
        metadata["sampler"] = "a pure function of seed and step"
        return try Safetensors.sealed(tensors, metadata: metadata)
    }

    /// Decodes and verifies a checkpoint file's bytes; any damage is an error saying what is wrong.
    public static func decode(_ bytes: [UInt8]) throws -> Checkpoint {
        let file = try Safetensors.decode(bytes)
        guard file.metadata["format"] == format else { throw Safetensors.FormatError(reason: "not a DML checkpoint") }
        try Safetensors.verifySeal(file)
        guard file.metadata["format_version"] == String(formatVersion) else {
            throw Safetensors.FormatError(reason: "it is a checkpoint of format \(file.metadata["format_version"] ?? "1"); this DML reads format \(formatVersion)")
        }
        guard let names = file.metadata["layout"]?.split(separator: ",").map(String.init), !names.isEmpty,
              let copies = file.metadata["optimizer_copies"].flatMap({ Int($0) }), copies >= 0 else {
            throw Safetensors.FormatError(reason: "its layout is missing")
        }
        var layout: [NamedShape] = [], parameters: [Float] = [], state: [Float] = []
        for name in names {
            guard let e = file.entries[name] else { throw Safetensors.FormatError(reason: "no tensor named '\(name)'") }
            layout.append(NamedShape(name: name, shape: e.shape))
            parameters += try file.floats(name)
        }
        for c in 0..<copies { for name in names { state += try file.floats("optimizer.\(c).\(name)") } }
        guard let step = try file.int64s("step").first, let epoch = try file.int64s("epoch").first else {
            throw Safetensors.FormatError(reason: "step or epoch is empty")
        }
        let identity = file.metadata.filter { isIdentityKey($0.key) }
        var c = Checkpoint(step: Int(step), epoch: Int(epoch), parameters: parameters, optimizerState: state, layout: layout,
                           identity: identity, runID: file.metadata["run_id"] ?? "")
        for (k, v) in file.metadata where k.hasPrefix("session.") { c.sessionState[String(k.dropFirst(8))] = v }
        for (k, v) in file.metadata where k.hasPrefix("strategy.") { c.strategyState[String(k.dropFirst(9))] = v }
        return c
    }

    /// The identity fields where this checkpoint and the current run differ, as a message naming each
    /// (configuration fields first, then derived ones, each group sorted); nil when they match.
    public func mismatch(with expected: [String: String]) -> String? {
        let keys = Set(identity.keys).union(expected.keys).filter(Self.isIdentityKey)
            .sorted { ($0.hasPrefix("config.") ? 0 : 1, $0) < ($1.hasPrefix("config.") ? 0 : 1, $1) }
        let differing = keys.filter { identity[$0] != expected[$0] }
        guard !differing.isEmpty else { return nil }
        func show(_ v: String?) -> String { v.map { "'\($0)'" } ?? "none" }
        return differing.map { k in
            let name = k.split(separator: ".", maxSplits: 1).last.map(String.init) ?? k
            return "'\(name)' differs (the checkpoint has \(show(identity[k])), this run has \(show(expected[k])))"
        }.joined(separator: "; ")
    }
}

/// The checkpoint directory. Only rank 0 ever creates one of these: other ranks never touch the directory, except
/// that under `--shard-update` each rank writes its own part file into it (`savePart`).
///
/// Files are `ckpt-<step, 8 digits>.safetensors`, written atomically (`AtomicFile`: temp file, fsync,
/// rename, directory fsync), so a crash leaves either the previous file set or the new complete file.
///
/// A directory belongs to one run at a time:
/// - `prepare` takes an advisory lock (`flock` on `.dml-lock`, released by the kernel when the process
///   ends, however it ends): a second job on the same directory is refused, naming the holder;
/// - holding the lock, it removes the temporary files of writes that a killed job left behind (nobody
///   else can be writing);
/// - a fresh run (`startFresh`) refuses a directory that already holds checkpoints, unless told to
///   overwrite them, so an older run's files can neither be pruned in place of the new run's nor resumed
///   by mistake later;
/// - every checkpoint records its run's id, and pruning deletes only the current run's files.
public final class CheckpointStore {
    public let directory: String
    /// Checkpoints kept after each save (older ones of this run are deleted); 0 keeps all.
    public let keep: Int
    /// The run whose checkpoints this store writes and prunes (`startFresh` makes one, `adopt` takes a
    /// resumed checkpoint's).
    public private(set) var runID = ""
    private var lock: Int32 = -1

    public init(directory: String, keep: Int) {
        self.directory = directory
        self.keep = keep
    }

    deinit { if lock >= 0 { close(lock) } }

    /// The names this store writes, renames or deletes in its directory: checkpoints, their parts, their
    /// temporaries and the lock.
    public static func owns(_ name: String) -> Bool {
        (name.hasPrefix("ckpt-") && name.hasSuffix(".safetensors")) || name.hasPrefix(".ckpt-") || name == ".dml-lock"
    }

    public func path(step: Int) -> String {
        directory + "/" + String(format: "ckpt-%08d.safetensors", step)
    }

    /// Creates the directory if needed, checks that files can be written in it, takes the directory's lock
    /// (`.configuration` when another job holds it) and removes stray temporary files. Returns a note on
    /// what it removed, if anything.
    @discardableResult
    public func prepare() throws -> String? {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw AtomicFile.WriteError(path: directory, reason: "cannot create the checkpoint directory (\(error.localizedDescription))",
                                         kind: .cannotCreate)
        }
        try AtomicFile.checkWritable(directory: directory)
        let lockPath = directory + "/.dml-lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw AtomicFile.WriteError(path: lockPath, reason: "cannot open the lock file: \(String(cString: strerror(errno)))", kind: .cannotCreate)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: lockPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw TrainingFailure("the checkpoint directory \(directory) is in use by another job\(holder.isEmpty ? "" : " (\(holder))"): "
                                  + "two jobs sharing a directory would delete each other's checkpoints. Give this job its own --checkpoint-dir",
                                  kind: .configuration)
        }
        lock = fd
        let me = "process \(getpid()) on \(ProcessInfo.processInfo.hostName)"
        ftruncate(fd, 0)
        _ = me.withCString { write(fd, $0, strlen($0)) }
        // Holding the lock, no one else can be writing here: temporary files are a killed writer's.
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let stray = names.filter { $0.hasPrefix(".ckpt-") && $0.contains(".safetensors.tmp-") }
        for name in stray { unlink(directory + "/" + name) }
        // Parts whose manifest does not exist (a job killed between its parts and its manifest) can never be
        // resumed: they are removed too. Parts beside a manifest stay, even a damaged one's (for inspection).
        // Only names this store writes (`ckpt-<8 digits>.part-<r>-of-<p>.safetensors`): a user's file that merely
        // looks alike (`ckpt-notes.part-1.txt`, a `.bak` copy) is never touched.
        let orphans = names.filter { name in
            guard let manifest = CheckpointPart.manifestName(ofPart: name) else { return false }
            return !names.contains(manifest)
        }
        for name in orphans { unlink(directory + "/" + name) }
        var removed: [String] = []
        if !stray.isEmpty { removed.append("\(stray.count) temporary file\(stray.count == 1 ? "" : "s") of an interrupted checkpoint write") }
        if !orphans.isEmpty { removed.append("\(orphans.count) checkpoint part\(orphans.count == 1 ? "" : "s") without a manifest") }
        return removed.isEmpty ? nil : "removed \(removed.joined(separator: " and ")) from \(directory)"
    }

    /// A fresh run in this directory: refused (`.configuration`) when it already holds checkpoints, unless
    /// `overwrite`, which deletes them first. Makes the run's id. Returns a note on what it deleted, if anything.
    @discardableResult
    public func startFresh(overwrite: Bool) throws -> String? {
        runID = Self.newRunID()
        let present = list()
        guard let newest = present.first else { return nil }
        guard overwrite else {
            let other = Self.runID(of: newest.path).map { " of run \($0)" } ?? ""
            throw TrainingFailure("the checkpoint directory \(directory) already holds \(present.count) checkpoint\(present.count == 1 ? "" : "s")\(other), "
                                  + "the newest at step \(newest.step): continue that run with --resume, give this run another --checkpoint-dir, "
                                  + "or pass --overwrite-checkpoints to delete them", kind: .configuration)
        }
        for f in present { Self.remove(f.path) }
        return "--overwrite-checkpoints: deleted \(present.count) checkpoint\(present.count == 1 ? "" : "s") (up to step \(newest.step)) from \(directory)"
    }

    /// Continues the run that wrote `checkpoint`: its files are the ones pruned from now on.
    public func adopt(_ checkpoint: Checkpoint) {
        runID = checkpoint.runID
    }

    /// A new run id: 16 hex digits from the system's random source.
    static func newRunID() -> String { Checksum.hex(UInt64.random(in: 0 ... .max)) }

    /// The `run_id` in a checkpoint file's header, read without reading its data; nil when unreadable.
    static func runID(of path: String) -> String? { metadata(of: path)?["run_id"] }

    /// The value of identity key `key` in the newest checkpoint file that records it, read from the headers
    /// alone; nil when no checkpoint has it. (Every checkpoint of one run records the same identity, so a
    /// damaged newest file only moves the answer to the next one; a file of another run is refused at resume.)
    public func newestRecorded(_ key: String) -> String? {
        list().lazy.compactMap { Self.metadata(of: $0.path)?[key] }.first
    }

    /// A safetensors file's `__metadata__`, read without reading its data; nil when unreadable.
    static func metadata(of path: String) -> [String: String]? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 8), head.count == 8 else { return nil }
        let n = head.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard n < 1 << 24, let json = try? handle.read(upToCount: Int(n)), json.count == Int(n),
              let header = try? JSONSerialization.jsonObject(with: json) as? [String: Any],
              let metadata = header["__metadata__"] as? [String: String] else { return nil }
        return metadata
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

    /// Writes `checkpoint` (stamped with this run's id) atomically, then deletes all but the newest `keep`
    /// of this run's files (files of another run are never deleted). Returns the file's path.
    @discardableResult
    public func save(_ checkpoint: Checkpoint, fault: AtomicFile.Fault? = nil) throws -> String {
        var stamped = checkpoint
        stamped.runID = runID
        let p = path(step: checkpoint.step)
        try AtomicFile.write(stamped.encode(), to: p, fault: fault)
        if keep > 0 {
            for old in list().filter({ Self.runID(of: $0.path) == runID }).dropFirst(keep) { Self.remove(old.path) }
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
                var bytes = [UInt8](data)
                var c = try Checkpoint.decode(bytes)
                guard c.step == f.step else { throw Safetensors.FormatError(reason: "holds step \(c.step), not \(f.step)") }
                // A sharded update's manifest: its parts put together, as one whole checkpoint (`ShardedCheckpoint.swift`).
                if c.isShardedManifest {
                    c = try c.assemblingParts(manifest: f.path)
                    bytes = try c.encode()
                }
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
