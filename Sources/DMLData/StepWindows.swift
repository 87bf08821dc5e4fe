import Foundation

/// The rows of upcoming steps read by a sliding scan over a streamed shard's file, instead of one `pread` per
/// row: the file is cut into 1 MiB blocks, and block `b` is read once every `period` steps, at steps
/// `base + b·period/blocks (mod period)`, so the reads are spread evenly over the steps (about one block every
/// `period/blocks` steps). A read of block `b` at step `t` keeps the rows of the block that steps
/// `t ..< t + period` will use: consecutive reads of a block cover consecutive step ranges, so every row is
/// read before the step that uses it, exactly once per use. A row's step comes from its position in the epoch's
/// order (`BatchSampler.position(ofRow:epoch:)`, the inverse permutation), kept for every row of the shard and
/// updated block by block as the scan crosses an epoch. A step then takes its rows (batch order: by position)
/// from the slots the reads filled, and its slots are freed for later reads.
///
/// Why it slides: a row waits in memory from its block's read until its step, on average half a period, so
/// slots for `capacity` rows carry a period of about `2·capacity` rows' steps: one pass over the file per
/// `2·capacity` rows used, half the passes of windows that are loaded whole and then drained. The period keeps a
/// margin (`period(capacity:rows:features:sampler:blockBytes:)`), so the slots are not exhausted by chance; a row that
/// finds none is read with its own `pread` at its step (the same bytes).
///
/// Cost: per `period` steps one pass over the file (sequential 1 MiB `pread`s) and one look at each row's
/// position; per epoch one inverse permutation per row; per step one copy of its rows out of their slots and
/// O(batch size) bookkeeping. No sampler call per step: the window knows each step's rows. Reads happen on the
/// caller's thread, at the same steps on every rank: no thread competes with the ranks for the cores, and none
/// has to be created (under a `ulimit -v` one may not be, and libdispatch then waits for good).
///
/// Layout: a slot is its row's values and, beside them, the row's index and its index in its step's batch, so a
/// step touches each of its slots once (no list to chase through memory); each step of the period has a bucket
/// of `bucketSize` slot numbers (a row beyond it is read on its own, like one without a slot).
///
/// Memory (`slotBytes`): `capacity` × (row bytes + 12), `period` × (4·`bucketSize` + 4), 4 bytes a shard row
/// (the positions) and one block (1 MiB), allocated at the first step.
final class StepWindows {
    unowned let stream: ShardStream
    let sampler: BatchSampler
    /// The global index of local row 0.
    let firstRow: Int
    let endStep: Int
    let capacity: Int
    /// Steps between two reads of a block (≤ an epoch's steps).
    let period: Int
    /// The file offset of row 0.
    let offset: Int
    let blockRows: Int
    let blocks: Int
    /// The longest period (at most an epoch) whose rows `capacity` slots hold: a step uses `u` of the shard's
    /// `rows` on average, and just after a read the slots hold about `u·(period + 1)/2` rows (each waits from its
    /// block's read to its step, half a period on average; `(1 + 1/blocks)` of that when the reads are spread
    /// over fewer blocks than steps), which is kept below `capacity − 4·√capacity` (the rows a step uses vary
    /// with the shuffle; a row that finds no slot is read on its own anyway). 0: not even one step.
    static func period(capacity: Int, rows: Int, features: Int, sampler: BatchSampler, blockBytes: Int) -> Int {
        let u = Swift.max(Double(rows) * Double(sampler.batchSize) / Double(sampler.rows), 1e-9)
        let blocks = (Double(rows) / Double(Swift.max(1, blockBytes / (4 * Swift.max(1, features))))).rounded(.up)
        let held = Double(capacity) - 4 * Double(capacity).squareRoot()
        let period = Int(2 * held / u / (1 + 1 / Swift.max(1, blocks))) - 1
        return Swift.max(0, Swift.min(sampler.stepsPerEpoch, period))
    }

    /// Each local row's position in the order of the epoch that `blockEpoch` gives for its block.
    private var position: [UInt32] = []
    private var blockEpoch: [Int] = []
    /// The slots, `slotStride` bytes each: the local row (Int32), its index in its step's batch (Int32), then
    /// its values.
    private var slots: UnsafeMutableRawPointer?
    private var slotStride: Int { 8 + 4 * stream.features }
    private var free: [Int32] = []
    /// Step `s`'s slots: `bucket[(s % period)·bucketSize ..< +count[s % period]]`.
    let bucketSize: Int
    private var bucket: [Int32] = []
    private var count: [Int32] = []
    /// Rows that found no free slot (or no room in their bucket): read at their step. Keyed by step.
    private var missed: [Int: [(key: Int32, row: Int32)]] = [:]
    /// Batch index → slot (≥ 0) or `-2 - row` (a missed row), -1 empty: orders a step's rows.
    private var scratch: [Int32] = []
    private var block: [UInt8] = []
    /// A block's wanted rows, as (local row, step, index in the batch) (reused).
    private var pending: [(row: Int32, step: Int, key: Int32)] = []
    /// Steps before `next` have had their reads; `base` is the step the schedule started at.
    private var base = 0
    private var next = -1
    /// The step whose rows are taken out (its slots are freed when the next step is prepared).
    private var current = -1
    private var currentRows: [Int] = []
    private var currentSlots: [Int32] = []
    /// Blocks read so far, and the times the scan restarted (a step out of sequence: the first, a resume).
    private(set) var blockReads = 0
    private(set) var restarts = 0
    /// Rows that found no free slot (read on their own at their step).
    private(set) var misses = 0
    /// Set by a read error: the window gives nothing more (the caller's direct reads take over, and report).
    private var broken = false

    /// Bytes a slot takes, with its share of the buckets (a period is about `2·capacity / u` steps, u rows a step).
    static func slotBytes(features: Int, rows: Int, sampler: BatchSampler) -> Double {
        let u = Swift.max(Double(rows) * Double(sampler.batchSize) / Double(sampler.rows), 1e-9)
        return Double(4 * features + 12) + 2 / u * Double(4 * bucketSize(rows: rows, sampler: sampler) + 4)
    }

    /// Room for a step's rows: the mean `u` and 4 standard deviations (the rows a step takes from this shard vary
    /// with the shuffle), at most the batch.
    static func bucketSize(rows: Int, sampler: BatchSampler) -> Int {
        let u = Double(rows) * Double(sampler.batchSize) / Double(sampler.rows)
        return Swift.min(sampler.batchSize, Int(u + 4 * u.squareRoot()) + 8)
    }

    deinit { slots?.deallocate() }

    init(stream: ShardStream, offset: Int, sampler: BatchSampler, firstRow: Int, capacity: Int, period: Int, endStep: Int, blockBytes: Int) {
        precondition(stream.rows <= Int(Int32.max) - 2 && sampler.rows <= Int(UInt32.max) && capacity > 0 && period > 0
                     && period <= sampler.stepsPerEpoch)
        self.stream = stream
        self.offset = offset
        self.sampler = sampler
        self.firstRow = firstRow
        self.capacity = capacity
        self.period = period
        self.endStep = endStep
        blockRows = Swift.max(1, blockBytes / (4 * Swift.max(1, stream.features)))
        blocks = (stream.rows + blockRows - 1) / blockRows
        bucketSize = Self.bucketSize(rows: stream.rows, sampler: sampler)
    }

    /// Step `step`'s local rows in batch order, reading the blocks scheduled up to it. nil past the planned
    /// steps or after a read error. Throws a read error (once; the window then gives nothing more).
    func plannedRows(step: Int) throws -> [Int]? {
        guard try prepare(step) else { return nil }
        return currentRows
    }

    /// Step `step`'s rows if they are `local` (nil: the caller asked for other rows than planned, or the window
    /// has none; it reads them itself), copied out of their slots in that order. Throws a read error.
    func rows(step: Int, local: [Int]) throws -> [Float]? {
        guard try prepare(step), local == currentRows else { return nil }
        let f = stream.features, rowBytes = 4 * f
        var out = [Float](repeating: 0, count: local.count * f)
        let (slots, stride) = (slots!, slotStride)
        try out.withUnsafeMutableBytes { o in
            for (i, s) in currentSlots.enumerated() {
                if s >= 0 {
                    (o.baseAddress! + i * rowBytes).copyMemory(from: slots + Int(s) * stride + 8, byteCount: rowBytes)
                } else {
                    try stream.readFully(o.baseAddress! + i * rowBytes, count: rowBytes, at: offset + Int(-2 - s) * rowBytes)
                }
            }
        }
        return out
    }

    /// Makes `step` the current step: frees the previous step's slots, reads the blocks scheduled at `step`
    /// (restarting the scan there when it is not the next step), and takes its rows out of their list.
    private func prepare(_ step: Int) throws -> Bool {
        guard !broken, step < endStep, step >= 0 else { return false }
        if step == current { return true }
        do {
            for s in currentSlots where s >= 0 { free.append(s) }
            currentSlots.removeAll(keepingCapacity: true)
            currentRows.removeAll(keepingCapacity: true)
            current = -1
            if step != next { try restart(at: step) }
            let p = (step - base) % period
            for b in firstBlock(ofPhase: p) ..< firstBlock(ofPhase: p + 1) { try read(block: b, from: step, to: step + period) }
            next = step + 1
        } catch {
            broken = true
            throw error
        }
        // The step's rows, ordered by their index in the batch.
        let h = step % period
        var lo = Int32.max, hi = Int32(-1)
        let (slots, stride, size) = (slots!, slotStride, bucketSize)
        let n = Int(count[h])
        scratch.withUnsafeMutableBufferPointer { scratch in
            bucket.withUnsafeBufferPointer { bucket in
                for i in h * size ..< h * size + n {
                    let s = bucket[i]
                    let k = slots.load(fromByteOffset: Int(s) * stride + 4, as: Int32.self)
                    scratch[Int(k)] = s
                    lo = Swift.min(lo, k); hi = Swift.max(hi, k)
                }
            }
        }
        count[h] = 0
        if let m = missed.removeValue(forKey: step) {
            for (k, r) in m {
                scratch[Int(k)] = -2 - r
                lo = Swift.min(lo, k); hi = Swift.max(hi, k)
            }
        }
        if hi >= 0 {
            for k in Int(lo)...Int(hi) where scratch[k] != -1 {
                let s = scratch[k]
                currentSlots.append(s)
                currentRows.append(s >= 0 ? Int(slots.load(fromByteOffset: Int(s) * stride, as: Int32.self)) : Int(-2 - s))
                scratch[k] = -1
            }
        }
        current = step
        return true
    }

    /// Block `b` is read at the steps `≡ base + phase(b)` (mod `period`), phase(b) = ⌊b·period/blocks⌋: the
    /// blocks of phase `p` are `firstBlock(p) ..< firstBlock(p + 1)`.
    private func firstBlock(ofPhase p: Int) -> Int { (p * blocks + period - 1) / period }

    /// Starts the scan at `step`: every slot free, each row's position in `step`'s epoch, and each block read
    /// for the steps from `step` up to its first scheduled read.
    private func restart(at step: Int) throws {
        restarts += 1
        let f = stream.features
        if slots == nil {
            slots = UnsafeMutableRawPointer.allocate(byteCount: capacity * slotStride, alignment: 16)
            position = [UInt32](repeating: 0, count: stream.rows)
            blockEpoch = [Int](repeating: -1, count: blocks)
            bucket = [Int32](repeating: 0, count: period * bucketSize)
            count = [Int32](repeating: 0, count: period)
            scratch = [Int32](repeating: -1, count: sampler.batchSize)
            block = [UInt8](repeating: 0, count: blockRows * 4 * f)
        }
        free = (0..<Int32(capacity)).reversed()
        for h in count.indices { count[h] = 0 }
        missed = [:]
        base = step
        next = step
        for b in 0..<blocks {
            let phase = b * period / blocks
            if phase > 0 { try read(block: b, from: step, to: step + phase) }
        }
    }

    /// Reads block `b` for the steps `from ..< to` (at most `period` of them): each of its rows that one of
    /// those steps uses goes to a free slot on that step's list. Afterwards the block's positions are those of
    /// `to`'s epoch (the epoch of its next read). The file is read only when a row is wanted.
    private func read(block b: Int, from: Int, to: Int) throws {
        let steps = sampler.stepsPerEpoch, batch = sampler.batchSize
        let epoch = from / steps, nextEpoch = to / steps
        let lo = b * blockRows, n = Swift.min(blockRows, stream.rows - lo)
        if blockEpoch[b] != epoch {
            let (sampler, first) = (sampler, firstRow)
            position.withUnsafeMutableBufferPointer { pos in
                for r in lo ..< lo + n { pos[r] = UInt32(sampler.position(ofRow: first + r, epoch: epoch)) }
            }
            blockEpoch[b] = epoch
        }
        let end = Swift.min(to, endStep)
        guard from < end || nextEpoch != epoch else { return }
        // The rows wanted, as (local row, step, index in the batch).
        pending.removeAll(keepingCapacity: true)
        let (sampler, first) = (sampler, firstRow)
        position.withUnsafeMutableBufferPointer { pos in
            for r in lo ..< lo + n {
                let p = Int(pos[r])
                let s = epoch * steps + p / batch
                if s >= from && s < end { pending.append((Int32(r), s, Int32(p % batch))) }
                if nextEpoch != epoch {
                    let q = sampler.position(ofRow: first + r, epoch: nextEpoch)
                    let t = nextEpoch * steps + q / batch
                    if t < end { pending.append((Int32(r), t, Int32(q % batch))) }
                    pos[r] = UInt32(q)
                }
            }
        }
        blockEpoch[b] = nextEpoch
        guard !pending.isEmpty else { return }
        let rowBytes = 4 * stream.features
        try block.withUnsafeMutableBytes { try stream.readFully($0.baseAddress!, count: n * rowBytes, at: offset + lo * rowBytes) }
        blockReads += 1
        let (period, slots, stride, size) = (period, slots!, slotStride, bucketSize)
        var missedRows: [(row: Int32, step: Int, key: Int32)] = []
        block.withUnsafeBytes { input in
            bucket.withUnsafeMutableBufferPointer { bucket in
                count.withUnsafeMutableBufferPointer { count in
                    for (r, s, k) in pending {
                        let h = s % period
                        guard count[h] < size, let slot = free.popLast() else { missedRows.append((r, s, k)); continue }
                        let at = slots + Int(slot) * stride
                        at.storeBytes(of: r, as: Int32.self)
                        at.storeBytes(of: k, toByteOffset: 4, as: Int32.self)
                        (at + 8).copyMemory(from: input.baseAddress! + (Int(r) - lo) * rowBytes, byteCount: rowBytes)
                        bucket[h * size + Int(count[h])] = slot
                        count[h] += 1
                    }
                }
            }
        }
        for (r, s, k) in missedRows { missed[s, default: []].append((k, r)) }
        misses += missedRows.count
    }
}
