import Foundation

/// The rows of many upcoming steps read in one sequential pass over a streamed shard's file, instead of one
/// `pread` per row: a window of steps (as many as `capacityRows` rows hold) is planned from the sampler
/// (`rowsOf(step)`: that step's local rows, in batch order), its rows are bucketed by 1 MiB block of the file
/// (a counting sort, O(rows)), and each block holding a needed row is read once and its rows copied to
/// their slots, so each step's rows lie contiguous and in batch order in the window's buffer. The next
/// window is read on a background thread while the current one is used.
///
/// Worth it when a window needs a good share of the file's blocks: `ShardStream.plan` uses it only when a
/// window holds at least half the shard's rows (then a pass reads at most twice the bytes it uses, in 1 MiB
/// reads; at 1/8 it was slower than one `pread` a row on a page-cached file). Memory: two windows of `capacityRows` rows
/// (values, plus 16 bytes a row of bookkeeping). The bytes a step gets are the file's bytes for its rows,
/// in its order: the same as a direct read.
final class StepWindows: @unchecked Sendable {
    struct Window {
        let first: Int
        /// Steps `first ..< first + starts.count - 1`; step `first + i` has rows `starts[i] ..< starts[i + 1]`.
        let starts: [Int]
        let rows: [Int]
        let x: [Float]
        var end: Int { first + starts.count - 1 }
    }

    unowned let stream: ShardStream
    let rowsOf: @Sendable (Int) -> [Int]
    let endStep: Int
    let capacityRows: Int
    let offset: Int
    private var current: Window?
    private var next: (first: Int, done: DispatchSemaphore, box: ResultBox)?
    private let queue = DispatchQueue(label: "dml.shard-stream.windows")

    final class ResultBox: @unchecked Sendable { var result: Result<Window, Error>? }

    init(stream: ShardStream, offset: Int, capacityRows: Int, endStep: Int, rowsOf: @escaping @Sendable (Int) -> [Int]) {
        self.stream = stream
        self.offset = offset
        self.capacityRows = capacityRows
        self.endStep = endStep
        self.rowsOf = rowsOf
    }

    deinit { next?.done.wait() }

    /// Step `step`'s rows if they are `local` (nil: the caller asked for other rows; it reads them itself).
    func rows(step: Int, local: [Int]) throws -> [Float]? {
        guard step < endStep else { return nil }
        if current.map({ !(($0.first..<$0.end).contains(step)) }) ?? true {
            if let n = next, n.first == step {
                n.done.wait()
                next = nil
                current = try n.box.result!.get()
            } else {
                if let n = next { n.done.wait(); next = nil }
                current = try load(from: step)
            }
        }
        guard let w = current else { return nil }
        let i = step - w.first
        let lo = w.starts[i], hi = w.starts[i + 1]
        guard w.rows[lo..<hi].elementsEqual(local) else { return nil }
        if next == nil && w.end < endStep {
            let done = DispatchSemaphore(value: 0)
            let box = ResultBox()
            let from = w.end
            next = (from, done, box)
            queue.async { [self] in
                box.result = Result { try load(from: from) }
                done.signal()
            }
        }
        let f = stream.features
        return Array(w.x[(lo * f)..<(hi * f)])
    }

    /// Plans the window starting at `first` and reads its rows.
    func load(from first: Int) throws -> Window {
        var starts = [0]
        var rows: [Int] = []
        var t = first
        while t < endStep {
            let r = rowsOf(t)
            if !rows.isEmpty && rows.count + r.count > capacityRows { break }
            rows += r
            starts.append(rows.count)
            t += 1
        }
        let f = stream.features, rowBytes = 4 * f
        let blockRows = Swift.max(1, (1 << 20) / rowBytes)
        let blocks = (stream.rows + blockRows - 1) / blockRows
        // Counting sort of the slots by block.
        var bucketStart = [Int](repeating: 0, count: blocks + 1)
        for r in rows { bucketStart[r / blockRows + 1] += 1 }
        for b in 0..<blocks { bucketStart[b + 1] += bucketStart[b] }
        var fill = bucketStart
        var slots = [Int](repeating: 0, count: rows.count)
        for (slot, r) in rows.enumerated() { slots[fill[r / blockRows]] = slot; fill[r / blockRows] += 1 }
        var x = [Float](repeating: 0, count: rows.count * f)
        var block = [UInt8](repeating: 0, count: blockRows * rowBytes)
        try x.withUnsafeMutableBytes { out in
            try block.withUnsafeMutableBytes { buffer in
                for b in 0..<blocks where bucketStart[b + 1] > bucketStart[b] {
                    let lo = b * blockRows, n = Swift.min(blockRows, stream.rows - lo)
                    try stream.readFully(buffer.baseAddress!, count: n * rowBytes, at: offset + lo * rowBytes)
                    for k in bucketStart[b]..<bucketStart[b + 1] {
                        let slot = slots[k]
                        (out.baseAddress! + slot * rowBytes).copyMemory(from: buffer.baseAddress! + (rows[slot] - lo) * rowBytes, byteCount: rowBytes)
                    }
                }
            }
        }
        return Window(first: first, starts: starts, rows: rows, x: x)
    }
}
