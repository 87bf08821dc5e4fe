#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The chunks of a threaded parse: each helper thread's parsed chunks wait here until the calling thread
/// appends them in file order; `window` bounds how far ahead of it the helpers may run (the memory).
private final class ChunkQueue: @unchecked Sendable {
    let condition = NSCondition()
    var slots: [Result<LIBSVMParser.Sparse, Error>?]
    /// The chunk the calling thread handles next: helpers may start chunk c only while c < next + window.
    var next = 0
    var stopped = false
    let window: Int
    init(count: Int, window: Int) { slots = Array(repeating: nil, count: count); self.window = window }

    /// A helper waits for its turn; false when the parse stopped (an error met by the calling thread).
    func mayStart(_ c: Int) -> Bool {
        condition.lock(); defer { condition.unlock() }
        while !stopped && c >= next + window { condition.wait() }
        return !stopped
    }

    func put(_ c: Int, _ r: Result<LIBSVMParser.Sparse, Error>) {
        condition.lock(); slots[c] = r; condition.broadcast(); condition.unlock()
    }

    /// The calling thread takes chunk c once it is parsed, and lets the helpers run one chunk further.
    func take(_ c: Int) -> Result<LIBSVMParser.Sparse, Error> {
        condition.lock(); defer { condition.unlock() }
        while slots[c] == nil { condition.wait() }
        let r = slots[c]!
        slots[c] = nil
        next = c + 1
        condition.broadcast()
        return r
    }

    func advance(to c: Int) { condition.lock(); next = c; condition.broadcast(); condition.unlock() }
    func stop() { condition.lock(); stopped = true; condition.broadcast(); condition.unlock() }
}

/// A joinable POSIX thread running `body` once, with an 8 MiB stack; `start` says whether it could be
/// created (Foundation's `Thread` does not).
private final class HelperThread: @unchecked Sendable {
    let body: @Sendable () -> Void
    private var thread: pthread_t? = nil
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }

    func start() -> Bool {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, 8 << 20)
        let context = Unmanaged.passRetained(self).toOpaque()
        var id = pthread_t()
        let status = pthread_create(&id, &attributes, { context in
            let me = Unmanaged<HelperThread>.fromOpaque(context!).takeRetainedValue()
            me.body()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<HelperThread>.fromOpaque(context).release()
            return false
        }
        thread = id
        return true
    }

    func join() {
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }
}

extension LIBSVMParser {
    /// The rank's lines parsed by `threads` threads: its byte range cut into chunks of about `chunkBytes`,
    /// each owning the lines that start in it (`LineRange`'s rule, the one that cuts the file between ranks),
    /// dealt round-robin: chunk c to thread c mod `threads`, thread 0 being the caller's, which parses its
    /// chunks straight into the result and appends the helpers' parsed chunks in file order.
    ///
    /// Invariants: the same `Sparse` as `parse(lines)` — the same rows, bits, labels, first-seen lines and line
    /// count — since every row is parsed and hashed by itself and the chunks are joined in file order. A bad
    /// line throws the error the one-thread parse throws (the first in file order: every chunk before it was
    /// parsed whole), with the same line and column; the helpers are stopped and joined first.
    ///
    /// Cost: the parse's CPU time spread over the threads (wall time ÷ about `threads` when each has a core of
    /// its own) plus one copy of the helpers' non-zeros (8 bytes each) by the caller. Memory: the result's
    /// arrays, reserved at the whole range's estimate, and at most `2 × threads` parsed chunks waiting (a
    /// window, so helpers do not run ahead of the join).
    func parse(_ lines: LineRange, threads: Int, estimatedRows: Int = 0, estimatedNonZeros: Int = 0,
               chunkBytes: Int = 8 << 20) throws -> Sparse {
        let range = lines.range
        let chunk = Swift.max(1, chunkBytes)
        let count = (range.count + chunk - 1) / chunk
        let n = Swift.max(1, Swift.min(threads, count))
        if n == 1 || lines.quoteParity != nil {
            return try parse(lines, estimatedRows: estimatedRows, estimatedNonZeros: estimatedNonZeros)
        }
        let (lo, hi) = (range.lowerBound, range.upperBound)
        @Sendable func piece(_ c: Int) -> Range<Int> { (lo + c * chunk) ..< Swift.min(hi, lo + (c + 1) * chunk) }
        var s = Sparse()
        s.indices.reserveCapacity(estimatedNonZeros)
        s.values.reserveCapacity(estimatedNonZeros)
        s.rowEnds.reserveCapacity(estimatedRows)
        s.shard.labels.reserveCapacity(estimatedRows)
        let queue = ChunkQueue(count: count, window: 2 * n)
        let parser = self
        nonisolated(unsafe) let file = lines.file
        let rows = estimatedRows / count + 16, pairs = estimatedNonZeros / count + 64
        var helpers: [HelperThread] = []
        for t in 1..<n {
            let helper = HelperThread {
                for c in stride(from: t, to: count, by: n) {
                    guard queue.mayStart(c) else { return }
                    let r = Result { try parser.parse(LineRange(file: file, range: piece(c)), estimatedRows: rows, estimatedNonZeros: pairs) }
                    queue.put(c, r)
                    if case .failure = r { return }   // the chunks after it are never joined
                }
            }
            guard helper.start() else {
                // No thread to be had (a `ulimit -v` or a thread limit): the one-thread parse, nothing lost.
                queue.stop()
                helpers.forEach { $0.join() }
                return try parse(lines, estimatedRows: estimatedRows, estimatedNonZeros: estimatedNonZeros)
            }
            helpers.append(helper)
        }
        do {
            for c in 0..<count {
                if c % n == 0 {
                    queue.advance(to: c)
                    try parse(LineRange(file: file, range: piece(c)), into: &s)
                } else {
                    switch queue.take(c) {
                    case .success(let part): s.append(part)
                    case .failure(let e as LocalLineError):
                        throw LocalLineError(localLine: s.shard.lines + e.localLine, column: e.column, message: e.message)
                    case .failure(let e): throw e
                    }
                }
            }
        } catch {
            queue.stop()
            helpers.forEach { $0.join() }
            throw error
        }
        helpers.forEach { $0.join() }
        return s
    }
}

extension LIBSVMParser.Sparse {
    /// Appends `next`, the rows of the lines that follow this part's in the file: its line indices are
    /// shifted by this part's line count. LIBSVM labels are numbers (no text labels, no categories).
    mutating func append(_ next: LIBSVMParser.Sparse) {
        let lineBase = shard.lines, nonZeroBase = indices.count
        indices.append(contentsOf: next.indices)
        values.append(contentsOf: next.values)
        rowEnds.reserveCapacity(rowEnds.count + next.rowEnds.count)
        for end in next.rowEnds { rowEnds.append(nonZeroBase + end) }
        maxIndex = Swift.max(maxIndex, next.maxIndex)
        shard.labels.append(contentsOf: next.shard.labels)
        for (label, line) in next.shard.labelFirstSeen where shard.labelFirstSeen[label] == nil {
            shard.labelFirstSeen[label] = lineBase + line
        }
        if !next.shard.smallLabelsSeen.isEmpty {
            if shard.smallLabelsSeen.isEmpty { shard.smallLabelsSeen = [Int](repeating: -1, count: next.shard.smallLabelsSeen.count) }
            for (i, line) in next.shard.smallLabelsSeen.enumerated() where line >= 0 && shard.smallLabelsSeen[i] < 0 {
                shard.smallLabelsSeen[i] = lineBase + line
            }
        }
        shard.lines += next.shard.lines
    }
}
