#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLKernels
import DMLStatus

/// A shard's feature rows read from its binary cache file (`ShardCache`, written by the job) instead of
/// held in memory: `--max-memory` / `--cache-dir`. The labels stay in memory in the `Dataset` (4 bytes a
/// row); the features are read for each batch, in the batch's order, so a step sees exactly the bytes the
/// in-memory shard would have given it (the cache stores the parsed Float32 values, or the CSR arrays, bit
/// for bit).
///
/// How a batch's rows are read (`useMemory` and `plan` choose; all on the caller's thread, no read-ahead
/// thread): rows `0 ..< residentRows` are held in memory; the others come from step windows (`StepWindows`:
/// the rows of many steps read in one sequential pass of 1 MiB blocks) when those pay, else one `pread` per
/// run of consecutive rows (a shuffled batch is mostly single rows), served by the page cache when the file
/// fits there, else by the disk.
///
/// Memory: the CSR row starts (8 bytes a row), one batch of rows, the resident rows and the window.
/// Invariant: the file is not changed while the stream is open (the cache is replaced by `rename`, which
/// leaves this descriptor on the old file); if it is cut short anyway, a read throws `DataError` (`.ioError`).
public final class ShardStream: @unchecked Sendable {
    /// Where the rows lie in the file.
    public enum Layout: Sendable {
        /// `rows × features` Float32 values, row-major, from byte `offset`.
        case dense(offset: Int)
        /// CSR: the row starts (in memory, `rows + 1` of them), the Int32 column indices from byte `indices`,
        /// the Float32 values from byte `values`.
        case csr(rowStarts: [Int], indices: Int, values: Int)
    }

    /// A batch's rows as read: dense values (`rows × features`) or CSR.
    public enum Rows {
        case dense([Float])
        case csr(CSRMatrix)
    }

    public let path: String
    public let rows: Int
    public let features: Int
    public let layout: Layout
    private let fd: Int32
    /// Rows `0 ..< residentRows` held in memory (dense layout), read once by `keepResident`: the memory a
    /// `--max-memory` budget leaves over spares those rows' reads. Empty: every row is read from the file.
    private var resident: [Float] = []
    public private(set) var residentRows = 0
    /// Bytes of the step window (`StepWindows`) that `plan` may use for a dense shard: 128 MiB unless
    /// `useMemory` sets it.
    public var windowBytes = 128 << 20
    private var windows: StepWindows?
    /// Whether `plan` chose step windows.
    public var readsWindows: Bool { windows != nil }
    /// Windows read so far.
    public var windowLoads: Int { windows?.loads ?? 0 }

    /// Opens `path` for reading rows laid out as `layout`. Throws `DataError` naming the file. `name`: the
    /// path to name in messages, when `path` is a temporary that is about to be renamed there (the stream
    /// keeps reading the file it opened, whatever is renamed over `name` later).
    public init(path: String, rows: Int, features: Int, layout: Layout, name: String? = nil) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DataError(file: name ?? path, "cannot open the shard cache: \(String(cString: strerror(errno)))") }
        self.path = name ?? path
        self.rows = rows
        self.features = features
        self.layout = layout
    }

    deinit { close(fd) }

    public var isSparse: Bool { if case .csr = layout { return true }; return false }

    /// Reads the first rows of a dense layout into memory, as many as `bytes` hold (at most all of them);
    /// later gathers copy those rows from memory (the same bytes as from the file). Call before the first
    /// gather or prefetch. CSR layouts keep every row in the file. Throws a read error.
    public func keepResident(bytes: Int) throws {
        guard case let .dense(offset) = layout, features > 0 else { return }
        let n = Swift.min(rows, Swift.max(0, bytes) / (4 * features))
        guard n > 0 else { return }
        var values = [Float](repeating: 0, count: n * features)
        let step = Swift.max(1, (16 << 20) / (4 * features))
        try values.withUnsafeMutableBytes { out in
            var r = 0
            while r < n {
                let k = Swift.min(step, n - r)
                try readFully(out.baseAddress! + r * 4 * features, count: k * 4 * features, at: offset + r * 4 * features)
                r += k
            }
        }
        resident = values
        residentRows = n
    }

    /// Spends about `bytes` of memory on the rows (dense layout; call before the first gather): all of them
    /// resident when they fit; else `2·bytes − shard` bytes of the first rows resident (none when that is
    /// negative) and the rest of `bytes` a step window. With a window of W bytes and N bytes of rows not
    /// resident, an epoch reads N²/W bytes; with R = bytes − W resident, N = shard − R, and N²/W is least at
    /// R = 2·bytes − shard. Throws a read error.
    public func useMemory(_ bytes: Int) throws {
        guard case .dense = layout, features > 0 else { return }
        let shard = rows * 4 * features
        if shard <= bytes {
            try keepResident(bytes: shard)
            return
        }
        try keepResident(bytes: Swift.max(0, 2 * bytes - shard))
        windowBytes = Swift.max(0, bytes - residentRows * 4 * features)
    }

    /// Non-zeros of the shard (CSR), or 0.
    public var nonZeros: Int { if case let .csr(starts, _, _) = layout { return starts.last ?? 0 }; return 0 }

    /// Tells the stream which local rows each step `< endStep` will ask for (`rowsOf`, from the sampler), so
    /// `gather(_:step:)` can read whole step windows in one sequential pass when they pay: a dense layout with
    /// rows not held in memory, a window of at least 64 rows, and one pass per window costing no more per row
    /// than a `pread` of its own (k × a row's bytes ≤ 4 KiB, with k windows an epoch; `StepWindows`).
    public func plan(endStep: Int, rowsOf: @escaping @Sendable (Int) -> [Int]) {
        windows = nil
        guard case let .dense(offset) = layout, features > 0, residentRows < rows, rows <= Int(Int32.max) else { return }
        let rowBytes = 4 * features
        let capacity = Swift.min(windowBytes / (rowBytes + 8), rows - residentRows)
        guard capacity >= 64, (rows - residentRows) * rowBytes <= capacity * 4096 else { return }
        windows = StepWindows(stream: self, offset: offset, resident: residentRows, capacityRows: capacity, endStep: endStep, rowsOf: rowsOf)
    }

    /// Step `step`'s rows `local`, in that order: from the step window when planned (and the rows are the
    /// planned ones), else read directly. Throws a read error.
    public func gather(_ local: [Int], step: Int) throws -> Rows {
        if let windows {
            let x = try resident.withUnsafeBufferPointer { try windows.rows(step: step, local: local, residentRows: $0.baseAddress) }
            if let x { return .dense(x) }
        }
        return try read(local)
    }

    /// Calls `body` with step `step`'s rows `local` in place in the step window, as a dense `RowBlock` (no copy),
    /// when the window holds exactly those rows in that order and none is resident; nil otherwise (then
    /// `gather(_:step:)` reads them). Throws a read error of the window.
    public func withWindowRows<R>(_ local: [Int], step: Int, _ body: (RowBlock) -> R) throws -> R? {
        guard let windows else { return nil }
        let f = features
        return try windows.withRows(step: step, local: local) { body(RowBlock(dense: $0, rows: local.count, features: f)) }
    }

    /// Step `step`'s local rows as planned (`plan`'s `rowsOf(step)`), from the step window when it holds them
    /// all (no resident rows), loading it if needed: the caller need not ask the sampler again. nil when there
    /// is no such window. Throws a read error of the window.
    public func plannedRows(step: Int) throws -> [Int]? { try windows?.plannedRows(step: step) }

    /// The rows `local` (indices into this shard), in that order, read directly. Throws `DataError` on a read
    /// error or a short file.
    public func gather(_ local: [Int]) throws -> Rows { try read(local) }

    /// The consecutive rows `range` (indices into this shard).
    public func rows(_ range: Range<Int>) throws -> Rows { try read(Array(range)) }

    /// Reads rows `local` in that order: the rows are visited in sorted order so that runs of consecutive rows
    /// become one `pread` each, and each lands in its place in the batch.
    func read(_ local: [Int]) throws -> Rows {
        let order = local.indices.sorted { local[$0] < local[$1] }
        switch layout {
        case let .dense(offset):
            let rowBytes = features * 4
            var x = [Float](repeating: 0, count: local.count * features)
            try x.withUnsafeMutableBytes { out in
                var i = 0
                while i < order.count {
                    // A run: rows r, r+1, … that are also consecutive batch slots can be read in one go.
                    let row = local[order[i]]
                    if row < residentRows {
                        resident.withUnsafeBytes { (out.baseAddress! + order[i] * rowBytes).copyMemory(from: $0.baseAddress! + row * rowBytes, byteCount: rowBytes) }
                        i += 1
                        continue
                    }
                    var n = 1
                    while i + n < order.count, local[order[i + n]] == row + n, order[i + n] == order[i] + n { n += 1 }
                    try readFully(out.baseAddress! + order[i] * rowBytes, count: n * rowBytes, at: offset + row * rowBytes)
                    i += n
                }
            }
            return .dense(x)
        case let .csr(starts, indicesAt, valuesAt):
            var rowStarts = [Int](repeating: 0, count: local.count + 1)
            for (i, r) in local.enumerated() { rowStarts[i + 1] = rowStarts[i] + starts[r + 1] - starts[r] }
            var indices = [Int32](repeating: 0, count: rowStarts[local.count])
            var values = [Float](repeating: 0, count: rowStarts[local.count])
            try indices.withUnsafeMutableBytes { ix in
                try values.withUnsafeMutableBytes { vx in
                    for i in order {
                        let r = local[i], n = starts[r + 1] - starts[r]
                        guard n > 0 else { continue }
                        try readFully(ix.baseAddress! + rowStarts[i] * 4, count: n * 4, at: indicesAt + starts[r] * 4)
                        try readFully(vx.baseAddress! + rowStarts[i] * 4, count: n * 4, at: valuesAt + starts[r] * 4)
                    }
                }
            }
            return .csr(CSRMatrix(columns: features, rowStarts: rowStarts, indices: indices, values: values))
        }
    }

    /// `pread` of exactly `count` bytes at `offset`, retried on EINTR and short reads.
    public func readFully(_ buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws {
        var done = 0
        while done < count {
            let n = pread(fd, buffer + done, count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw DataError(file: path, "reading the shard cache failed: \(String(cString: strerror(errno)))", kind: .ioError) }
            if n == 0 {
                throw DataError(file: path, "the shard cache ends early (at byte \(offset + done)): it was truncated or damaged while in use", kind: .ioError)
            }
            done += n
        }
    }
}
