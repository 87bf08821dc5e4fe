import Foundation

/// A `Communicator` whose ranks are threads of one process: the test double for every collective.
///
/// Sends are buffered (the bytes are copied into the receiver's mailbox and `send` returns), so any
/// pattern that is deadlock-free under MPI's rules is deadlock-free here. A receive that waits longer than
/// the world's timeout, or while another rank has already failed, throws instead of hanging the test.
///
/// Deadlines (`watched`) work as under MPI: a wait past its deadline holds a roll call (`LocalRoot`: a
/// rank answers while it is inside any wait of its world or of a world split from it) and throws
/// `CollectiveStall` with the same decision rules (`CollectiveStall`), so the unit tests run the same
/// failure path as `mpirun` jobs, in one process.
public final class LocalCommunicator: Communicator {
    public let rank: Int
    public var size: Int { world.size }
    public let allowsSerializedThreads = true
    let world: LocalWorld
    /// The rank in the outermost world of each rank of this one (roll calls name those).
    let rootRanks: [Int]
    public var deadlines: DeadlineState { world.root.deadlines(of: rootRanks[rank]) }

    init(rank: Int, world: LocalWorld, rootRanks: [Int]) {
        self.rank = rank
        self.world = world
        self.rootRanks = rootRanks
    }

    var rootRank: Int { rootRanks[rank] }

    public func keepAnswering(for seconds: Double) { world.root.keepAnswering(rootRank, for: seconds) }

    /// Runs `body` once per rank, each on its own thread, and returns the results in rank order. If any rank
    /// throws, the others' pending receives fail too, and the first error (by rank) is rethrown.
    public static func run<R>(size: Int, timeout: TimeInterval = 60,
                              _ body: @escaping (LocalCommunicator) throws -> R) throws -> [R] {
        precondition(size >= 1, "a world needs at least one rank")
        let world = LocalWorld(size: size, timeout: timeout)
        let results = ResultSlots<R>(count: size)
        // The ranks' threads share the caller's body: that is the contract of this test double (each
        // thread calls it with its own communicator, as each MPI process runs the same program).
        let shared = SharedBody(body)
        let group = DispatchGroup()
        for r in 0..<size {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                let comm = LocalCommunicator(rank: r, world: world, rootRanks: Array(0..<size))
                do { results.set(r, .success(try shared.body(comm))) } catch {
                    results.set(r, .failure(error))
                    world.fail()
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        group.wait()
        return try results.all().map { try $0.get() }
    }

    public func send(_ bytes: UnsafeRawBufferPointer, to dest: Int, tag: Int) throws {
        try checkPeer(dest, "send")
        world.post(Data(bytes), from: rank, to: dest, tag: tag)
    }

    public func recv(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        try checkPeer(source, "recv")
        let message = try world.take(from: source, to: rank, tag: tag, rootRank: rootRank)
        guard message.count == bytes.count else {
            throw CommError.invalidArgument("rank \(rank) expected \(bytes.count) bytes from rank \(source), got \(message.count)")
        }
        if !message.isEmpty { message.copyBytes(to: bytes) }
    }

    public func sendrecv(sending: UnsafeRawBufferPointer, to dest: Int,
                         receiving: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        try send(sending, to: dest, tag: tag)
        try recv(receiving, from: source, tag: tag)
    }

    /// Buffered, like `send`: the request is complete at once.
    public func isend(_ bytes: UnsafeRawBufferPointer, to dest: Int, tag: Int) throws -> CommRequest {
        try send(bytes, to: dest, tag: tag)
        return .completed
    }

    /// Remembers the receive; `wait` takes the message from the mailbox (mailboxes are FIFO per sender and
    /// tag, so receives waited for in the order they were posted match the sends in order).
    public func irecv(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws -> CommRequest {
        try checkPeer(source, "irecv")
        return CommRequest(state: .localReceive(bytes, source: source, tag: tag))
    }

    public func wait(_ request: inout CommRequest) throws {
        guard case let .localReceive(bytes, source, tag) = request.state else { return }
        request = .completed
        try recv(bytes, from: source, tag: tag)
    }

    /// The same idea as MPI's shared window, over threads: the world allocates one part per rank on the
    /// first rank's call (the n-th call of every rank gets the n-th allocation), and `sync` is the barrier.
    /// All ranks of a local world share one process, so this never returns nil.
    public func sharedMemoryWindow(bytesPerRank: Int) throws -> SharedMemoryWindow? {
        defer { windowCalls += 1 }
        let region = world.sharedRegion(call: windowCalls, bytesPerRank: bytesPerRank)
        try world.barrier(rootRank: rootRank)
        return LocalSharedWindow(region: region, world: world, rootRank: rootRank)
    }

    private var windowCalls = 0
    private var splitCalls = 0

    /// Every rank learns every rank's (color, key) through the world; the n-th split of every rank with one
    /// color gets the same new world (created by whichever of its ranks comes first).
    public func split(color: Int, key: Int) throws -> Communicator {
        defer { splitCalls += 1 }
        var mine = [Int64](repeating: 0, count: 2 * size)
        mine[2 * rank] = Int64(color)
        mine[2 * rank + 1] = Int64(key)
        let all = try allreduced(mine, op: .sum)
        let members = (0..<size).filter { all[2 * $0] == Int64(color) }.sorted { (all[2 * $0 + 1], $0) < (all[2 * $1 + 1], $1) }
        let sub = world.subWorld(call: splitCalls, color: color, size: members.count)
        return LocalCommunicator(rank: members.firstIndex(of: rank)!, world: sub, rootRanks: members.map { rootRanks[$0] })
    }

    /// Threads of one process share one node.
    public func splitByNode() throws -> Communicator { try split(color: 0, key: rank) }

    private var duplicateCalls = 0

    /// The n-th duplicate of every rank is one new world of the same size (created by whichever rank comes
    /// first), sharing the outermost world's deadlines and roll call as `split` does: its mailboxes, barrier
    /// and shared regions are its own. Nothing is exchanged, so it cannot fail or wait.
    public func duplicate() throws -> Communicator {
        defer { duplicateCalls += 1 }
        return LocalCommunicator(rank: rank, world: world.duplicate(call: duplicateCalls), rootRanks: rootRanks)
    }

    /// Reserved tags keep the collectives' messages apart from the user's.
    static let broadcastTag = -1, reduceTag = -2

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
        try checkPeer(root, "broadcast")
        if rank == root {
            for r in 0..<size where r != root { try send(UnsafeRawBufferPointer(bytes), to: r, tag: Self.broadcastTag) }
        } else {
            try recv(bytes, from: root, tag: Self.broadcastTag)
        }
    }

    public func barrier() throws { try world.barrier(rootRank: rootRank) }

    /// Gathers to rank 0, reduces in rank order, broadcasts: simple, deterministic, and independent of the
    /// algorithms it is used to test.
    public func nativeAllreduce<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        let raw = UnsafeMutableRawBufferPointer(buffer)
        if rank == 0 {
            let incoming = UnsafeMutableBufferPointer<T>.allocate(capacity: buffer.count)
            defer { incoming.deallocate() }
            for r in 1..<size {
                try recv(UnsafeMutableRawBufferPointer(incoming), from: r, tag: Self.reduceTag)
                if buffer.count > 0 { op.combine(into: buffer.baseAddress!, from: incoming.baseAddress!, count: buffer.count) }
            }
        } else {
            try send(UnsafeRawBufferPointer(raw), to: 0, tag: Self.reduceTag)
        }
        try broadcast(raw, root: 0)
    }

    public func abort(code: Int32) -> Never {
        fatalError("LocalCommunicator.abort(code: \(code)) on rank \(rank)")
    }
}

/// The shared state of one in-process world: mailboxes and a barrier, under one condition variable.
final class LocalWorld: @unchecked Sendable {
    let size: Int
    let timeout: TimeInterval
    /// The outermost world's deadlines and roll calls, shared by every world split from it.
    let root: LocalRoot
    private let cond = NSCondition()
    private var mailboxes: [MailboxKey: [Data]] = [:]
    private var barrierCount = 0
    private var barrierGeneration = 0
    private var failed = false

    struct MailboxKey: Hashable { let from: Int, to: Int, tag: Int }

    init(size: Int, timeout: TimeInterval, root: LocalRoot? = nil) {
        self.size = size
        self.timeout = timeout
        self.root = root ?? LocalRoot(size: size)
    }

    func post(_ data: Data, from: Int, to: Int, tag: Int) {
        cond.lock()
        mailboxes[MailboxKey(from: from, to: to, tag: tag), default: []].append(data)
        cond.broadcast()
        cond.unlock()
    }

    /// Waits for `ready` (checked under the lock, which it may change), polling every 10 ms so that the
    /// deadline, a roll call or a notice is seen; `what` names the wait in a timeout message.
    private func waitUntil(rootRank: Int, what: @autoclosure () -> String, _ ready: () -> Bool) throws {
        root.enterWait(rootRank)
        defer { root.leaveWait(rootRank) }
        let start = Date()
        while true {
            cond.lock()
            if ready() { cond.unlock(); return }
            if failed { cond.unlock(); throw CommError.peerFailed("rank \(rootRank) was in \(what()) when another rank failed") }
            _ = cond.wait(until: Date(timeIntervalSinceNow: 0.01))
            let done = ready()
            cond.unlock()
            if done { return }
            try root.check(rank: rootRank, waited: -start.timeIntervalSinceNow, timeout: timeout, what: what())
        }
    }

    func take(from: Int, to: Int, tag: Int, rootRank: Int) throws -> Data {
        let key = MailboxKey(from: from, to: to, tag: tag)
        var message: Data?
        try waitUntil(rootRank: rootRank, what: "a receive from rank \(from) (tag \(tag))") {
            guard var queue = mailboxes[key], !queue.isEmpty else { return false }
            message = queue.removeFirst()
            mailboxes[key] = queue
            return true
        }
        return message!
    }

    func barrier(rootRank: Int) throws {
        cond.lock()
        let generation = barrierGeneration
        barrierCount += 1
        if barrierCount == size {
            barrierCount = 0
            barrierGeneration += 1
            cond.broadcast()
            cond.unlock()
            return
        }
        cond.unlock()
        try waitUntil(rootRank: rootRank, what: "a barrier") { barrierGeneration != generation }
    }

    private var regions: [Int: LocalSharedRegion] = [:]

    /// The shared region of the `call`-th `sharedMemoryWindow` call, allocated by whichever rank comes first.
    func sharedRegion(call: Int, bytesPerRank: Int) -> LocalSharedRegion {
        cond.lock()
        defer { cond.unlock() }
        if let r = regions[call] { return r }
        let r = LocalSharedRegion(parts: size, bytesPerRank: bytesPerRank)
        regions[call] = r
        return r
    }

    private var subWorlds: [Int: [Int: LocalWorld]] = [:]

    /// The world of the `call`-th split's ranks of `color`. A failure here fails it too.
    func subWorld(call: Int, color: Int, size: Int) -> LocalWorld {
        cond.lock()
        defer { cond.unlock() }
        if let w = subWorlds[call]?[color] { return w }
        let w = LocalWorld(size: size, timeout: timeout, root: root)
        subWorlds[call, default: [:]][color] = w
        return w
    }

    private var duplicates: [Int: LocalWorld] = [:]

    /// The world of every rank's `call`-th duplicate. A failure here fails it too.
    func duplicate(call: Int) -> LocalWorld {
        cond.lock()
        defer { cond.unlock() }
        if let w = duplicates[call] { return w }
        let w = LocalWorld(size: size, timeout: timeout, root: root)
        duplicates[call] = w
        return w
    }

    func fail() {
        cond.lock()
        failed = true
        cond.broadcast()
        let children = subWorlds.values.flatMap(\.values) + duplicates.values
        cond.unlock()
        for c in children { c.fail() }
    }
}

/// The body every rank thread of a local world runs (see `LocalCommunicator.run`).
private final class SharedBody<R>: @unchecked Sendable {
    let body: (LocalCommunicator) throws -> R
    init(_ body: @escaping (LocalCommunicator) throws -> R) { self.body = body }
}

/// Per-rank result slots written by the rank threads.
final class ResultSlots<R>: @unchecked Sendable {
    private var slots: [Result<R, Error>?]
    private let lock = NSLock()
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<R, Error>) { lock.lock(); slots[i] = r; lock.unlock() }
    func all() -> [Result<R, Error>] { lock.lock(); defer { lock.unlock() }; return slots.map { $0! } }
}

/// One part per rank, freed when the last window over it goes away.
final class LocalSharedRegion: @unchecked Sendable {
    let bytesPerRank: Int
    let parts: [UnsafeMutableRawPointer]
    init(parts count: Int, bytesPerRank: Int) {
        self.bytesPerRank = (Swift.max(bytesPerRank, 64) + 63) & ~63
        parts = (0..<count).map { _ in UnsafeMutableRawPointer.allocate(byteCount: (Swift.max(bytesPerRank, 64) + 63) & ~63, alignment: 64) }
    }
    deinit { for p in parts { p.deallocate() } }
}

final class LocalSharedWindow: SharedMemoryWindow {
    let region: LocalSharedRegion
    let world: LocalWorld
    let rootRank: Int
    init(region: LocalSharedRegion, world: LocalWorld, rootRank: Int) { self.region = region; self.world = world; self.rootRank = rootRank }
    var bytesPerRank: Int { region.bytesPerRank }
    func base(of rank: Int) -> UnsafeMutableRawPointer { region.parts[rank] }
    var layout: String { "\(region.parts.count) parts of \(ByteCount.format(bytesPerRank)), 64-byte aligned (threads of one process)" }
    /// The world's barrier takes a lock on entry and exit, which orders the threads' memory.
    func sync() throws { try world.barrier(rootRank: rootRank) }
}

/// The roll call of `CollectiveStall` among the threads of one in-process job: a rank answers while it is
/// inside a wait (of any world split from the outermost one), which is what a live MPI rank does from its
/// polling loop; a rank that is computing, sleeping or stopped does not. Deadlines are per rank (each rank
/// thread sets its own phase, as each MPI process does).
final class LocalRoot: @unchecked Sendable {
    let size: Int
    private let lock = NSCondition()
    private var waits: [Int]
    private var perRank: [DeadlineState]
    /// Calls in progress: their answers so far.
    private var calls: [Int: Set<Int>] = [:]
    private var nextCall = 0
    private var noticed: [Bool]

    init(size: Int) {
        self.size = size
        waits = Array(repeating: 0, count: size)
        perRank = (0..<size).map { _ in DeadlineState() }
        noticed = Array(repeating: false, count: size)
    }

    func deadlines(of rank: Int) -> DeadlineState { perRank[rank] }

    func enterWait(_ rank: Int) {
        lock.lock()
        waits[rank] += 1
        for id in calls.keys { calls[id]!.insert(rank) }
        lock.unlock()
    }

    func leaveWait(_ rank: Int) {
        lock.lock()
        waits[rank] -= 1
        lock.unlock()
    }

    func keepAnswering(_ rank: Int, for seconds: Double) {
        enterWait(rank)
        Thread.sleep(forTimeInterval: seconds)
        leaveWait(rank)
    }

    /// Called by a waiting rank every 10 ms: throws `CollectiveStall` (after the roll call) when its deadline
    /// has passed or a notice arrived, `CommError.timeout` past the world's own timeout when no deadline is set.
    func check(rank: Int, waited: Double, timeout: Double, what: String) throws {
        let state = perRank[rank]
        guard let deadline = state.current, deadline.seconds > 0 else {
            if waited >= timeout { throw CommError.timeout("rank \(rank) waited \(timeout) s in \(what)") }
            return
        }
        lock.lock()
        let notice = noticed[rank]
        noticed[rank] = false
        lock.unlock()
        guard waited >= deadline.seconds || notice else { return }
        throw stall(rank: rank, deadline: deadline)
    }

    /// The same decisions as `MPIRollCall.stall`.
    private func stall(rank: Int, deadline: CollectiveDeadline) -> CollectiveStall {
        guard size > 1 else { return CollectiveStall(phase: deadline.phase, seconds: deadline.seconds, missing: [], reporter: true, rank: rank) }
        guard rank < 2 else {
            lock.lock()
            for r in 0..<Swift.min(2, size) { noticed[r] = true }
            lock.unlock()
            return CollectiveStall(phase: deadline.phase, seconds: deadline.seconds, missing: [], reporter: false, rank: rank)
        }
        lock.lock()
        let id = nextCall
        nextCall += 1
        calls[id] = Set((0..<size).filter { waits[$0] > 0 })
        lock.unlock()
        Thread.sleep(forTimeInterval: CollectiveStall.window(deadline: deadline.seconds))
        lock.lock()
        let answered = calls.removeValue(forKey: id)!
        lock.unlock()
        let missing = (0..<size).filter { $0 != rank && !answered.contains($0) }
        return CollectiveStall(phase: deadline.phase, seconds: deadline.seconds, missing: missing,
                               reporter: rank == 0 || missing.contains(0), rank: rank)
    }
}
