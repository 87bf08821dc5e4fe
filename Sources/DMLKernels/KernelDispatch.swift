import Foundation
internal import CDMLKernels

/// An instruction set the arithmetic kernels are compiled for (CDMLKernels: one copy of every kernel per ISA).
public enum KernelISA: String, CaseIterable, Sendable, Comparable {
    /// The C compiler's baseline (SSE2 on x86-64, NEON on arm64); a fused multiply-add without hardware FMA is a
    /// call to `fmaf` (the same bits, slowly).
    case generic
    /// AVX2 and FMA: 256-bit vectors (Haswell and later, every Zen).
    case avx2
    /// AVX-512 F/VL/DQ/BW: 512-bit vectors where the bits allow (Skylake-SP, Ice Lake, Zen 4, Zen 5).
    case avx512

    var code: dml_isa {
        switch self {
        case .generic: DML_ISA_GENERIC
        case .avx2: DML_ISA_AVX2
        case .avx512: DML_ISA_AVX512
        }
    }

    public static func < (a: KernelISA, b: KernelISA) -> Bool { a.code.rawValue < b.code.rawValue }
}

/// Which ISA's kernels run. Chosen once when the program loads: the best that the CPU and the OS support, or the
/// one the environment variable `DML_KERNELS_ISA` names (`generic`, `avx2`, `avx512`; one the CPU lacks is refused
/// with a note on stderr). No compiler flag is involved, so a binary built anywhere runs the best code of the CPU
/// it runs on, and a package that depends on DML gets the same.
///
/// Invariant: every ISA computes the same bits for the same inputs (the kernels fix each output's order of
/// operations independently of the vector width; `KernelDispatchTests` checks each kernel,
/// `KernelISAIntegrationTests` a job whose ranks run different ISAs), so the choice changes speed only: a run's
/// results do not depend on the CPUs its ranks land on.
public enum KernelDispatch {
    /// The ISA whose kernels run now.
    public static var isa: KernelISA {
        switch dml_kernels().pointee.isa {
        case DML_ISA_AVX512: .avx512
        case DML_ISA_AVX2: .avx2
        default: .generic
        }
    }

    /// The ISAs this CPU and OS can run, from the baseline up.
    public static var supported: [KernelISA] { KernelISA.allCases.filter { dml_kernels_supported($0.code) != 0 } }

    /// Why `DML_KERNELS_ISA` was not followed (an unknown name, or an ISA this CPU lacks), or nil.
    public static var overrideNote: String? { dml_kernels_override_note().map { String(cString: $0) } }

    /// The measured FMA peak of one thread with the active ISA, in GFLOP/s: the best of `repeats` runs of about
    /// `seconds` each of 12 independent chains of vector fused multiply-adds (the gemm tile's accumulator count),
    /// the ceiling a single-precision kernel on this core can reach. Many short runs, so that on a shared machine
    /// one of them runs without being preempted (a long run is always interrupted there). Costs `repeats · seconds`.
    public static func fmaPeak(seconds: Double = 0.004, repeats: Int = 50) -> Double {
        let kernels = dml_kernels().pointee
        var iters = 1 << 16, best = 0.0
        for _ in 0..<repeats {
            while true {
                let start = DispatchTime.now().uptimeNanoseconds
                let sink = kernels.fma_peak(iters)
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                precondition(sink.isFinite)
                if elapsed >= seconds {
                    best = Swift.max(best, Double(iters * kernels.fma_flops_per_iter) / elapsed / 1e9)
                    break
                }
                iters *= 2
            }
        }
        return best
    }

    /// Runs `body` with `isa`'s kernels, then restores the previous choice. For tests and benchmarks: the choice is
    /// process-wide, so no other thread may run kernels meanwhile. `isa` must be in `supported`.
    public static func with<T>(_ isa: KernelISA, _ body: () throws -> T) rethrows -> T {
        let previous = KernelDispatch.isa
        precondition(dml_kernels_select(isa.code) == 0, "kernels: \(isa.rawValue) is not supported by this CPU")
        defer { _ = dml_kernels_select(previous.code) }
        return try body()
    }
}
