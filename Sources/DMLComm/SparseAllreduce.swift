/// A sparse vector handed to or returned by `SparseAllreduce`: the positions of its entries, sorted and
/// unique, in `0 ..< dimension`, and their values (`indices.count == values.count`). Every position not
/// listed holds +0.
public struct SparseEntries<T> {
    public let indices: UnsafeBufferPointer<Int32>
    public let values: UnsafeBufferPointer<T>
    public var count: Int { indices.count }

    public init(indices: UnsafeBufferPointer<Int32>, values: UnsafeBufferPointer<T>) {
        precondition(indices.count == values.count, "SparseEntries: \(indices.count) indices but \(values.count) values")
        self.indices = indices
        self.values = values
    }
}

/// An allreduce that also reduces sparse vectors: given each rank's sorted unique positions and values, every
/// rank gets the sorted union and the reduced values, the same bits on every rank (`SparseAllreduce`; a
/// wrapper that forwards to one, such as `dml-bench train`'s timer). The sparse reducer takes one by this.
public protocol SparseAllreduceAlgorithm: AllreduceAlgorithm {
    /// The union of every rank's `entries` (positions below `dimension`) with the reduced values; valid until
    /// the algorithm's next call. Collective. (One entry point per element type, not a generic one: a generic
    /// called from another module would run unspecialised, several times slower per entry.)
    func run(_ entries: SparseEntries<Float>, dimension: Int, op: ReduceOp) throws -> SparseEntries<Float>
    func run(_ entries: SparseEntries<Double>, dimension: Int, op: ReduceOp) throws -> SparseEntries<Double>
}

/// Sparse allreduce by a **recursive-doubling merge**: each rank gives the sorted unique positions it holds
/// of a vector of `dimension` elements and their values; every rank gets the same sorted union of the
/// positions and, at each, the reduction of all ranks' values (a rank that does not list a position
/// contributes +0 there). Nothing of size `dimension` is sent, touched or allocated.
///
/// ```
///  p = 6 (p′ = 4, rem = 2):   fold     r0 ──▶ r1      r2 ──▶ r3      r4      r5      (as RecursiveDoublingAllreduce)
///                            mask 1:   n0 ⇄ n1,  n2 ⇄ n3      each pair swaps its sorted (index, value) lists and
///                            mask 2:   n0 ⇄ n2,  n1 ⇄ n3      both merge them into the same list
///                            unfold    r1 ──▶ r0      r3 ──▶ r2
/// ```
/// **Order and bits.** The schedule is `rd`'s (`RecursiveDoublingPlan`). Each merge computes, at every position, `(lower group's value) ⊕ (higher group's
/// value)`, an absent side being +0 (so a value alone still goes through `x ⊕ +0`, which turns −0 into +0
/// exactly as a dense sum would). That is the expression tree of `RecursiveDoublingAllreduce` at every
/// position, so the result depends only on the number of ranks, never on timing, on the position or on which
/// other positions are present: scattered into a +0 vector it has **the same bits as `rd` on the dense
/// vectors** (`SparseAllreduceTests` checks it for p = 1…16), and every rank holds the same bits. Positions
/// absent everywhere stay absent (dense: `+0 ⊕ +0 = +0` for sum, max and min).
///
/// **Cost** with latency α, inverse bandwidth β, `s` bytes per value (4 for Float), `nnz_r` entries on rank r,
/// `u` the union's size, `L = ⌊log2 p⌋` and `e = 2·[p not a power of 2]`:
/// - messages: `2·(L + e)` per rank on the critical path (each exchange is a count, then the entries);
/// - bytes: the exchange at distance 2^k sends the union of its group of 2^k ranks, `e_s·u_k` with
///   `u_k ≤ min(u, Σ_{group} nnz)` and `e_s` the bytes of one (Int32 position, value) pair: 8 for Float, 16
///   for Double (padded); so at most `e_s·u·(L + e)` per rank, and `e_s·nnz` at p = 2 —
///   against the dense ring's `2(p−1)/p · s·dimension` whatever the density;
/// - work: one linear merge per exchange (`O(u_k)` compares and adds), no allocation in steady state (the
///   scratch lists grow to the largest union seen and are kept).
/// A dense ring wins when `e_s·u·(L + e)` approaches `s·dimension`: at `u/dimension` of a few percent
/// for p = 2 (measured in benchmarks/RESULTS.md, "Sparse allreduce").
///
/// Also an `AllreduceAlgorithm` on dense buffers (`--allreduce sparse` anywhere an algorithm is taken): the
/// entries are the elements whose bits are not +0 (a −0 is an entry: it must meet the others' +0 in a sum),
/// and the union is written back; everything else already holds +0 on every rank. Cost: a pass over the
/// buffer on top of the above.
public final class SparseAllreduce: SparseAllreduceAlgorithm {
    public let name = "sparse"
    /// This algorithm's own duplicate: its tags 0 (fold), 1 (exchanges) and 2 (unfold) meet nobody else's.
    let comm: PrivateCommunicator
    /// This rank's list so far (`mine`), the list being merged into (`merged`; the two swap after each
    /// merge), and a partner's list (`incoming`). Interleaved (position, value) pairs, so a list is one
    /// message.
    private var mine = EntryList(), merged = EntryList()
    private let incoming = EntryList()
    /// The result handed out, as separate positions and values.
    private let result = EntryList(), resultValues = EntryList()
    /// The dense interface's entries of this rank.
    private let gathered = EntryList(), gatheredValues = EntryList()

    public init(comm: Communicator) { self.comm = PrivateCommunicator(comm) }

    /// Collective, once: the duplicate communicator.
    public func prepare() throws { _ = try comm.get() }

    /// The sparse allreduce. `entries` (sorted unique positions below `dimension`, which every rank passes
    /// alike and which must not exceed 2^31) → the union of every rank's positions, sorted, with the reduced
    /// values, the same bits on every rank. The result lives in this algorithm's scratch: valid until its
    /// next call. Collective.
    public func run(_ entries: SparseEntries<Float>, dimension: Int, op: ReduceOp) throws -> SparseEntries<Float> {
        try reduce(entries, dimension: dimension, op: op)
    }

    public func run(_ entries: SparseEntries<Double>, dimension: Int, op: ReduceOp) throws -> SparseEntries<Double> {
        try reduce(entries, dimension: dimension, op: op)
    }

    /// `run` for any element type (specialised for each caller above).
    func reduce<T: ReducibleScalar>(_ entries: SparseEntries<T>, dimension: Int, op: ReduceOp) throws -> SparseEntries<T> {
        precondition(dimension >= 0 && dimension <= Int(Int32.max) + 1, "SparseAllreduce: dimension \(dimension) does not fit Int32 positions")
        for k in 0..<entries.count {
            let i = entries.indices[k]
            precondition(i >= 0 && Int(i) < dimension && (k == 0 || entries.indices[k - 1] < i),
                         "SparseAllreduce: positions must be sorted, unique and below \(dimension) (entry \(k) is \(i))")
        }
        let comm = try comm.get()
        let p = comm.size, r = comm.rank
        mine.reserve(entries.count, Pair<T>.self)
        let own = mine.pairs(Pair<T>.self)
        for k in 0..<entries.count { own[k] = Pair(index: entries.indices[k], value: entries.values[k]) }
        mine.count = entries.count
        if p > 1 {
            let plan = RecursiveDoublingPlan(rank: r, size: p)
            switch plan.fold {
            case let .send(to): try send(mine, Pair<T>.self, to: to, tag: 0, comm)
            case let .receive(from):
                try receive(into: incoming, Pair<T>.self, from: from, tag: 0, comm)
                merge(lower: incoming, higher: mine, T.self, op: op)
            case .none: break
            }
            for exchange in plan.exchanges {
                try swapLists(with: exchange.peer, Pair<T>.self, comm)
                if exchange.incomingIsLower { merge(lower: incoming, higher: mine, T.self, op: op) } else { merge(lower: mine, higher: incoming, T.self, op: op) }
            }
            switch plan.unfold {
            case let .send(to): try send(mine, Pair<T>.self, to: to, tag: 2, comm)
            case let .receive(from): try receive(into: mine, Pair<T>.self, from: from, tag: 2, comm)
            case .none: break
            }
        }
        let n = mine.count
        result.reserve(n, Int32.self)
        resultValues.reserve(n, T.self)
        let pairs = mine.pairs(Pair<T>.self), indices = result.pairs(Int32.self), values = resultValues.pairs(T.self)
        for k in 0..<n {
            indices[k] = pairs[k].index
            values[k] = pairs[k].value
        }
        return SparseEntries(indices: UnsafeBufferPointer(start: indices, count: n), values: UnsafeBufferPointer(start: values, count: n))
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws { try dense(buffer, op: op) }
    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try dense(buffer, op: op) }

    /// The dense interface: the elements that are not +0 are the entries; the union is written back.
    func dense<T: ReducibleScalar & BinaryFloatingPoint>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        gathered.reserve(buffer.count, Int32.self)
        gatheredValues.reserve(buffer.count, T.self)
        let indices = gathered.pairs(Int32.self), values = gatheredValues.pairs(T.self)
        var k = 0
        for i in 0..<buffer.count where !(buffer[i] == 0 && buffer[i].sign == .plus) {
            indices[k] = Int32(i)
            values[k] = buffer[i]
            k += 1
        }
        let summed = try reduce(SparseEntries(indices: UnsafeBufferPointer(start: indices, count: k), values: UnsafeBufferPointer(start: values, count: k)),
                             dimension: buffer.count, op: op)
        for j in 0..<summed.count { buffer[Int(summed.indices[j])] = summed.values[j] }
    }

    /// `merged ← lower ⊕ higher` position by position (absent: +0), then `mine ← merged`.
    private func merge<T: ReducibleScalar>(lower: EntryList, higher: EntryList, _: T.Type, op: ReduceOp) {
        merged.reserve(lower.count + higher.count, Pair<T>.self)
        let a = lower.pairs(Pair<T>.self), b = higher.pairs(Pair<T>.self), c = merged.pairs(Pair<T>.self)
        let na = lower.count, nb = higher.count
        switch op {
        case .sum: merged.count = Self.merge(a, na, b, nb, into: c) { $0 + $1 }
        case .max: merged.count = Self.merge(a, na, b, nb, into: c) { Swift.max($0, $1) }
        case .min: merged.count = Self.merge(a, na, b, nb, into: c) { Swift.min($0, $1) }
        }
        swap(&mine, &merged)
    }

    /// The two-way merge of sorted lists with `combine(lower, higher)` (absent: +0); returns the length.
    @inline(__always)
    private static func merge<T: ReducibleScalar>(_ a: UnsafeMutablePointer<Pair<T>>, _ na: Int, _ b: UnsafeMutablePointer<Pair<T>>, _ nb: Int,
                                                  into c: UnsafeMutablePointer<Pair<T>>, _ combine: (T, T) -> T) -> Int {
        var i = 0, j = 0, k = 0
        while i < na && j < nb {
            let x = a[i].index, y = b[j].index
            if x == y {
                c[k] = Pair(index: x, value: combine(a[i].value, b[j].value)); i += 1; j += 1
            } else if x < y {
                c[k] = Pair(index: x, value: combine(a[i].value, .zero)); i += 1
            } else {
                c[k] = Pair(index: y, value: combine(.zero, b[j].value)); j += 1
            }
            k += 1
        }
        while i < na { c[k] = Pair(index: a[i].index, value: combine(a[i].value, .zero)); i += 1; k += 1 }
        while j < nb { c[k] = Pair(index: b[j].index, value: combine(.zero, b[j].value)); j += 1; k += 1 }
        return k
    }

    private func send<E>(_ list: EntryList, _: E.Type, to peer: Int, tag: Int, _ comm: Communicator) throws {
        var count = Int64(list.count)
        try withUnsafeBytes(of: &count) { try comm.send($0, to: peer, tag: tag) }
        if list.count > 0 { try comm.send(UnsafeRawBufferPointer(list.bytes(E.self)), to: peer, tag: tag) }
    }

    private func receive<E>(into list: EntryList, _: E.Type, from peer: Int, tag: Int, _ comm: Communicator) throws {
        var count: Int64 = 0
        try withUnsafeMutableBytes(of: &count) { try comm.recv($0, from: peer, tag: tag) }
        list.reserve(Int(count), E.self)
        list.count = Int(count)
        if count > 0 { try comm.recv(list.bytes(E.self), from: peer, tag: tag) }
    }

    /// Swaps `mine` with `peer`'s list, received into `incoming`: the counts, then the entries.
    private func swapLists<E>(with peer: Int, _: E.Type, _ comm: Communicator) throws {
        var counts: (Int64, Int64) = (Int64(mine.count), 0)
        try withUnsafeMutableBytes(of: &counts) { both in
            try comm.sendrecv(sending: UnsafeRawBufferPointer(rebasing: both[0..<8]), to: peer,
                              receiving: UnsafeMutableRawBufferPointer(rebasing: both[8..<16]), from: peer, tag: 1)
        }
        incoming.reserve(Int(counts.1), E.self)
        incoming.count = Int(counts.1)
        if mine.count > 0 || incoming.count > 0 {
            try comm.sendrecv(sending: UnsafeRawBufferPointer(mine.bytes(E.self)), to: peer, receiving: incoming.bytes(E.self), from: peer, tag: 1)
        }
    }
}

/// One entry on the wire and in the merges: 8 bytes for Float, 16 (padded) for Double.
struct Pair<T> {
    var index: Int32
    var value: T
}

/// A growable array of plain values kept between calls (grows, never shrinks; the element type may change
/// between calls, the contents are not kept across `reserve`).
final class EntryList {
    private var raw = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
    private var byteCapacity = 64
    /// Elements in use.
    var count = 0

    deinit { raw.deallocate() }

    /// Room for `n` elements of `E`.
    func reserve<E>(_ n: Int, _: E.Type) {
        let needed = n * MemoryLayout<E>.stride
        if needed <= byteCapacity { return }
        raw.deallocate()
        byteCapacity = Swift.max(needed, byteCapacity + byteCapacity / 2)
        raw = .allocate(byteCount: byteCapacity, alignment: 64)
    }

    func pairs<E>(_: E.Type) -> UnsafeMutablePointer<E> { raw.bindMemory(to: E.self, capacity: byteCapacity / MemoryLayout<E>.stride) }

    /// The `count` elements in use, as a message.
    func bytes<E>(_: E.Type) -> UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: raw, count: count * MemoryLayout<E>.stride) }
}
