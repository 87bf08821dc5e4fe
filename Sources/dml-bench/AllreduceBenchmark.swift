import ArgumentParser
import DMLComm
import DMLStatus
import DMLTraining
import Foundation

/// `dml-bench allreduce`: the nccl-tests of this project. Every algorithm, and always `MPI_Allreduce`, over a
/// range of sizes in one run, with the one-core memcpy bandwidth as the physical reference.
struct AllreduceBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Time allreduce algorithms against MPI_Allreduce (sum, in place) over a range of sizes.",
        discussion: """
            Time per iteration is the slowest rank's (max over ranks); the table shows the median over the \
            timed iterations, algbw = bytes / time and busbw = algbw * 2(p-1)/p (GB/s = 1e9 bytes/s), and each \
            algorithm's busbw against MPI_Allreduce's (x mpi), which is measured in every run. Example:
              mpirun -np 2 dml-bench allreduce --sizes 4K:256M --algorithms ring,shm,rd,auto --check
            """)

    @Option(help: "Message sizes in bytes: FROM:TO (K, M, G = 1024-based), stepping by --factor, or a comma list (4K,1M,64M). Default 4K:256M.")
    var sizes: String?

    @Option(help: "Step between sizes of a FROM:TO range: 2 or 4. Default 4.")
    var factor: Int?

    @Option(help: "Algorithms to time, comma-separated, from: \(BenchKind.names.joined(separator: ", ")) (ring-fp16/ring-bf16: the ring with 16-bit messages, as dml-train --compress). mpi is always timed. Default: all of AllreduceKind.")
    var algorithms: String?

    @Flag(help: "Sparse mode: the sparse allreduce against the ring and MPI_Allreduce of the whole vector over a sweep of densities (--dimension, --densities), then one training step's reduction and update (--step-rows, --nnz-per-row).")
    var sparse = false

    @Option(help: "--sparse: elements of the vector (K, M = 1024-based). Default 4M (2^22).")
    var dimension: String?

    @Option(help: "--sparse: each rank's share of non-zero positions, in percent, comma-separated. Default 0.01,0.1,0.5,1,2,5,10,20,50.")
    var densities: String?

    @Option(name: .customLong("step-rows"), help: "--sparse: rows per rank of the synthetic training step (0: none). Default 512.")
    var stepRows: Int?

    @Option(name: .customLong("nnz-per-row"), help: "--sparse: non-zero columns per row of the synthetic training step (power-law). Default 40.")
    var nnzPerRow: Int?

    @Option(help: "Element type: float or double.")
    var type: ElementType = .float

    @Option(help: "Untimed iterations before timing, per size and algorithm.")
    var warmup: Int = 2

    @Option(help: "Timed iterations per size and algorithm (at most; see --max-seconds).")
    var iters: Int = 20

    @Option(name: .customLong("max-seconds"), help: "Fewer iterations (at least 3) where --iters would take longer than this per size and algorithm.")
    var maxSeconds: Double = 1.0

    @Flag(help: "Verify every algorithm's result at every size exactly (integer-valued data, #wrong) and that every rank gets the same bits on inexact data, with messages of another concern in flight on the world communicator (the tags the algorithms use) that no algorithm may take; exit 1 if not.")
    var check = false

    @Option(help: "Policy for the auto algorithm, e.g. 'rd<=16K,ring' (default: DML_ALLREDUCE_AUTO, else 'shm' when all ranks share a node and 'rd<=64K,hier' when not).")
    var auto: String?

    @Option(help: "Write the results as CSV (algorithm,np,bytes,time_us,algbw_GBps,busbw_GBps) to this file (rank 0, atomically).")
    var csv: String?

    /// The CSV columns (DESIGN.md's command-line contract).
    static let csvHeader = ["algorithm", "np", "bytes", "time_us", "algbw_GBps", "busbw_GBps"]

    enum ElementType: String, ExpressibleByArgument, CaseIterable {
        case float, double
        var bytes: Int { self == .float ? 4 : 8 }
    }

    /// The parsed size list.
    func sizeList() throws -> [Int] {
        let sizes = self.sizes ?? "4K:256M", factor = self.factor ?? 4
        if sizes.contains(":") {
            let ends = sizes.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard ends.count == 2, let from = ByteCount.parse(ends[0]), let to = ByteCount.parse(ends[1]), from > 0, from <= to else {
                throw ValidationError("--sizes '\(sizes)' is not FROM:TO with FROM <= TO (e.g. 4K:256M)")
            }
            var list: [Int] = []
            var s = from
            while s <= to { list.append(s); s *= factor }
            return list
        }
        guard let parts = CommaList.items(sizes) else { throw ValidationError("--sizes: give sizes separated by commas, e.g. 4K,1M,4096 (got '\(sizes)')") }
        return try parts.map { part in
            guard let b = ByteCount.parse(part), b >= 0 else { throw ValidationError("--sizes: '\(part)' is not a size (e.g. 4K, 1M, 4096)") }
            return b
        }
    }

    /// The algorithms to time, `mpi` first.
    func kindList() throws -> [BenchKind] {
        var kinds: [BenchKind] = [.mpi]
        let algorithms = self.algorithms ?? AllreduceKind.allCases.map(\.rawValue).joined(separator: ",")
        guard let names = CommaList.items(algorithms) else { throw ValidationError("--algorithms: give names separated by commas (got '\(algorithms)')") }
        for name in names {
            guard let k = BenchKind(rawValue: name) else {
                throw ValidationError("--algorithms: '\(name)' is not one of \(BenchKind.names.joined(separator: ", "))")
            }
            if !kinds.contains(k) { kinds.append(k) }
        }
        return kinds
    }

    func validate() throws {
        try validateSparse()
        guard factor == nil || factor == 2 || factor == 4 else { throw ValidationError("--factor must be 2 or 4 (got \(factor!))") }
        let list = try sizeList()
        guard !list.isEmpty else { throw ValidationError("--sizes names no size") }
        if let bad = list.first(where: { $0 % type.bytes != 0 }) {
            throw ValidationError("--sizes: \(bad) bytes is not a whole number of \(type.rawValue)s (\(type.bytes) bytes each)")
        }
        _ = try kindList()
        guard warmup >= 0 else { throw ValidationError("--warmup must be 0 or more (got \(warmup))") }
        guard iters >= 1 else { throw ValidationError("--iters must be at least 1 (got \(iters))") }
        guard maxSeconds > 0 else { throw ValidationError("--max-seconds must be positive (got \(maxSeconds))") }
        if let a = auto {
            do { _ = try AutoAllreducePolicy(parsing: a) } catch { throw ValidationError("--auto: \(error)") }
        }
        if let c = csv, c.isEmpty { throw ValidationError("--csv must name a file") }
    }

    func run() throws {
        try BenchJob.run("dml-bench allreduce") { comm, _ in
            if sparse { return try sparseBenchmark(comm) }
            switch type {
            case .float: try benchmark(comm, Float.self)
            case .double: try benchmark(comm, Double.self)
            }
        }
    }

    struct Point {
        let kind: BenchKind
        let bytes: Int
        let seconds: Double
        let wrong: Int64?
        var algbw: Double { Double(bytes) / seconds / 1e9 }
        func busbw(ranks p: Int) -> Double { algbw * 2 * Double(p - 1) / Double(p) }
    }

    func benchmark<T: ReducibleScalar & BinaryFloatingPoint>(_ comm: MPICommunicator, _: T.Type) throws {
        let p = comm.size
        let sizes = try sizeList(), kinds = try kindList()
        if let path = csv {
            try comm.agreeing { if comm.rank == 0 { do { try AtomicFile.checkWritable(path) } catch { throw BenchError("--csv: \(error)", cause: error) } } }
        }
        let givenPolicy = try auto.map { try AutoAllreducePolicy(parsing: $0) } ?? comm.agreeing { try AutoAllreducePolicy.fromEnvironment() }

        // Where the ranks are: oversubscribed cores make the timings meaningless, and the table says so.
        let layout = try comm.nodeLayout()
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let nodeMap = try NodeMap(comm)
        let nodes = nodeMap.nodes.count
        let oversubscribed = try comm.allreduced(Int64(layout.ranksOnNode > cores ? 1 : 0), op: .max) == 1

        let maxCount = sizes.max()! / MemoryLayout<T>.stride
        let buffer = try comm.agreeing { () -> UnsafeMutableBufferPointer<T> in
            let b = UnsafeMutableBufferPointer<T>.allocate(capacity: Swift.max(1, maxCount))
            b.initialize(repeating: 0)  // first touch now, not inside a timed iteration
            return b
        }
        defer { buffer.deallocate() }
        // Timing data: small integers, refilled every 16 iterations so that sums stay finite.
        let pristine = UnsafeMutableBufferPointer<T>.allocate(capacity: Swift.max(1, maxCount))
        defer { pristine.deallocate() }
        for i in 0..<pristine.count { pristine[i] = value(rank: comm.rank, index: i) }

        // An array, not a dictionary: a shared-memory window is freed collectively when its algorithm goes
        // away, so every rank must release the algorithms in the same order (a dictionary's order differs
        // between processes, and two ranks freeing different windows first would hang).
        if kinds.contains(where: { $0.kind == .hier }) { try comm.agreeing { _ = try HierarchicalAllreduce.fakeNodesFromEnvironment() } }
        let algorithms: [AllreduceAlgorithm] = kinds.map { kind in
            kind.kind == .auto ? AutoAllreduce(comm: comm, policy: givenPolicy) : kind.make(for: comm)
        }
        // Set-up (each algorithm's own duplicate communicator, windows, splits) is collective and untimed;
        // under a deadline, as dml-train's first allreduce, so its waits are the polled ones.
        try comm.watched("the set-up of the algorithms", seconds: 60) { for a in algorithms { try a.prepare() } }
        // Collective when auto picks its default (it sets up the shared window to see where the ranks are).
        let autoAlgorithm = algorithms.first { $0 is AutoAllreduce } as? AutoAllreduce
        let policy = try autoAlgorithm?.resolvedPolicy()

        let memcpy = try memcpyBandwidth(comm, bytes: Swift.max(64 << 20, sizes.max()!))
        if comm.rank == 0 {
            print("# dml-bench allreduce: \(p) rank\(p == 1 ? "" : "s") on \(nodes) node\(nodes == 1 ? "" : "s") (\(cores) cores per node here), "
                  + "\(type == .float ? "float32" : "float64") sum in place")
            if oversubscribed {
                print("# OVERSUBSCRIBED: \(layout.ranksOnNode) ranks share \(cores) cores on a node: timings show correctness, not speed")
            }
            print("# time = median over timed iterations of the slowest rank; algbw = bytes/time; busbw = algbw*2(p-1)/p; GB/s = 1e9 B/s")
            print("# x mpi = busbw / MPI_Allreduce's busbw in this run; warm-up \(warmup), up to \(iters) iterations (at most ~\(maxSeconds) s each point)")
            print(String(format: "# one-core memcpy (rank 0, %@): %.2f GB/s (bytes copied per second) — the physical reference", ByteCount.format(Swift.max(64 << 20, sizes.max()!)), memcpy))
            if nodes > 1 {
                print("# nodes (MPI_COMM_TYPE_SHARED): \(nodeMap.description)"
                      + (nodeMap.agreesWithHostNames ? " (the same as by host name)" : " (NOT the grouping by host name)"))
            }
            if let policy {
                let probe = autoAlgorithm?.probeResult.map { ", chosen by the set-up \($0)" } ?? ""
                print("# auto policy: \(policy)\(probe) (override: --auto or DML_ALLREDUCE_AUTO)")
            }
            if let layout = algorithms.lazy.compactMap({ ($0 as? SharedMemoryAllreduce)?.windowLayout }).first {
                print("# shm window: \(layout)")
            }
            printHeader(kinds)
        }

        var points: [Point] = []
        var totalWrong: Int64 = 0
        var notIdentical: [String] = []
        var strayTaken: [String] = []
        for bytes in sizes {
            let count = bytes / MemoryLayout<T>.stride
            let slice = UnsafeMutableBufferPointer(rebasing: buffer[0..<count])
            var row: [Point] = []
            for (kind, algorithm) in zip(kinds, algorithms) {
                var wrong: Int64? = nil
                if check {
                    for i in 0..<count { slice[i] = pristine[i] }
                    let strays = try StrayMessages(comm)
                    let taken = try comm.watched("the check of \(kind.rawValue) at \(ByteCount.format(bytes))", seconds: 60) { () -> Int64 in
                        try run(algorithm, slice)
                        return try comm.allreduced(try strays.collect(), op: .sum)
                    }
                    if taken > 0 { strayTaken.append("\(kind.rawValue) at \(ByteCount.format(bytes))") }
                    var bad: Int64 = 0
                    for i in 0..<count where slice[i] != expected(ranks: p, index: i) as T { bad += 1 }
                    wrong = try comm.allreduced(bad, op: .sum)
                    totalWrong += wrong!
                    // Bit-identity where rounding matters: inexact values, whose sum depends on the order of
                    // additions, must still come out with the same bits on every rank.
                    for i in 0..<count { slice[i] = T(value(rank: comm.rank, index: i) as T) * T(0.1) + T(comm.rank) / T(3) }
                    try run(algorithm, slice)
                    let hashes = try comm.allgathered(Int64(bitPattern: Checksum.hash(UnsafeRawBufferPointer(slice))))
                    if hashes.contains(where: { $0 != hashes[0] }) { notIdentical.append("\(kind.rawValue) at \(ByteCount.format(bytes))") }
                }
                let seconds = try time(algorithm, slice, comm)
                row.append(Point(kind: kind, bytes: bytes, seconds: seconds, wrong: wrong))
            }
            if comm.rank == 0 { printRow(row, count: count, ranks: p) }
            points += row
        }
        if comm.rank == 0 { printSummary(points, ranks: p, memcpy: memcpy) }

        if let path = csv {
            try comm.agreeing {
                guard comm.rank == 0 else { return }
                let rows = points.map { pt in
                    [pt.kind.rawValue, String(p), String(pt.bytes), String(format: "%.3f", pt.seconds * 1e6),
                     String(format: "%.4f", pt.algbw), String(format: "%.4f", pt.busbw(ranks: p))]
                }
                try BenchOutput.writeCSV(header: Self.csvHeader, rows: rows, to: path)
            }
            if comm.rank == 0 { print("# wrote \(path)") }
        }
        if check {
            let bad = points.filter { ($0.wrong ?? 0) > 0 }.map { "\($0.kind.rawValue) at \(ByteCount.format($0.bytes))" }
            try comm.agree(totalWrong == 0 ? nil : "--check: \(totalWrong) wrong element\(totalWrong == 1 ? "" : "s") (\(bad.joined(separator: ", ")))", kind: .software)
            try comm.agree(notIdentical.isEmpty ? nil : "--check: ranks hold different bits after \(notIdentical.joined(separator: ", ")) on inexact data", kind: .software)
            try comm.agree(nodeMap.agreesWithHostNames ? nil : "--check: the shared-memory node groups (\(nodeMap.description)) are not the groups of ranks with one host name", kind: .software)
            try comm.agree(strayTaken.isEmpty ? nil : "--check: messages of another concern on the world communicator were taken or changed during \(strayTaken.joined(separator: ", "))", kind: .software)
            if comm.rank == 0 {
                print("# check: every result exact (0 wrong) and bit-identical on every rank (also on inexact data); "
                      + "no algorithm took another concern's messages; node groups = host names")
            }
        }
    }

    /// Rank `rank`'s value at `index`: an integer in −30…30, so any sum of up to 2^18 ranks is exact.
    @inline(__always)
    func value<T: BinaryFloatingPoint>(rank: Int, index: Int) -> T {
        T(((index &* 7 &+ rank &* 13) % 61) - 30)
    }

    @inline(__always)
    func expected<T: BinaryFloatingPoint>(ranks p: Int, index: Int) -> T {
        var s = 0
        for q in 0..<p { s += ((index &* 7 &+ q &* 13) % 61) - 30 }
        return T(s)
    }

    /// Median over timed iterations of the slowest rank's time, in seconds.
    func time<T: ReducibleScalar>(_ algorithm: AllreduceAlgorithm, _ slice: UnsafeMutableBufferPointer<T>,
                                  _ comm: MPICommunicator) throws -> Double {
        func one() throws -> Double {
            try comm.barrier()
            let t0 = DispatchTime.now().uptimeNanoseconds
            try run(algorithm, slice)
            return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        }
        var warm = 0.0
        for _ in 0..<warmup { warm = Swift.max(warm, try one()) }
        if warmup == 0 { warm = try one() }
        let slowest = try comm.allreduced(warm, op: .max)
        let n = Swift.max(Swift.min(iters, Int(maxSeconds / Swift.max(slowest, 1e-9))), Swift.min(3, iters))
        var times = [Double](repeating: 0, count: n)
        for k in 0..<n {
            if k % 16 == 15 { try comm.barrier(); resetData(slice, comm.rank) }
            times[k] = try one()
        }
        times = try comm.allreduced(times, op: .max)
        return BenchOutput.median(times)
    }

    func resetData<T: ReducibleScalar>(_ slice: UnsafeMutableBufferPointer<T>, _ rank: Int) {
        if let s = slice as? UnsafeMutableBufferPointer<Float> { for i in 0..<s.count { s[i] = value(rank: rank, index: i) } }
        if let s = slice as? UnsafeMutableBufferPointer<Double> { for i in 0..<s.count { s[i] = value(rank: rank, index: i) } }
    }

    func run<T: ReducibleScalar>(_ algorithm: AllreduceAlgorithm, _ slice: UnsafeMutableBufferPointer<T>) throws {
        if let s = slice as? UnsafeMutableBufferPointer<Float> { try algorithm.run(s, op: .sum) }
        else if let s = slice as? UnsafeMutableBufferPointer<Double> { try algorithm.run(s, op: .sum) }
    }

    /// One core copying `bytes` (rank 0 alone, the others wait): bytes copied per second, median of 5, in GB/s.
    func memcpyBandwidth(_ comm: MPICommunicator, bytes: Int) throws -> Double {
        var rate = 0.0
        try comm.agreeing {
            guard comm.rank == 0 else { return }
            let a = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            let b = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            defer { a.deallocate(); b.deallocate() }
            memset(a, 1, bytes)
            memset(b, 2, bytes)
            var times: [Double] = []
            for _ in 0..<5 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                memcpy(b, a, bytes)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
            }
            rate = Double(bytes) / times.sorted()[2] / 1e9
        }
        return try comm.allreduced(rate, op: .max)
    }

    // MARK: the table

    func printHeader(_ kinds: [BenchKind]) {
        var top = "#" + String(repeating: " ", count: 28)
        var sub = "#" + BenchOutput.pad("size", 9) + BenchOutput.pad("count", 12) + BenchOutput.pad("type", 7)
        for k in kinds {
            let w = k == .mpi ? 26 : (check ? 40 : 33)
            top += "|" + BenchOutput.center(k.rawValue, w)
            sub += "|" + BenchOutput.pad("time_us", 11) + BenchOutput.pad("algbw", 7) + BenchOutput.pad("busbw", 7) + (k == .mpi ? "" : BenchOutput.pad("x mpi", 7)) + (check ? BenchOutput.pad("#wrong", 7) : "") + " "
            if k == .mpi && check { top += String(repeating: " ", count: 7); }
        }
        print(top)
        print(sub)
    }

    func printRow(_ row: [Point], count: Int, ranks p: Int) {
        let mpi = row.first { $0.kind == .mpi }!.busbw(ranks: p)
        var line = " " + BenchOutput.pad(ByteCount.format(row[0].bytes), 9) + BenchOutput.pad(String(count), 12) + BenchOutput.pad(type.rawValue, 7)
        for pt in row {
            line += "|" + BenchOutput.pad(String(format: "%.1f", pt.seconds * 1e6), 11) + BenchOutput.pad(String(format: "%.2f", pt.algbw), 7)
                + BenchOutput.pad(String(format: "%.2f", pt.busbw(ranks: p)), 7)
            if pt.kind != .mpi { line += BenchOutput.pad(String(format: "%.2f", pt.busbw(ranks: p) / mpi), 7) }
            if let w = pt.wrong { line += BenchOutput.pad(String(w), 7) }
            line += " "
        }
        print(line)
        fflush(nil)
    }

    func printSummary(_ points: [Point], ranks p: Int, memcpy: Double) {
        guard p > 1 else { return }
        print("# best per size (busbw GB/s, x mpi, x one-core memcpy):")
        for bytes in Set(points.map(\.bytes)).sorted() {
            let row = points.filter { $0.bytes == bytes }
            let mpi = row.first { $0.kind == .mpi }!.busbw(ranks: p)
            let best = row.max { $0.busbw(ranks: p) < $1.busbw(ranks: p) }!
            let bb = best.busbw(ranks: p)
            print(String(format: "#   %@: %@ %.2f GB/s, %.2fx mpi, %.2fx memcpy", BenchOutput.pad(ByteCount.format(bytes), 5), best.kind.rawValue, bb, bb / mpi, bb / memcpy))
        }
    }
}

/// Messages of another concern, in flight on the world communicator while an algorithm runs under `--check`:
/// one 8-byte message from every rank to every other rank with each tag the algorithms use on their own
/// communicators (the ring's step numbers 0 … 2(p−1)−1, rd's 0, 1 and 2, central's 0), sent before the
/// algorithm's call and received after it. An algorithm talking on the world communicator would take one
/// (its data wrong, or a truncation error); one on its own duplicate never can. Cost: `2(p−1)·(p−1)` tiny
/// messages per rank and check, untimed.
final class StrayMessages {
    let comm: Communicator
    let tags: Range<Int>
    let peers: [Int]
    private let outgoing: UnsafeMutableBufferPointer<Int64>
    private var sends: [CommRequest] = []

    /// Sends them (non-blocking; they wait, unmatched, until `collect`).
    init(_ comm: Communicator) throws {
        self.comm = comm
        tags = 0 ..< Swift.max(3, 2 * (comm.size - 1))
        peers = (0..<comm.size).filter { $0 != comm.rank }
        outgoing = .allocate(capacity: Swift.max(1, peers.count * tags.count))
        for (i, q) in peers.enumerated() {
            for tag in tags {
                let k = i * tags.count + tag
                outgoing[k] = Self.value(from: comm.rank, to: q, tag: tag)
                sends.append(try comm.isend(UnsafeRawBufferPointer(start: outgoing.baseAddress! + k, count: 8), to: q, tag: tag))
            }
        }
    }

    deinit { outgoing.deallocate() }

    static func value(from: Int, to: Int, tag: Int) -> Int64 { 0x5EED << 40 | Int64(from) << 24 | Int64(to) << 8 | Int64(tag) }

    /// Receives them: how many did not arrive as sent.
    func collect() throws -> Int64 {
        let incoming = UnsafeMutableBufferPointer<Int64>.allocate(capacity: Swift.max(1, peers.count * tags.count))
        defer { incoming.deallocate() }
        incoming.initialize(repeating: -1)
        var receives: [CommRequest] = []
        for (i, q) in peers.enumerated() {
            for tag in tags {
                receives.append(try comm.irecv(UnsafeMutableRawBufferPointer(start: incoming.baseAddress! + i * tags.count + tag, count: 8), from: q, tag: tag))
            }
        }
        try comm.waitAll(&receives)
        try comm.waitAll(&sends)
        var wrong: Int64 = 0
        for (i, q) in peers.enumerated() {
            for tag in tags where incoming[i * tags.count + tag] != Self.value(from: q, to: comm.rank, tag: tag) { wrong += 1 }
        }
        return wrong
    }
}

/// An algorithm `dml-bench allreduce` times: one of `AllreduceKind`, or the compressed ring (`ring-fp16`,
/// `ring-bf16`). On the benchmark's integer data (|sum| ≤ 30·p) the compressed ring is exact up to p = 8
/// ranks (bf16 holds integers up to 256 exactly), so `--check` applies to it unchanged there.
struct BenchKind: Equatable {
    let rawValue: String
    let kind: AllreduceKind?
    let format: WireFormat?

    static let mpi = BenchKind(rawValue: "mpi", kind: .mpi, format: nil)
    static var names: [String] { AllreduceKind.allCases.map(\.rawValue) + WireFormat.allCases.map { "ring-\($0.rawValue)" } }

    private init(rawValue: String, kind: AllreduceKind?, format: WireFormat?) {
        self.rawValue = rawValue
        self.kind = kind
        self.format = format
    }

    init?(rawValue: String) {
        if let k = AllreduceKind(rawValue: rawValue) { self.init(rawValue: rawValue, kind: k, format: nil); return }
        guard rawValue.hasPrefix("ring-"), let f = WireFormat(rawValue: String(rawValue.dropFirst(5))) else { return nil }
        self.init(rawValue: rawValue, kind: nil, format: f)
    }

    func make(for comm: Communicator) -> AllreduceAlgorithm {
        if let f = format { return CompressedRingAllreduce(comm: comm, format: f) }
        return kind!.make(for: comm)
    }
}
