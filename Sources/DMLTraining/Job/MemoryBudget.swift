import Foundation
import DMLComm
import DMLData

/// What a configuration will allocate, checked against what the node has before any of it is allocated:
/// a model too large for memory is one message with the figures, not an allocation failure with every
/// rank's backtrace (`--hidden 2000000`).
public enum MemoryBudget {
    /// Bytes one rank will allocate for a model of `parameters` values (the parameters, the reduced
    /// gradient, `optimizerCopies` copies of optimizer state, and a checkpoint's snapshot of both) and for
    /// the forward and backward passes of `rows` rows through layers of `widths` (activations and deltas).
    /// With CSR rows `widths` leaves out the input width, `sparseInputColumns` is the feature count and
    /// `nonZerosPerRow` the shard's mean: a gathered batch's CSR bytes (8 a non-zero, 8 a row start) and the
    /// sparse products' scratch (`SparseRows`: an Int32 slot per column, a Double sum per touched column) are
    /// counted instead of `rows × features` dense input values (the batch's CSR even for a full batch, which is
    /// a view of the shard: conservative). The data itself is already in memory when this is checked.
    public static func estimate(parameters: Int, optimizerCopies: Int, rows: Int, widths: [Int], sparseInputColumns: Int = 0,
                                nonZerosPerRow: Double = 0) -> Double {
        let model = Double(parameters) * 4 * Double(3 + 2 * optimizerCopies)
        let passes = Double(rows) * Double(widths.reduce(0, +)) * 4 * 3
        let batch = Double(rows) * (8 + 8 * nonZerosPerRow)
        let scratch = sparseInputColumns > 0
            ? Double(sparseInputColumns) * 4 + Swift.min(Double(rows) * nonZerosPerRow, Double(sparseInputColumns)) * 8 * Double(widths.first ?? 1)
            : 0
        return model + passes + (sparseInputColumns > 0 ? batch + scratch : 0)
    }

    /// Bytes a rank streaming its rows from a shard cache holds besides the model and the passes: the process's
    /// own baseline (`baseline`: the runtime, MPI, the code), the labels (4 bytes a row), CSR row starts
    /// (8 bytes a row) and two gathered batches (the rows as read and their copy for the step: dense values,
    /// or 8 bytes a non-zero and a row start). The step window comes out of what `--max-memory` leaves over.
    public static func streamed(shardRows: Int, batchRows: Int, features: Int, nonZerosPerRow: Double?) -> Double {
        let rowBytes = nonZerosPerRow.map { 8 + 8 * $0 } ?? 4 * Double(features)
        return baseline + 4 * Double(shardRows) + (nonZerosPerRow == nil ? 0 : 8 * Double(shardRows)) + 2 * Double(batchRows) * rowBytes
    }

    /// The resident memory of a rank before any data or model (Swift runtime, Open MPI, the code), counted
    /// as 64 MB.
    public static let baseline = 64.0 * 1e6

    /// Bytes a streamed shard may spend on its rows (resident rows or a step window) under `limit` bytes per
    /// rank, when `future` bytes are still to be allocated (the model, the passes, the gathered batches): the
    /// limit less the address space this process has mapped now (`mappedBytes`: what a `ulimit -v` counts, and
    /// at least what is resident), less `future`, less a margin of 1/16 of the limit (at least 24 MB) for what
    /// no estimate sees (allocator slack, MPI's buffers, thread stacks) — or half of `limit − needed` (`needed`:
    /// the whole estimate, the baseline included) when that is more: what is mapped counts heap that was freed
    /// (the cache's checksum pass) but not given back, which a later allocation reuses, and under a 512 MB
    /// `ulimit -v` half of the slack has held (benchmarks/RESULTS.md). Never negative.
    public static func streamingBudget(limit: Double, needed: Double, future: Double) -> Double {
        let half = Swift.max(0, (limit - needed) / 2)
        guard let mapped = mappedBytes else { return half }
        return Swift.max(half, limit - mapped - future - Swift.max(24e6, limit / 16))
    }

    /// The address space this process has mapped (`/proc/self/statm`), or nil where the system does not say.
    /// One `read` of the first field (pages), no allocation beyond 64 bytes.
    public static var mappedBytes: Double? {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var text = [UInt8](repeating: 0, count: 64)
        let n = text.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        var pages = 0.0
        for c in text[0..<n] {
            guard (48...57).contains(c) else { break }
            pages = pages * 10 + Double(c - 48)
        }
        return pages > 0 ? pages * Double(sysconf(Int32(_SC_PAGESIZE))) : nil
    }

    /// Bytes this process may still allocate: the node's available memory (`MemAvailable`), capped by the
    /// cgroup's limit less its usage, shared by `ranksOnNode` ranks. nil where the system does not say.
    public static func available(ranksOnNode: Int) -> Double? {
        var bytes: Double?
        if let info = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = info.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kb = Double(line.split(separator: " ").dropFirst().first ?? "") {
            bytes = kb * 1024
        }
        if let max = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
           let limit = Double(max) {
            let used = (try? String(contentsOfFile: "/sys/fs/cgroup/memory.current", encoding: .utf8))
                .flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
            bytes = Swift.min(bytes ?? .infinity, limit - used)
        }
        return bytes.map { $0 / Double(Swift.max(1, ranksOnNode)) }
    }

    /// Ranks of this job on this node, as the launcher says (OpenMPI, Slurm); 1 when it does not.
    public static var ranksOnNode: Int {
        let env = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "MPI_LOCALNRANKS"] {
            if let v = env[key].flatMap({ Int($0) }), v > 0 { return v }
        }
        return 1
    }

    /// The one message for a `--max-memory` of `limit` bytes that cannot hold one batch: the batch's rows
    /// (`rows` of `inputWidth` Float32 values a rank, or CSR), the model and the passes need about `needed`
    /// bytes (`atLeast`: a lower bound, from what the file says before it is read).
    static func tooSmall(limit: Int, parameters: Int, copies: Int, rows: Int, widths: [Int], needed: Double, atLeast: Bool) -> String {
        "--max-memory \(ByteCount.format(limit)) is too small for one batch: a batch of \(rows) rows a rank "
            + "(\(format(Double(rows) * Double(widths.first ?? 0) * 4)) of input), its passes through layers \(widths.map(String.init).joined(separator: "→")), "
            + "the model (\(parameters) parameters × \(copies) copies) and the streamed rows' buffers need \(atLeast ? "at least " : "")about "
            + "\(Int((needed / Double(1 << 20)).rounded(.up)))M per rank, over the limit of \(ByteCount.format(limit)): "
            + "give a larger --max-memory, or a smaller --batch-size or model"
    }

    /// "12.6 GB".
    public static func format(_ bytes: Double) -> String {
        bytes >= 1e9 ? String(format: "%.1f GB", bytes / 1e9) : String(format: "%.0f MB", bytes / 1e6)
    }
}

extension JobConfiguration.Model {
    /// Parameters of this model for `features` inputs and `outputs` outputs, and its layer widths.
    public func size(features: Int, outputs: Int) -> (parameters: Int, widths: [Int]) {
        let widths = kind == .mlp ? [features] + hidden + [outputs] : [features, outputs]
        let parameters = (1..<widths.count).reduce(0) { $0 + widths[$1] * widths[$1 - 1] + widths[$1] }
        return (parameters, widths)
    }
}

extension JobConfiguration {
    /// Refuses a `--max-memory` that cannot hold one batch before anything is read or written (the parse and
    /// the shard cache of a big file take minutes): one message, from what the training file says before it is
    /// read — a CSV's first record or a `.npy` header give the feature columns, `DataLoader.estimatedShardBytes`
    /// the rank's rows. The figure is a lower bound of what `TrainingJob.checkMemory` counts once the rows are
    /// read (two classes at least, no label bytes, the batch capped at half the estimated rows, the input as
    /// it is before one-hot encoding), so a limit refused here is refused there too; a file that says nothing
    /// before it is read (LIBSVM, HDF5, hashed CSV columns) is checked there only. Collective (agreed).
    /// Cost: the first record and a 256 KiB sample of the rank's byte range.
    func refuseTooSmallMemoryLimit(comm: Communicator) throws {
        guard let limit = data.maxMemory, let source = data.trainingSource, data.partition == .rows else { return try comm.agree(nil, kind: .usage) }
        let options = data.readOptions
        let format = source.format ?? DataFormat.infer(fromPath: source.path)
        var message: String?
        if format == .csv && options.hash == nil || format == .npy,
           let columns = try? DataLoader.columns(source, options: options)?.count,
           let bytes = DataLoader.estimatedShardBytes(source, options: options, rank: comm.rank, ranks: comm.size) {
            let features = Swift.max(1, columns - (options.labeled && source.labelsPath == nil ? 1 : 0))
            let fields = Double(Swift.max(1, columns + (format == .csv ? options.dropColumns.count : 0)))
            let globalRows = bytes / (4 * fields) * Double(comm.size)
            let batchRows = optimization.optimizer.isFullBatch ? 0
                : optimization.batchSize.map { Int((Swift.min(Double($0), globalRows / 2) / Double(comm.size)).rounded(.up)) } ?? Int(globalRows / 2 / Double(comm.size))
            let classification = data.task == .classification && (model.kind == .softmax || model.kind == .mlp)
            let (parameters, widths) = model.size(features: features, outputs: classification ? 2 : 1)
            let needed = MemoryBudget.estimate(parameters: parameters, optimizerCopies: optimization.stateCopies, rows: batchRows, widths: widths)
                + MemoryBudget.streamed(shardRows: 0, batchRows: batchRows, features: features, nonZerosPerRow: nil)
            if needed > Double(limit) {
                message = MemoryBudget.tooSmall(limit: limit, parameters: parameters, copies: 3 + 2 * optimization.stateCopies, rows: batchRows,
                                                widths: widths, needed: needed, atLeast: true)
            }
        }
        try comm.agree(message, kind: .usage)
    }
}
