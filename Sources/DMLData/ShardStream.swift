#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLKernels

/// A shard's feature rows read from its binary cache file (`ShardCache`, written by the job) instead of
/// held in memory: `--max-memory` / `--cache-dir`. The labels stay in memory in the `Dataset` (4 bytes a
/// row); the features are read with `pread` for each batch, in the batch's order, so a step sees exactly the
/// bytes the in-memory shard would have given it (the cache stores the parsed Float32 values, or the CSR
/// arrays, bit for bit).
///
/// Read-ahead: `prefetch(rows:)` starts reading the next batch's rows on a background thread into a second
/// buffer while the current step computes; `gather` of the same rows then waits for it and takes its buffer.
/// A gather of other rows (the prefetch guessed wrong) discards it and reads directly, so the result never
/// depends on what was prefetched.
///
/// Memory: the CSR row starts (8 bytes a row), at most two batches of rows, and the resident rows
/// (`keepResident`). Cost per batch: one `pread`
/// per run of consecutive rows (a shuffled batch is mostly single rows), served by the page cache when the
/// file fits there, else by the disk.
/// Invariant: the file is not changed while the stream is open (the cache is replaced by `rename`, which
/// leaves this descriptor on the old file).
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
    /// Bytes of each of the two step windows (`StepWindows`) that `plan` may use for a dense shard.
    public var windowBytes = 64 << 20
    /// The sampler's rows of each step (`plan`), and the windows read from it when they pay.
    private var rowsOf: (@Sendable (Int) -> [Int])?
    private var endStep = 0
    private var windows: StepWindows?
    /// Whether `plan` chose step windows (dense rows, none resident, a window holding at least half the rows:
    /// a pass then reads at most twice the bytes it uses; at 1/8 a window pass was slower than one `pread` a
    /// row on a page-cached file, benchmarks/RESULTS.md).
    public var readsWindows: Bool { windows != nil }
    /// The background read of the next batch, if any (guarded by `lock`).
    private var pending: (rows: [Int], done: DispatchSemaphore, result: Result<Rows, Error>?)?
    private let lock = NSLock()
    private let queue = DispatchQueue(label: "dml.shard-stream.read-ahead")

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

    deinit {
        if let p = pending { p.done.wait() }
        close(fd)
    }

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

    /// Non-zeros of the shard (CSR), or 0.
    public var nonZeros: Int { if case let .csr(starts, _, _) = layout { return starts.last ?? 0 }; return 0 }

    /// Tells the stream which local rows each step `< endStep` will ask for (`rowsOf`, from the sampler), so
    /// `gather(_:step:)` can read ahead: whole step windows in one sequential pass when they pay
    /// (`StepWindows`), else the next step's rows in the background.
    public func plan(endStep: Int, rowsOf: @escaping @Sendable (Int) -> [Int]) {
        self.rowsOf = rowsOf
        self.endStep = endStep
        guard case let .dense(offset) = layout, features > 0, residentRows < rows else { return }
        let capacity = windowBytes / (4 * features + 16)
        if capacity * 2 >= rows && residentRows == 0 {
            windows = StepWindows(stream: self, offset: offset, capacityRows: capacity, endStep: endStep, rowsOf: rowsOf)
        }
    }

    /// Step `step`'s rows `local`, in that order: from the step windows when planned, else read (taking a
    /// prefetch of exactly these rows) and the next step's rows prefetched. Throws a read error.
    public func gather(_ local: [Int], step: Int) throws -> Rows {
        if let windows, let x = try windows.rows(step: step, local: local) { return .dense(x) }
        let got = try gather(local)
        if let rowsOf, step + 1 < endStep { prefetch(rowsOf(step + 1)) }
        return got
    }

    /// The rows `local` (indices into this shard), in that order. Takes the prefetched buffer when it holds
    /// exactly these rows. Throws `DataError` on a read error or a short file.
    public func gather(_ local: [Int]) throws -> Rows {
        lock.lock()
        let p = pending
        pending = nil
        lock.unlock()
        if let p {
            p.done.wait()
            if p.rows == local, let r = p.result { return try r.get() }
        }
        return try read(local)
    }

    /// Starts reading `local` on the background thread (the next step's rows). A previous prefetch still
    /// running is waited for and dropped.
    public func prefetch(_ local: [Int]) {
        lock.lock()
        let old = pending
        pending = nil
        lock.unlock()
        old?.done.wait()
        let done = DispatchSemaphore(value: 0)
        lock.lock()
        pending = (local, done, nil)
        lock.unlock()
        queue.async { [self] in
            let result = Result { try read(local) }
            lock.lock()
            pending?.result = result
            lock.unlock()
            done.signal()
        }
    }

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
            if n < 0 { throw DataError(file: path, "read failed: \(String(cString: strerror(errno)))") }
            if n == 0 { throw DataError(file: path, "the shard cache ends early (at byte \(offset + done)): it was truncated while in use") }
            done += n
        }
    }
}
