import ArgumentParser
import DMLComm
import DMLModels
import DMLTraining
import Foundation

/// `dml-bench allreduce --sparse`: the sparse allreduce against the dense ring and `MPI_Allreduce` of the
/// whole vector, over a sweep of densities, in one run (nccl-tests style: the slowest rank's time, median over
/// the timed iterations); then one training step's reduction and update with synthetic touched sets (rows ×
/// power-law columns per rank, a logistic model's 2^k + 1 parameters): the sparse reducer with the indexed SGD
/// update against the flat reducer over the ring with the dense update.
extension AllreduceBenchmark {
    /// Elements of the sparse vector (`--dimension`, 1024-based K/M/G).
    func sparseDimension() throws -> Int {
        guard let n = ByteCount.parse(dimension ?? "4M"), n > 0, n <= Int(Int32.max) - 2 else {
            throw ValidationError("--dimension: '\(dimension ?? "")' is not a count of elements between 1 and 2^31 − 3 (e.g. 4M)")
        }
        return n
    }

    /// Densities in percent (`--densities`).
    func densityList() throws -> [Double] {
        guard let parts = CommaList.items(densities ?? "0.01,0.1,0.5,1,2,5,10,20,50") else {
            throw ValidationError("--densities: give percentages separated by commas, e.g. 0.01,1,50")
        }
        return try parts.map { part in
            guard let d = Double(part), d > 0, d <= 100 else { throw ValidationError("--densities: '\(part)' is not a percentage in (0, 100]") }
            return d
        }
    }

    func validateSparse() throws {
        guard sparse else {
            for (flag, given) in [("--dimension", dimension != nil), ("--densities", densities != nil), ("--step-rows", stepRows != nil),
                                  ("--nnz-per-row", nnzPerRow != nil)] where given {
                throw ValidationError("\(flag) belongs to the sparse mode: add --sparse")
            }
            return
        }
        for (flag, given) in [("--sizes", sizes != nil), ("--algorithms", algorithms != nil), ("--auto", auto != nil),
                              ("--factor", factor != nil), ("--type double", type == .double)] where given {
            throw ValidationError("--sparse times the sparse allreduce, the ring and MPI_Allreduce on Float32 vectors of --dimension elements: \(flag) does not apply")
        }
        _ = try sparseDimension()
        _ = try densityList()
        guard (stepRows ?? 512) >= 0, (nnzPerRow ?? 40) >= 1 else { throw ValidationError("--step-rows must be 0 or more and --nnz-per-row at least 1") }
    }

    struct SparsePoint {
        let density: Double
        let nnz: Int
        let union: Int
        let sparse: Double
        let ring: Double
        let mpi: Double
        let wrong: Int64?
    }

    func sparseBenchmark(_ comm: MPICommunicator) throws {
        let p = comm.size, n = try sparseDimension(), densities = try densityList()
        if let path = csv {
            try comm.agreeing { if comm.rank == 0 { do { try AtomicFile.checkWritable(path) } catch { throw BenchError("--csv: \(error)", cause: error) } } }
        }
        let sparseAlgorithm = SparseAllreduce(comm: comm), ring = RingAllreduce(comm: comm), mpi = NativeAllreduce(comm: comm)
        try comm.watched("the set-up of the algorithms", seconds: 60) { for a in [sparseAlgorithm, ring, mpi] as [AllreduceAlgorithm] { try a.prepare() } }
        let dense = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
        defer { dense.deallocate() }
        dense.initialize(repeating: 0)
        if comm.rank == 0 {
            print("# dml-bench allreduce --sparse: \(p) rank\(p == 1 ? "" : "s"), float32 sum of a vector of \(n) elements (\(ByteCount.format(4 * n)) dense)")
            print("# each rank holds density·n random positions (Bernoulli per position, seeded by rank: overlaps as chance gives);")
            print("# sparse = SparseAllreduce of (position, value) pairs → union; ring, mpi = the dense vector. time = median of the slowest rank")
            print("#" + BenchOutput.pad("density%", 9) + BenchOutput.pad("nnz/rank", 10) + BenchOutput.pad("union", 10) + BenchOutput.pad("union%", 8)
                  + "|" + BenchOutput.pad("sparse_us", 11) + BenchOutput.pad("wireMB", 8) + "|" + BenchOutput.pad("ring_us", 11) + "|" + BenchOutput.pad("mpi_us", 11)
                  + "|" + BenchOutput.pad("x ring", 8) + BenchOutput.pad("x mpi", 8) + (check ? BenchOutput.pad("#wrong", 7) : ""))
        }
        var points: [SparsePoint] = []
        for density in densities {
            // This rank's positions and values: small integers, so every sum is exact (--check).
            var indices: [Int32] = [], values: [Float] = []
            let threshold = UInt64(density / 100 * Double(UInt64.max >> 11)) << 11
            for i in 0..<n where mix(UInt64(i) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(comm.rank + 1) &* 0xD1B5_4A32_D192_ED03) < threshold {
                indices.append(Int32(i))
                values.append(Float((i &* 7 &+ comm.rank &* 13) % 61 - 30))
            }
            let nnz = try comm.allreduced(Int64(indices.count), op: .max)
            var union = 0
            var wrong: Int64? = nil
            let timeSparse = try indices.withUnsafeBufferPointer { i in
                try values.withUnsafeBufferPointer { v in
                    let entries = SparseEntries(indices: i, values: v)
                    if check {
                        // Against the dense sum of the same vectors (MPI_Allreduce; exact on integers).
                        for k in 0..<n { dense[k] = 0 }
                        for k in 0..<i.count { dense[Int(i[k])] = v[k] }
                        try comm.watched("the check", seconds: 60) { try mpi.run(dense, op: .sum) }
                        let out = try comm.watched("the check", seconds: 60) { try sparseAlgorithm.run(entries, dimension: n, op: .sum) }
                        var bad: Int64 = 0, listed = 0
                        for k in 0..<out.count where dense[Int(out.indices[k])] != out.values[k] { bad += 1 }
                        for k in 0..<n where dense[k] != 0 { listed += 1 }  // every non-zero sum must be in the union
                        if listed > out.count { bad += Int64(listed - out.count) }
                        wrong = try comm.allreduced(bad, op: .sum)
                    }
                    return try timed(comm) { union = try sparseAlgorithm.run(entries, dimension: n, op: .sum).count }
                }
            }
            let point = SparsePoint(density: density, nnz: Int(nnz), union: union, sparse: timeSparse,
                                    ring: try time(ring, dense, comm), mpi: try time(mpi, dense, comm), wrong: wrong)
            points.append(point)
            if comm.rank == 0 {
                // Bytes one rank sends: 8 per entry of its group's union at each exchange (bounded by the union).
                let wire = Double(8 * union * SparseSelection.exchanges(ranks: p)) / 1e6
                print(" " + BenchOutput.pad(String(format: "%.3g", density), 9) + BenchOutput.pad(String(nnz), 10) + BenchOutput.pad(String(union), 10)
                      + BenchOutput.pad(String(format: "%.3g", 100 * Double(union) / Double(n)), 8)
                      + "|" + BenchOutput.pad(String(format: "%.1f", timeSparse * 1e6), 11) + BenchOutput.pad(String(format: "%.2f", p > 1 ? wire : 0), 8)
                      + "|" + BenchOutput.pad(String(format: "%.1f", point.ring * 1e6), 11) + "|" + BenchOutput.pad(String(format: "%.1f", point.mpi * 1e6), 11)
                      + "|" + BenchOutput.pad(String(format: "%.2f", point.ring / timeSparse), 8) + BenchOutput.pad(String(format: "%.2f", point.mpi / timeSparse), 8)
                      + (wrong.map { BenchOutput.pad(String($0), 7) } ?? ""))
                fflush(nil)
            }
        }
        if comm.rank == 0 {
            let crossing = points.first { $0.sparse >= $0.ring }
            print("# x ring, x mpi = the dense algorithm's time / sparse's (above 1: sparse is faster); "
                  + (crossing.map { String(format: "the ring is as fast from %.3g%% (union %.3g%%)", $0.density, 100 * Double($0.union) / Double(n)) }
                     ?? "sparse was faster at every density measured"))
        }
        let steps = try stepBenchmark(comm, dimension: n)
        if let path = csv {
            try comm.agreeing {
                guard comm.rank == 0 else { return }
                var rows = points.map { pt in
                    ["sweep", String(p), String(n), String(format: "%g", pt.density), String(pt.nnz), String(pt.union),
                     String(format: "%.3f", pt.sparse * 1e6), String(format: "%.3f", pt.ring * 1e6), String(format: "%.3f", pt.mpi * 1e6)]
                }
                if let s = steps {
                    rows.append(["step", String(p), String(n), String(format: "%g", s.density), String(s.nnz), String(s.union),
                                 String(format: "%.3f", s.sparse * 1e6), String(format: "%.3f", s.ring * 1e6), ""])
                }
                try BenchOutput.writeCSV(header: ["kind", "np", "dimension", "density_pct", "nnz_per_rank", "union", "sparse_us", "ring_us", "mpi_us"],
                                         rows: rows, to: path)
            }
            if comm.rank == 0 { print("# wrote \(path)") }
        }
        if check {
            let bad = points.reduce(Int64(0)) { $0 + ($1.wrong ?? 0) }
            try comm.agree(bad == 0 ? nil : "--check: \(bad) wrong or missing element\(bad == 1 ? "" : "s") in the sparse allreduce", kind: .software)
            if comm.rank == 0 { print("# check: every sparse result equals MPI_Allreduce's dense sum, and the union holds every non-zero sum") }
        }
    }

    /// One training step's reduction and update, sparse against dense, with synthetic touched sets: each rank
    /// `--step-rows` rows of `--nnz-per-row` columns drawn from a power law (column k's weight ∝ 1/k, hashed
    /// to a position) of a logistic model over `dimension` features. Timed: `begin` (re-zeroing), `touched`,
    /// `finish` (the allreduce and the mean) and the SGD update; not timed: writing the gradient values (the
    /// kernels' part). nil when `--step-rows 0`.
    func stepBenchmark(_ comm: MPICommunicator, dimension n: Int) throws -> SparsePoint? {
        let rows = stepRows ?? 512, perRow = nnzPerRow ?? 40
        guard rows > 0 else { return nil }
        let model = LogisticRegression(features: n)
        let count = model.layout.count
        // The reducer's sparse allreduce is timed on its own too: the communication inside the step.
        let inside = TimedSparseAllreduce(SparseAllreduce(comm: comm))
        let sparseReducer = ReducerKind.sparse(auto: nil).make(comm: comm, model: model, hook: .plain(inside),
                                                                collectiveTimeout: 60, note: { _ in })
        let flatReducer = ReducerKind.flat.make(comm: comm, model: model, hook: .plain(RingAllreduce(comm: comm)), collectiveTimeout: 60, note: { _ in })
        let optimizer = Optimizer(OptimizerConfig(), layout: model.layout)
        var w = [Float](repeating: 0, count: count)
        // Eight batches per rank, cycled: each the sorted union of its columns mapped to gradient coordinates.
        var rng = SplitMix(seed: UInt64(comm.rank) &* 7919 &+ 17)
        let batches: [[Int32]] = (0..<8).map { _ in
            var columns = Set<Int32>()
            for _ in 0..<(rows * perRow) {
                let k = Foundation.exp(Double(rng.next() >> 11) / Double(1 << 53) * Foundation.log(Double(n)))  // ∝ 1/k on 1…n
                columns.insert(Int32(mix(UInt64(k)) % UInt64(n)))
            }
            let sorted = columns.sorted()
            return sorted.withUnsafeBufferPointer { model.gradientCoordinates(touchingColumns: $0) }
        }
        let touched = try comm.allreduced(Int64(batches.map(\.count).reduce(0, +) / batches.count), op: .max)
        func step(_ reducer: GradientReducer, _ k: Int, sparse: Bool) throws -> Double {
            let coords = batches[k % batches.count]
            try comm.barrier()
            var t0 = DispatchTime.now().uptimeNanoseconds
            let group = reducer.begin(step: k + 1, holding: 0..<1) { _ in [0] }[0]
            var elapsed = DispatchTime.now().uptimeNanoseconds - t0
            for (j, c) in coords.enumerated() { group.buffer[Int(c)] = Float(j % 7) * 0.25 - 0.5 }  // the kernels' part: untimed
            group.buffer[count] = 1
            group.buffer[count + 1] = Float(rows)
            t0 = DispatchTime.now().uptimeNanoseconds
            if sparse { reducer.touched(coords) }
            let g = try comm.watched("the step benchmark", seconds: 60) { try reducer.finish(step: k + 1, globalRows: rows * comm.size) {} }
            w.withUnsafeMutableBufferPointer { wp in
                if sparse, let support = reducer.reducedSupport {
                    optimizer.step(parameters: wp.baseAddress!, gradient: g.baseAddress!, at: support, t: k + 1, learningRate: 0.1)
                } else {
                    optimizer.step(parameters: wp.baseAddress!, gradient: g.baseAddress!, t: k + 1, learningRate: 0.1)
                }
            }
            elapsed += DispatchTime.now().uptimeNanoseconds - t0
            return Double(elapsed) * 1e-9
        }
        var insideTimes: [Double] = []
        func median(_ reducer: GradientReducer, sparse: Bool) throws -> Double {
            for k in 0..<Swift.max(1, warmup) { _ = try step(reducer, k, sparse: sparse) }
            var times: [Double] = []
            for k in 0..<Swift.max(3, iters) {
                let before = inside.seconds
                times.append(try step(reducer, k, sparse: sparse))
                if sparse { insideTimes.append(inside.seconds - before) }
            }
            return BenchOutput.median(try comm.allreduced(times, op: .max))
        }
        let tSparse = try median(sparseReducer, sparse: true)
        let tInside = BenchOutput.median(try comm.allreduced(insideTimes, op: .max))
        let union = sparseReducer.reducedSupport?.count ?? 0
        let tDense = try median(flatReducer, sparse: false)
        if comm.rank == 0 {
            print("# one step's reduction + SGD update, logistic model of \(count) parameters, each rank \(rows) rows × \(perRow) power-law columns "
                  + "(\(touched) coordinates touched per rank, union of the last step \(union)); not timed: writing the gradient values")
            print(String(format: "#   sparse reducer + indexed update: %.1f µs (of which inside the sparse allreduce: %.1f µs);  flat reducer (ring) + dense update: %.1f µs;  %.1fx",
                         tSparse * 1e6, tInside * 1e6, tDense * 1e6, tDense / tSparse))
        }
        return SparsePoint(density: 100 * Double(touched) / Double(count), nnz: Int(touched), union: union, sparse: tSparse, ring: tDense, mpi: 0, wrong: nil)
    }

    /// Median over timed iterations of the slowest rank's time of `body`, in seconds (as `time`).
    func timed(_ comm: MPICommunicator, _ body: () throws -> Void) throws -> Double {
        func one() throws -> Double {
            try comm.barrier()
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        }
        var warm = 0.0
        for _ in 0..<Swift.max(1, warmup) { warm = Swift.max(warm, try one()) }
        let slowest = try comm.allreduced(warm, op: .max)
        let n = Swift.max(Swift.min(iters, Int(maxSeconds / Swift.max(slowest, 1e-9))), Swift.min(3, iters))
        var times = [Double](repeating: 0, count: n)
        for k in 0..<n { times[k] = try one() }
        return BenchOutput.median(try comm.allreduced(times, op: .max))
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash.
@inline(__always)
func mix(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// SplitMix64 (the benchmark's own seeded generator).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 1
        return mix(state)
    }
}
