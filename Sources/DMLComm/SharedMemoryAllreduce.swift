import Foundation

/// Shared-memory allreduce for ranks on one node: no messages, one pass over memory.
///
/// ```
///  each rank's window part (blockBytes), visible to every rank of the node:
///     W0 [ c0 | c1 | c2 ]   W1 [ c0 | c1 | c2 ]   W2 [ c0 | c1 | c2 ]      block cut into p slices
///
///  per block of the buffer:
///   1. copy in:  rank r copies its block into W_r, all slices but its own          ── sync
///   2. reduce:   rank r computes slice r = B_0 ⊕ B_1 ⊕ … ⊕ B_(p−1) in rank order, reading
///                every peer's W_q directly (its own part from its buffer), and writes it
///                to its buffer and to W_r's slice r                               ── sync
///   3. copy out: rank r copies every other slice q from W_q into its buffer
/// ```
/// Each element is reduced once, by its slice's owner, in rank order, then copied: every rank ends with
/// the same bits. Two syncs per block; they also keep the next block's copy-in from overwriting a
/// slice that a peer is still reading. The window is small (`blockBytes` per rank, default 1 MiB), so
/// peers read each other's blocks from cache and each rank streams its buffer from DRAM about twice
/// (read n, write n) — a memcpy's worth of traffic, against the ring's `2(p−1)/p·n` sent + received.
///
/// Cost: `2·⌈n / block⌉` barriers (α each) + about `(2 + 2/p)·n` bytes through each core's caches.
///
/// Small messages (`n` bytes ≤ a part ÷ max(2, p): 512 KiB at p = 2 by default) take one sync instead of two: every rank copies its
/// whole buffer into one half of its part, syncs, and reduces every element itself, reading all ranks' halves
/// in rank order — the same additions in the same order as the slice owner's, so the same bits as the blocked
/// path and on every rank. Consecutive small calls alternate between the two halves, so no second sync is
/// needed before the next call writes: a rank can only write a half again after the sync of the call in
/// between, which every peer reaches only once it has read that half. Cost: one barrier + `p·n` bytes read
/// per rank (at 1–4 KiB one barrier, the cost of one `MPI_Barrier`, under `MPI_Allreduce`'s exchange).
///
/// Set-up (`prepare` or the first `run`, collective): the algorithm's own duplicate communicator,
/// `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)` and `MPI_Win_allocate_shared` on it. When the ranks do not all
/// share one node, every call goes to the ring instead (built on that duplicate; it duplicates it again).
/// The window is freed collectively when this object goes away: every rank must release its
/// `SharedMemoryAllreduce` objects at the same point and in the same order (keep several in an array, not in
/// a dictionary, whose order differs between processes).
/// On `LocalCommunicator` the same code runs over threads sharing one allocation, with the world's barrier
/// as the sync, so the unit tests exercise this algorithm itself, not a fallback.
public final class SharedMemoryAllreduce: AllreduceAlgorithm {
    public let name = "shm"
    /// This algorithm's own duplicate: the window, its syncs and the fallback ring are set up on it.
    let comm: PrivateCommunicator
    /// Bytes of each rank's window part: the block processed between syncs. `DML_SHM_BLOCK` overrides.
    public let blockBytes: Int
    private var prepared = false
    private var window: SharedMemoryWindow?
    private var fallback: RingAllreduce?
    /// Bytes of the last block processed: the slices peers may still be copying out from (0: a call of
    /// another kind came last, and the next block syncs before it writes).
    private var lastLayout = 0
    /// The half of its part the last small call used (0 or 1), nil when the last call was not a small one.
    private var lastHalf: Int?

    public static let defaultBlockBytes = 1 << 20

    public init(comm: Communicator, blockBytes: Int? = nil) {
        self.comm = PrivateCommunicator(comm)
        let fromEnv = ProcessInfo.processInfo.environment["DML_SHM_BLOCK"].flatMap { ByteCount.parse($0) }
        self.blockBytes = Swift.max(64, blockBytes ?? fromEnv ?? Self.defaultBlockBytes)
    }

    /// True when the ranks share one node and the shared window is in use (after the first `run`).
    public var usesSharedMemory: Bool { window != nil }

    /// Where the window's parts lie (after `prepare`), or nil when the ranks do not share one node.
    public var windowLayout: String? { window?.layout }

    /// Messages of at most this many bytes take the one-sync path: half a part, and at most a part's worth of
    /// reads per rank (`p·n` bytes; 512 KiB at p = 2, 64 KiB at p = 16 with the default 1 MiB part).
    public var smallBytes: Int { (window?.bytesPerRank ?? blockBytes) / Swift.max(2, comm.size) & ~63 }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws { try shm(buffer, op: op) }
    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try shm(buffer, op: op) }

    /// Collective, once: the duplicate communicator, then the window, or the ring when the ranks span nodes.
    public func prepare() throws {
        if prepared { return }
        let own = try comm.get()
        prepared = true
        window = try own.sharedMemoryWindow(bytesPerRank: blockBytes)
        if window == nil { fallback = RingAllreduce(comm: own) }
    }

    /// Reduce to `root`: the allreduce without the other ranks' copy-out, so only `root`'s buffer ends with
    /// the result (the others' buffers hold partial results). Collective.
    public func reduce<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp, root: Int) throws { try shm(buffer, op: op, root: root) }

    /// Copies `root`'s buffer into every rank's, through the window: per block, `root` copies in, a sync,
    /// the others copy out. Cost: `2·⌈n / block⌉ + 1` syncs, one pass over memory per rank. Collective.
    public func broadcast<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        let p = comm.size, r = comm.rank, n = buffer.count
        guard p > 1, n > 0, let base = buffer.baseAddress else { return }
        try prepare()
        if fallback != nil { return try comm.get().broadcast(buffer, root: root) }
        let w = window!
        let part = w.base(of: root).assumingMemoryBound(to: T.self)
        let blockElements = Swift.max(1, w.bytesPerRank / MemoryLayout<T>.stride)
        // Peers may still be copying out of the window from the last call.
        try w.sync()
        var start = 0
        while start < n {
            let m = Swift.min(blockElements, n - start)
            if start > 0 { try w.sync() }  // every peer has copied the last block out
            if r == root { part.update(from: base + start, count: m) }
            try w.sync()
            if r != root { (base + start).update(from: part, count: m) }
            start += m
        }
        // The next call of any kind starts with a sync before it writes (its layout differs from 0).
        lastLayout = 0
        lastHalf = nil
    }

    /// The one-sync path for a message of at most `smallBytes`: see the type's comment.
    private func small<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp, window w: SharedMemoryWindow) throws {
        let p = comm.size, r = comm.rank, n = buffer.count, base = buffer.baseAddress!
        // After a call of another kind, peers may still read this rank's part: wait for them first.
        if lastHalf == nil { try w.sync() }
        let half = lastHalf.map { 1 - $0 } ?? 0
        let offset = half * smallBytes
        let parts = (0..<p).map { UnsafePointer((w.base(of: $0) + offset).assumingMemoryBound(to: T.self)) }
        UnsafeMutablePointer(mutating: parts[r]).update(from: base, count: n)
        try w.sync()
        // Rank order, as the slice owner of the blocked path: element i = B_0[i] ⊕ B_1[i] ⊕ … ⊕ B_(p−1)[i].
        op.combine(into: base, parts[0], parts[1], count: n)
        for q in 2..<Swift.max(2, p) { op.combine(into: base, from: parts[q], count: n) }
        lastHalf = half
        lastLayout = 0
    }

    /// The allreduce with `between` run on each block's reduced slice before it is shared: per block, rank r
    /// reduces slice r in the window, calls `between(slice)` (which may change it in place: `hier` runs the
    /// ring across nodes on it), then every rank copies every slice out. The same syncs as `run`.
    /// Every rank of the node must call it with the same count; `between` is called on every rank for every
    /// block, also with an empty slice. Collective.
    func allreduce<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp,
                                       between: (UnsafeMutableBufferPointer<T>) throws -> Void) throws {
        try withoutActuallyEscaping(between) { try shm(buffer, op: op, between: $0) }
    }

    func shm<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp, root: Int? = nil,
                                 between: ((UnsafeMutableBufferPointer<T>) throws -> Void)? = nil) throws {
        let p = comm.size, r = comm.rank, n = buffer.count
        guard p > 1, n > 0, let base = buffer.baseAddress else { return }
        try prepare()
        if let ring = fallback { return try ring.ring(buffer, op: op) }  // (an allreduce also reduces to root)
        let w = window!
        if root == nil && between == nil && n * MemoryLayout<T>.stride <= smallBytes { return try small(buffer, op: op, window: w) }
        lastHalf = nil
        let parts = (0..<p).map { w.base(of: $0).assumingMemoryBound(to: T.self) }
        let mine = parts[r]
        let blockElements = Swift.max(1, w.bytesPerRank / MemoryLayout<T>.stride)
        var start = 0
        while start < n {
            let m = Swift.min(blockElements, n - start)
            let block = base + start
            let slice = RingAllreduce.chunk(r, count: m, parts: p)
            // A block cut differently from the last one (a short last block, another size or type) could
            // copy into bytes a peer still reads in its copy-out: wait for every peer first.
            let layout = m << 4 | MemoryLayout<T>.stride
            if layout != lastLayout {
                try w.sync()
                lastLayout = layout
            }
            // 1. Copy in everything the peers need from this rank.
            mine.update(from: block, count: slice.lowerBound)
            (mine + slice.upperBound).update(from: block + slice.upperBound, count: m - slice.upperBound)
            try w.sync()
            // 2. Reduce this rank's slice in rank order; the source of rank r is its own buffer.
            if !slice.isEmpty {
                let k = slice.count, lo = slice.lowerBound
                func source(_ q: Int) -> UnsafePointer<T> { UnsafePointer(q == r ? block + lo : parts[q] + lo) }
                let out = mine + lo
                op.combine(into: out, source(0), source(1), count: k)
                for q in 2..<Swift.max(2, p) { op.combine(into: out, from: source(q), count: k) }
            }
            if let between {
                try between(UnsafeMutableBufferPointer(start: mine + slice.lowerBound, count: slice.count))
            }
            if !slice.isEmpty { (block + slice.lowerBound).update(from: mine + slice.lowerBound, count: slice.count) }
            try w.sync()
            // 3. Copy out every peer's reduced slice.
            for q in 0..<p where q != r && (root == nil || root == r) {
                let s = RingAllreduce.chunk(q, count: m, parts: p)
                (block + s.lowerBound).update(from: parts[q] + s.lowerBound, count: s.count)
            }
            start += m
        }
    }
}
