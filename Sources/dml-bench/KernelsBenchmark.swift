import ArgumentParser
import DMLComm
import DMLKernels
import Foundation

/// `dml-bench kernels`: GFLOP/s of gemm (square sizes and the shapes of an MLP step) and GB/s of the
/// memory-bound kernels (gemv, dot, axpy) in and out of cache, each next to a naive scalar loop measured in
/// the same run. One thread unless --threads. Each figure is the best of `--repeats` timed runs, each run repeating the
/// kernel for at least `--min-time` seconds (the same method as benchmarks/openblas_gemm.py).
struct Kernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Kernel throughput (one thread, or --threads T): gemm GFLOP/s, gemv/dot/axpy GB/s, against naive loops.")

    @Option(help: "Square gemm sizes, comma-separated.")
    var sizes: String = "128,256,512,1024,2048"

    @Option(name: .customLong("naive-max"), help: "Largest n at which the naive gemm loop is also timed (it is slow).")
    var naiveMax: Int = 512

    @Option(help: "Timed runs per figure (the best is reported).")
    var repeats: Int = 5

    @Option(name: .customLong("min-time"), help: "Seconds each timed run lasts at least.")
    var minTime: Double = 0.05

    @Option(help: "Write the results as CSV (kernel,n,gflops,GBps) to this file.")
    var csv: String?

    @Option(name: .customLong("sparse-data"),
            help: "Measure only the sparse rows' products (CSR × dense forward, Xᵀ·G into the touched columns) on this LIBSVM file's rows, in non-zeros/s.")
    var sparseData: String?

    @Option(name: .customLong("sparse-outputs"), help: "With --sparse-data: the widths k of W (features × k) and G (rows × k), comma-separated.")
    var sparseOutputs: String = "1,16"

    @Option(help: "Kernel threads (dml-train --threads): gemms of at least 1 MFLOP and long passes are split among them.")
    var threads: Int = 1

    @Flag(name: .customLong("list-isas"), help: "Print the kernels' ISAs this CPU supports (one a line, from the baseline up: the default is the last) and exit.")
    var listISAs = false

    func validate() throws {
        guard parsedSizes != nil else { throw ValidationError("--sizes must be positive integers separated by commas (got '\(sizes)')") }
        guard repeats > 0 else { throw ValidationError("--repeats must be at least 1") }
        if let why = KernelThreads.problem(threads) { throw ValidationError("--threads " + why) }
        guard minTime > 0 && minTime.isFinite else { throw ValidationError("--min-time must be positive") }
        if let c = csv, c.isEmpty { throw ValidationError("--csv must name a file") }
        guard CommaList.positiveIntegers(sparseOutputs) != nil else {
            throw ValidationError("--sparse-outputs must be positive integers separated by commas (got '\(sparseOutputs)')")
        }
        if sparseData == nil && sparseOutputs != "1,16" { throw ValidationError("--sparse-outputs needs --sparse-data") }
    }

    var parsedSizes: [Int]? {
        CommaList.positiveIntegers(sizes)
    }

    struct Row {
        let kernel: String
        let n: Int
        let gflops: Double?
        let gbps: Double?
    }

    /// Best seconds per call of `body` over `repeats` runs of at least `minTime` each.
    func time(_ body: () -> Void) -> Double {
        body()
        var best = Double.infinity
        for _ in 0..<repeats {
            var calls = 0
            let start = DispatchTime.now().uptimeNanoseconds
            var elapsed = 0.0
            repeat {
                body()
                calls += 1
                elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            } while elapsed < minTime
            best = Swift.min(best, elapsed / Double(calls))
        }
        return best
    }

    func run() throws {
        if listISAs {
            for isa in KernelDispatch.supported { print(isa.rawValue) }
            return
        }
        do { try KernelThreads.use(threads) } catch { throw ValidationError("\(error)") }
        var rows: [Row] = []
        // The ceiling of every GFLOP/s figure below: one thread's FMA peak with the active ISA, measured now.
        let peak = KernelDispatch.fmaPeak()
        func report(_ r: Row) {
            rows.append(r)
            let value = r.gflops.map { String(format: "%9.2f GFLOP/s (%3.0f%% of peak)", $0, 100 * $0 / peak) }
                ?? String(format: "%9.2f GB/s", r.gbps!)
            let name = r.kernel.padding(toLength: Swift.max(34, r.kernel.count), withPad: " ", startingAt: 0)
            print(name + String(format: " %7d ", r.n) + value)
            fflush(nil)
        }
        print("dml-bench kernels: \(threads == 1 ? "one thread" : "\(threads) kernel threads (--threads)"); best of \(repeats) runs of ≥ \(minTime) s")
        if threads > 1 {
            let (split, alone) = KernelThreads.handOffSeconds()
            print(String(format: "hand-off: %.2f µs per parallel call (2·T units of FMA chains: %.2f µs split, %.2f µs on one thread); ",
                         (split - alone / Double(threads)) * 1e6, split * 1e6, alone * 1e6)
                  + "the FMA peak below is one thread's, the gemm figures use all \(threads)")
        }
        print("cpu: \(cpuModel()); kernels: \(KernelDispatch.isa.rawValue) (supported here: "
              + KernelDispatch.supported.map(\.rawValue).joined(separator: ", ") + "; DML_KERNELS_ISA chooses)")
        print("cpu family \(cpuField("cpu family")) model \(cpuField("model")); flags: \(cpuFlags())")
        print(String(format: "FMA peak: %.1f GFLOP/s (one thread, %@ kernels: 12 independent FMA chains, best of 50 × 4 ms); ", peak,
                     KernelDispatch.isa.rawValue) + "each GFLOP/s figure below also as a fraction of it")
        print("gemm blocks: mc \(Gemm.mc) × kc \(Gemm.kc) × nc \(Gemm.nc), micro-tile \(Gemm.mr) × \(Gemm.nr) "
              + "(mc, nc from this CPU's caches: \(CacheSizes.current); kc fixed, it is part of the bits)")
        if let note = KernelDispatch.overrideNote { print("note: \(note)") }
        rows.append(Row(kernel: "fma_peak", n: 0, gflops: peak, gbps: nil))
        if let path = sparseData {
            try sparseRows(path, outputs: CommaList.positiveIntegers(sparseOutputs)!, report: report)
            return try writeCSV(rows)
        }

        // gemm, square.
        for n in parsedSizes! {
            let a = randomBuffer(n * n, seed: 1), b = randomBuffer(n * n, seed: 2)
            let c = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
            defer { a.deallocate(); b.deallocate(); c.deallocate() }
            let flops = 2 * Double(n) * Double(n) * Double(n)
            let t = time { Gemm.gemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a, lda: n, b: b, ldb: n, beta: 0, c: c, ldc: n) }
            report(Row(kernel: "gemm", n: n, gflops: flops / t / 1e9, gbps: nil))
            if n <= naiveMax {
                let tn = time { naiveGemm(n, a, b, c) }
                report(Row(kernel: "gemm_naive", n: n, gflops: flops / tn / 1e9, gbps: nil))
            }
        }

        // The gemms of one step of a 784→256→10 MLP on a batch of 256 (forward, then backward).
        let batch = 256, d = 784, h = 256, k = 10
        let shapes: [(String, Bool, Bool, Int, Int, Int)] = [
            ("mlp_fwd1_NT", false, true, batch, h, d),    // Z1 = X·W1ᵀ
            ("mlp_fwd2_NT", false, true, batch, k, h),    // Z2 = H·W2ᵀ
            ("mlp_dW2_TN", true, false, k, h, batch),     // dW2 = dZ2ᵀ·H
            ("mlp_dH_NN", false, false, batch, h, k),     // dH = dZ2·W2
            ("mlp_dW1_TN", true, false, h, d, batch),     // dW1 = dZ1ᵀ·X
        ]
        /// Times one gemm shape on random operands and reports it; returns its flops and seconds.
        func timeShape(_ name: String, _ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ kk: Int) -> (flops: Double, seconds: Double) {
            let a = randomBuffer(m * kk, seed: 3), b = randomBuffer(kk * n, seed: 4)
            let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
            defer { a.deallocate(); b.deallocate(); c.deallocate() }
            let flops = 2 * Double(m) * Double(n) * Double(kk)
            let t = time { Gemm.gemm(transA: ta, transB: tb, m: m, n: n, k: kk, alpha: 1, a: a, lda: ta ? m : kk,
                                     b: b, ldb: tb ? kk : n, beta: 0, c: c, ldc: n) }
            report(Row(kernel: "\(name)_m\(m)_n\(n)_k\(kk)", n: n, gflops: flops / t / 1e9, gbps: nil))
            return (flops, t)
        }
        var stepFlops = 0.0, stepTime = 0.0
        for (name, ta, tb, m, n, kk) in shapes {
            let (flops, t) = timeShape(name, ta, tb, m, n, kk)
            stepFlops += flops
            stepTime += t
        }
        report(Row(kernel: "mlp_step_all_gemms", n: batch, gflops: stepFlops / stepTime / 1e9, gbps: nil))

        // The two gemms of a softmax-regression step (784 → 10): the few-class shapes (Gemm+Skinny.swift).
        _ = timeShape("softmax_fwd_NT", false, true, batch, k, d)   // Z = X·Wᵀ
        _ = timeShape("softmax_dW_TN", true, false, k, d, batch)    // dW = Dᵀ·X

        // A full batch on one rank: the gradient's sums over `tall` rows (the softmax and MLP output layer's
        // dW, the logistic/linear gemvT, a bias gradient's column sums). Memory-bound: GB/s of X read once.
        let tall = 30_000
        _ = timeShape("full_batch_softmax_dW_TN", true, false, k, d, tall)
        do {
            let a = randomBuffer(tall * d, seed: 9), x = randomBuffer(tall, seed: 10)
            let y = UnsafeMutablePointer<Float>.allocate(capacity: d)
            defer { a.deallocate(); x.deallocate(); y.deallocate() }
            let t = time { Gemm.gemvT(m: tall, n: d, alpha: 1, a: a, lda: d, x: x, beta: 0, y: y) }
            report(Row(kernel: "full_batch_gemvT_m\(tall)", n: d, gflops: nil, gbps: Double(tall * d * 4) / t / 1e9))
            for cols in [k, h] {
                let tc = time { Gemm.columnSums(m: tall, n: cols, a: a, lda: cols, beta: 0, y: y) }
                report(Row(kernel: "full_batch_column_sums_m\(tall)", n: cols, gflops: nil, gbps: Double(tall * cols * 4) / tc / 1e9))
            }
        }

        // Element-wise kernels of an MLP step on its hidden activations (256 rows × 256: 256 KiB, in L2), and the
        // softmax of a batch of logits (256 × 10). GB/s of the buffers read and written. Repeating a kernel on its
        // own output costs the same as on fresh input: every lane computes every branch (selects, no jumps).
        do {
            let n = 256 * 256
            let src = randomBuffer(n, seed: 11), x = randomBuffer(n, seed: 12), y = randomBuffer(n, seed: 13)
            defer { src.deallocate(); x.deallocate(); y.deallocate() }
            let rw = Double(8 * n), rrw = Double(12 * n)
            report(Row(kernel: "relu", n: n, gflops: nil, gbps: rw / time { Activation.relu(x, n) } / 1e9))
            report(Row(kernel: "relu_backward", n: n, gflops: nil, gbps: rrw / time { Activation.reluBackward(x, src, n) } / 1e9))
            report(Row(kernel: "tanh", n: n, gflops: nil, gbps: rw / time { Activation.tanh(x, n) } / 1e9))
            report(Row(kernel: "tanh_backward", n: n, gflops: nil, gbps: rrw / time { Activation.tanhBackward(x, y, n) } / 1e9))
            report(Row(kernel: "sigmoid", n: n, gflops: nil, gbps: rw / time { Activation.sigmoid(x, n) } / 1e9))
            report(Row(kernel: "scale", n: n, gflops: nil, gbps: rw / time { Vector.scale(0.999_99, x, n) } / 1e9))
            report(Row(kernel: "softmax_rows_256x10", n: 10, gflops: nil,
                       gbps: Double(8 * 2560) / time { Softmax.rows(x, rows: 256, cols: 10, ld: 10) } / 1e9))
        }

        // gemv: bytes = the matrix read once. 512² = 1 MiB (in L2), 4096² = 64 MiB (out of cache).
        for n in [512, 4096] {
            let a = randomBuffer(n * n, seed: 5), x = randomBuffer(n, seed: 6)
            let y = UnsafeMutablePointer<Float>.allocate(capacity: n)
            defer { a.deallocate(); x.deallocate(); y.deallocate() }
            let bytes = Double(n * n * 4)
            let t = time { Gemm.gemv(m: n, n: n, alpha: 1, a: a, lda: n, x: x, beta: 0, y: y) }
            report(Row(kernel: "gemv", n: n, gflops: nil, gbps: bytes / t / 1e9))
            let tt = time { Gemm.gemvT(m: n, n: n, alpha: 1, a: a, lda: n, x: x, beta: 0, y: y) }
            report(Row(kernel: "gemvT", n: n, gflops: nil, gbps: bytes / tt / 1e9))
            let tn = time { naiveGemv(n, a, x, y) }
            report(Row(kernel: "gemv_naive", n: n, gflops: nil, gbps: bytes / tn / 1e9))
        }

        // Level 1: 4096 floats (32 KiB for two vectors: L1/L2) and 16 Mi floats (64 MiB each: memory).
        for n in [4096, 1 << 24] {
            let x = randomBuffer(n, seed: 7), y = randomBuffer(n, seed: 8)
            defer { x.deallocate(); y.deallocate() }
            var sink: Float = 0
            let dotBytes = Double(8 * n), axpyBytes = Double(12 * n)
            report(Row(kernel: "dot", n: n, gflops: nil, gbps: dotBytes / time { sink += Vector.dot(x, y, n) } / 1e9))
            report(Row(kernel: "dot_naive", n: n, gflops: nil, gbps: dotBytes / time { sink += naiveDot(x, y, n) } / 1e9))
            report(Row(kernel: "axpy", n: n, gflops: nil, gbps: axpyBytes / time { Vector.axpy(1e-7, x, y, n) } / 1e9))
            report(Row(kernel: "axpy_naive", n: n, gflops: nil, gbps: axpyBytes / time { naiveAxpy(1e-7, x, y, n) } / 1e9))
            // The machine's bandwidth as one core sees it: a read-only stream, and memcpy (read + write).
            report(Row(kernel: "stream_sum", n: n, gflops: nil, gbps: Double(4 * n) / time { sink += Vector.sum(x, n) } / 1e9))
            report(Row(kernel: "memcpy", n: n, gflops: nil, gbps: Double(8 * n) / time { y.update(from: x, count: n) } / 1e9))
            // The digest of checkpoints and replica checks (XXH3-64), read-only like stream_sum.
            var digest: UInt64 = 0
            report(Row(kernel: "checksum", n: n, gflops: nil,
                       gbps: Double(4 * n) / time { digest ^= Checksum.hash(UnsafeRawBufferPointer(start: x, count: 4 * n)) } / 1e9))
            if sink == 42 || digest == 42 { print("") }  // keeps the reductions alive
        }

        try writeCSV(rows)
    }

    private func writeCSV(_ rows: [Row]) throws {
        if let path = csv {
            let table = rows.map { r in
                [r.kernel, String(r.n), r.gflops.map { String(format: "%.3f", $0) } ?? "", r.gbps.map { String(format: "%.3f", $0) } ?? ""]
            }
            try BenchOutput.writeCSV(header: ["kernel", "n", "gflops", "GBps"], rows: table, to: path)
            print("wrote \(path)")
        }
    }
}

/// The CPU's model name (/proc/cpuinfo), or "unknown".
private func cpuModel() -> String {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
          let colon = line.firstIndex(of: ":") else { return "unknown" }
    return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
}

/// The value of /proc/cpuinfo's first line named `name` (e.g. "cpu family", "model"), or "?".
private func cpuField(_ name: String) -> String {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: {
              $0.split(separator: ":").first?.trimmingCharacters(in: .whitespaces) == name
          }),
          let colon = line.firstIndex(of: ":") else { return "?" }
    return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
}

/// The vector flags of the CPU that matter to the kernels (FMA, AVX2, AVX-512 subsets), as /proc/cpuinfo names them.
private func cpuFlags() -> String {
    let all = Set(cpuField("flags").split(separator: " ").map(String.init))
    let wanted = ["sse4_2", "avx", "f16c", "fma", "avx2", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni"]
    let have = wanted.filter(all.contains)
    return have.isEmpty ? "none of the vector flags" : have.joined(separator: " ")
}

/// `count` floats uniform in [−1, 1), from the seed.
private func randomBuffer(_ count: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
    for i in 0..<count { p[i] = CounterRandom.uniform(seed, UInt64(i)) * 2 - 1 }
    return p
}

// Naive reference loops: what one writes without thinking about the machine. `@inline(never)` keeps them
// from being specialised into the timing loop.

@inline(never)
private func naiveGemm(_ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
    for i in 0..<n {
        for j in 0..<n {
            var s: Float = 0
            for p in 0..<n { s += a[i * n + p] * b[p * n + j] }
            c[i * n + j] = s
        }
    }
}

@inline(never)
private func naiveGemv(_ n: Int, _ a: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
    for i in 0..<n {
        var s: Float = 0
        for j in 0..<n { s += a[i * n + j] * x[j] }
        y[i] = s
    }
}

@inline(never)
private func naiveDot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
    var s: Float = 0
    for i in 0..<n { s += x[i] * y[i] }
    return s
}

@inline(never)
private func naiveAxpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { y[i] += a * x[i] }
}
