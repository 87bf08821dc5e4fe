import Foundation
internal import CDMLKernels

/// Threads per process for the dense kernels: the calling thread plus `count − 1` persistent pthreads
/// (CDMLKernels `threads.c`), shared by every kernel call of the process.
///
/// Invariant: results do not depend on the thread count. A threaded kernel cuts its output into units (the packed
/// gemm: blocks of whole 6 × 32 slivers of C after B is packed once by all threads, `Gemm+Parallel.swift`; the
/// few-class gemms: 32-column or 24-row strips; element-wise passes: runs of `Vector.parallelRun`) and each output
/// element is computed by one thread with exactly the operations, in exactly the order, of the single-threaded
/// kernel; threads only decide who computes which elements. So T = 1, 2, 3, … give the same bits, and ranks with different T
/// stay bit-identical replicas (`KernelThreadsTests`, `ThreadsIntegrationTests`).
///
/// Which thread computes which strip is decided at run time (threads claim strips one at a time), which balances a
/// loaded machine and changes no bit.
///
/// Cost: a parallel call publishes its work and waits for the workers, about a microsecond while they spin
/// (they spin for a few hundred microseconds after each call, then sleep on a condition variable, so an idle
/// pool takes no CPU). Calls smaller than `Gemm.parallelMinimumFlops` stay on the calling thread. A call made
/// while the pool is busy (from another thread, or from inside a unit) runs on its own thread, with the same
/// results.
public enum KernelThreads {
    /// The largest thread count `use` accepts.
    public static let maximum = Int(DML_MAX_THREADS)

    /// Kernel threads now (1 when no pool runs).
    public static var count: Int { dml_threads() }

    /// CPUs in this process's affinity mask: the cores the launcher gave the rank (`mpirun` binds each rank to
    /// one core at np ≤ 2; `--bind-to none` or `--map-by slot:PE=N` gives it more), or the online CPUs.
    public static var affinityCPUs: Int { dml_affinity_cpus() }

    /// The default threads for a rank: the CPUs of its affinity mask, but no more than its share of the node's
    /// online CPUs when `ranksOnNode` ranks share the node unbound (so np 4 unbound on 2 cores gets 1 thread
    /// each, not 2 spinning threads per core). At least 1.
    public static func defaultCount(ranksOnNode: Int) -> Int {
        let online = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        let share = online > 0 ? Int(online) / Swift.max(1, ranksOnNode) : 1
        return Swift.max(1, Swift.min(affinityCPUs, share))
    }

    /// Why `threads` is refused (outside 1 ... `maximum`), or nil.
    public static func problem(_ threads: Int) -> String? {
        (1...maximum).contains(threads) ? nil : "must be between 1 and \(maximum) (got \(threads))"
    }

    /// Sets the process's kernel threads (1: no pool). Throws when `threads` is outside 1 ... `maximum` or a
    /// thread cannot be started (then the count is unchanged). Waits for a running parallel call to finish.
    public static func use(_ threads: Int) throws(KernelThreadsError) {
        if let why = problem(threads) { throw KernelThreadsError(message: "threads " + why) }
        guard dml_threads_set(threads) == 0 else {
            throw KernelThreadsError(message: "--threads \(threads): could not start \(threads) kernel threads (too little address space for their stacks, or a limit on threads)")
        }
    }

    /// What a split costs on top of its work: a call of `2·count` units, each a fixed chain of FMAs (a few
    /// microseconds), timed split among the threads (`parallel`) and on the calling thread alone. Returns the
    /// best mean seconds per call of each over `repeats` rounds of `calls` calls; `parallel − serial / count` is the
    /// hand-off (publish, wake, claim, wait for the last unit). Both equal with one thread.
    public static func handOffSeconds(calls: Int = 1000, repeats: Int = 5) -> (parallel: Double, serial: Double) {
        let units = 2 * count, work = dml_kernels().pointee.fma_peak
        var sink: Float = 0
        func best(_ body: () -> Void) -> Double {
            var best = Double.infinity
            for _ in 0..<repeats {
                let start = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<calls { body() }
                best = Swift.min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(calls))
            }
            return best
        }
        let split = best { parallel(units: units) { begin, end in for _ in begin..<end { _ = work(1024) } } }
        let alone = best { for _ in 0..<units { sink += work(1024) } }
        precondition(sink.isFinite)
        return (split, alone)
    }

    /// Runs `body` over `units` units, `body(begin, end)` for runs of them: the pool's threads, the caller among
    /// them, claim one unit at a time (so a thread the OS does not schedule on a loaded machine leaves its units
    /// to the others rather than stalling the call); returns when all are done. `body` must give the same results
    /// however the units are cut into runs (it may get all of them at once on the caller).
    static func parallel(units: Int, _ body: (Int, Int) -> Void) {
        if units <= 1 || dml_threads() <= 1 { return body(0, units) }
        withoutActuallyEscaping(body) { escaping in
            var job = escaping
            withUnsafeMutablePointer(to: &job) { pointer in
                dml_parallel(units, { context, begin, end in
                    context!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(begin, end)
                }, pointer)
            }
        }
    }
}

/// A refused thread count, or threads that could not be started.
public struct KernelThreadsError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}
