import Foundation

/// The rows of many upcoming steps read in one sequential pass over a streamed shard's file, instead of one
/// `pread` per row: a window of steps (as many as `capacityRows` rows not held in memory fit) is planned from
/// the sampler (`rowsOf(step)`: that step's local rows, in batch order), its rows are bucketed by 1 MiB block
/// of the file (a counting sort, O(rows)), and each block holding a needed row is read once and its rows
/// copied to their slots. A step then takes its rows from the window (and the resident ones from memory), in
/// its order: the same bytes as a direct read.
///
/// Cost: per window, one pass over the blocks of the rows not held in memory (sequential 1 MiB `pread`s:
/// 11 GB/s of copying from the page cache here) and O(rows) bookkeeping; per step, one copy of its rows.
/// With a window of 1/k of those rows an epoch reads them k times, so a row costs k × its size of copying,
/// against ~0.45 µs of system time for a `pread` of its own (benchmarks/RESULTS.md): `ShardStream.plan` uses
/// windows when k × a row's bytes ≤ 4 KiB. A step's rows lie consecutively in the window, in batch order, and
/// are used in place (`withRows(step:local:_:)`) when no row is resident. Loads are synchronous, on the caller's thread: every rank loads
/// at the same steps, no thread competes with the ranks for cores, and no thread has to be created (under a
/// `ulimit -v` one may not be, and libdispatch then waits for good).
///
/// Memory: `capacityRows` × (row bytes + 8), allocated once and reused by every window, and one 1 MiB block.
final class StepWindows {
    unowned let stream: ShardStream
    let rowsOf: @Sendable (Int) -> [Int]
    let endStep: Int
    let capacityRows: Int
    /// The file offset of row 0.
    let offset: Int
    /// Rows below this are held in memory (`ShardStream.keepResident`) and never in a window.
    let resident: Int
    /// Steps `first ..< end` are in the window; step `first + i` has slots `starts[i] ..< starts[i + 1]`.
    private var first = 0
    private var end = 0
    private var starts: [Int] = []
    /// The file row of each slot, and the slots' values (`capacityRows × features`).
    private var rows: [Int32] = []
    private var x: [Float] = []
    private var slots: [Int32] = []
    private var block: [UInt8] = []
    /// Windows loaded so far (tests and figures).
    private(set) var loads = 0

    init(stream: ShardStream, offset: Int, resident: Int, capacityRows: Int, endStep: Int, rowsOf: @escaping @Sendable (Int) -> [Int]) {
        precondition(stream.rows <= Int(Int32.max) && capacityRows > 0)
        self.stream = stream
        self.offset = offset
        self.resident = resident
        self.capacityRows = capacityRows
        self.endStep = endStep
        self.rowsOf = rowsOf
    }

    /// Whether step `step` is in the window, loading the window that starts at `step` when the current one
    /// does not hold it (false: past the planned steps, or one step holds more rows than a window). Throws a
    /// read error.
    private func hold(_ step: Int) throws -> Bool {
        guard step < endStep else { return false }
        if !(first..<end).contains(step) { try load(from: step) }
        return (first..<end).contains(step)
    }

    /// Step `step`'s local rows in batch order, as planned (`rowsOf(step)`), when none is resident: the rows
    /// the sampler would give, without computing them again. nil otherwise. Throws a read error.
    func plannedRows(step: Int) throws -> [Int]? {
        guard resident == 0, try hold(step) else { return nil }
        return rows[starts[step - first]..<starts[step - first + 1]].map(Int.init)
    }

    /// Step `step`'s rows if they are `local` (nil: the caller asked for other rows than planned, or one step
    /// holds more rows than a window; it reads them itself). `residentRows` points at the rows held in memory.
    /// Throws a read error.
    func rows(step: Int, local: [Int], residentRows: UnsafePointer<Float>?) throws -> [Float]? {
        guard try hold(step) else { return nil }
        let f = stream.features
        var j = starts[step - first]
        let hi = starts[step - first + 1]
        var out = [Float](repeating: 0, count: local.count * f)
        let matched = out.withUnsafeMutableBufferPointer { o in
            x.withUnsafeBufferPointer { w in
                rows.withUnsafeBufferPointer { planned in
                    for (i, r) in local.enumerated() {
                        if r < resident {
                            (o.baseAddress! + i * f).update(from: residentRows! + r * f, count: f)
                        } else {
                            guard j < hi, Int(planned[j]) == r else { return false }
                            (o.baseAddress! + i * f).update(from: w.baseAddress! + j * f, count: f)
                            j += 1
                        }
                    }
                    return j == hi
                }
            }
        }
        return matched ? out : nil
    }

    /// Calls `body` with step `step`'s rows in place in the window (`local.count` rows, batch order: the window
    /// holds a step's rows consecutively) when they are `local` and none is resident; nil otherwise (the caller
    /// copies them out with `rows`). Throws a read error.
    func withRows<R>(step: Int, local: [Int], _ body: (UnsafePointer<Float>) -> R) throws -> R? {
        guard resident == 0, try hold(step) else { return nil }
        let lo = starts[step - first], hi = starts[step - first + 1]
        guard hi - lo == local.count else { return nil }
        let same = rows.withUnsafeBufferPointer { planned in
            local.withUnsafeBufferPointer { l in (0..<l.count).allSatisfy { Int(planned[lo + $0]) == l[$0] } }
        }
        guard same else { return nil }
        return x.withUnsafeBufferPointer { body($0.baseAddress! + lo * stream.features) }
    }

    /// Plans the window starting at step `from` and reads its rows.
    private func load(from: Int) throws {
        let f = stream.features, rowBytes = 4 * f
        if x.isEmpty {
            rows = [Int32](repeating: 0, count: capacityRows)
            slots = [Int32](repeating: 0, count: capacityRows)
            x = [Float](repeating: 0, count: capacityRows * f)
        }
        var count = 0
        starts = [0]
        var t = from
        while t < endStep && t - from < 1 << 20 {
            let r = rowsOf(t)
            var n = 0
            for v in r where v >= resident { n += 1 }
            if count + n > capacityRows { break }
            for v in r where v >= resident {
                rows[count] = Int32(v)
                count += 1
            }
            starts.append(count)
            t += 1
        }
        // The window holds steps from ..< t only once its rows are read (a read error leaves none).
        (first, end) = (0, 0)
        loads += 1
        guard count > 0 else {
            (first, end) = (from, t)   // steps whose rows are all in memory (or none: one step larger than a window)
            return
        }
        // Counting sort of the slots by block of the non-resident rows.
        let blockRows = Swift.max(1, (1 << 20) / rowBytes)
        let blocks = (stream.rows - resident + blockRows - 1) / blockRows
        var bucketStart = [Int](repeating: 0, count: blocks + 1)
        for k in 0..<count { bucketStart[(Int(rows[k]) - resident) / blockRows + 1] += 1 }
        for b in 0..<blocks { bucketStart[b + 1] += bucketStart[b] }
        var fill = bucketStart
        for k in 0..<count {
            let b = (Int(rows[k]) - resident) / blockRows
            slots[fill[b]] = Int32(k)
            fill[b] += 1
        }
        if block.isEmpty { block = [UInt8](repeating: 0, count: blockRows * rowBytes) }
        try x.withUnsafeMutableBytes { out in
            try block.withUnsafeMutableBytes { buffer in
                for b in 0..<blocks where bucketStart[b + 1] > bucketStart[b] {
                    let lo = resident + b * blockRows, n = Swift.min(blockRows, stream.rows - lo)
                    try stream.readFully(buffer.baseAddress!, count: n * rowBytes, at: offset + lo * rowBytes)
                    for s in bucketStart[b]..<bucketStart[b + 1] {
                        let k = Int(slots[s])
                        (out.baseAddress! + k * rowBytes).copyMemory(from: buffer.baseAddress! + (Int(rows[k]) - lo) * rowBytes, byteCount: rowBytes)
                    }
                }
            }
        }
        (first, end) = (from, t)
    }
}
