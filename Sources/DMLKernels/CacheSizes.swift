import Foundation

/// The data caches of the CPU the process runs on, read once at load time: what `Gemm` sizes its cache blocks
/// from (`Gemm.mc`, `Gemm.nc`), so a CPU with a smaller L2 or L3 gets smaller blocks without a rebuild.
///
/// Source: Linux's `/sys/devices/system/cpu/cpu0/cache/index*/` (level, type, size, the CPUs sharing it), which
/// gives the L3 of one core complex and how many CPUs share it; where that is absent, `sysconf`'s
/// `_SC_LEVEL{1D,2,3}_CACHE_SIZE` (whose L3 is sometimes the whole package's, so it is taken as shared by every
/// online CPU); where both are absent, `fallback` (32 KiB, 512 KiB, 2 MiB per core: a modest x86-64 or arm64).
/// Cost: a few small file reads, once.
public struct CacheSizes: Sendable, Equatable, CustomStringConvertible {
    /// Bytes of L1 data cache and of L2 of one core, and of L3 per CPU (the L3 divided among the CPUs sharing it,
    /// SMT siblings counted).
    public var l1d: Int
    public var l2: Int
    public var l3PerCore: Int
    /// Where the sizes came from: "sysfs", "sysconf" or "default".
    public var source: String

    public init(l1d: Int, l2: Int, l3PerCore: Int, source: String) {
        self.l1d = l1d
        self.l2 = l2
        self.l3PerCore = l3PerCore
        self.source = source
    }

    public static let fallback = CacheSizes(l1d: 32 << 10, l2: 512 << 10, l3PerCore: 2 << 20, source: "default")

    /// This machine's, read once.
    public static let current: CacheSizes = sysfs() ?? sysconfSizes() ?? fallback

    public var description: String {
        "L1d \(l1d >> 10) KiB, L2 \(l2 >> 10) KiB, L3 \(l3PerCore >> 10) KiB per core (\(source))"
    }

    /// From `/sys/devices/system/cpu/cpu0/cache`, or nil when it lacks an L1 data cache or an L2.
    static func sysfs(root: String = "/sys/devices/system/cpu/cpu0/cache") -> CacheSizes? {
        var l1d: Int?, l2: Int?, l3: Int?
        for index in 0..<8 {
            let dir = "\(root)/index\(index)"
            func field(_ name: String) -> String? {
                (try? String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            guard let level = field("level").flatMap(Int.init), let type = field("type"),
                  let size = field("size").flatMap(parseSize), size > 0, type != "Instruction" else { continue }
            let sharing = field("shared_cpu_list").map(countCPUs) ?? 1
            switch level {
            case 1: l1d = size
            case 2: l2 = size  // a core's, even when its SMT siblings share it: one kernel thread per core
            case 3: l3 = size / Swift.max(1, sharing)
            default: break
            }
        }
        guard let l1d, let l2 else { return nil }
        return CacheSizes(l1d: l1d, l2: l2, l3PerCore: l3 ?? l2, source: "sysfs")
    }

    static func sysconfSizes() -> CacheSizes? {
        #if os(Linux)
        let l1d = sysconf(Int32(_SC_LEVEL1_DCACHE_SIZE)), l2 = sysconf(Int32(_SC_LEVEL2_CACHE_SIZE))
        let l3 = sysconf(Int32(_SC_LEVEL3_CACHE_SIZE)), cpus = Swift.max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        guard l1d > 0, l2 > 0 else { return nil }
        return CacheSizes(l1d: l1d, l2: l2, l3PerCore: l3 > 0 ? l3 / cpus : l2, source: "sysconf")
        #else
        return nil
        #endif
    }

    /// "48K", "1024K", "32M", "512" → bytes; nil for anything else.
    static func parseSize(_ s: String) -> Int? {
        guard let last = s.last else { return nil }
        let shift = last == "K" ? 10 : last == "M" ? 20 : last == "G" ? 30 : 0
        return Int(shift == 0 ? Substring(s) : s.dropLast()).map { $0 << shift }
    }

    /// The CPUs of a list such as "0-3,8-11" or "5" (at least 1).
    static func countCPUs(_ list: String) -> Int {
        var n = 0
        for part in list.split(separator: ",") {
            let ends = part.split(separator: "-").compactMap { Int($0) }
            n += ends.count == 2 && ends[1] >= ends[0] ? ends[1] - ends[0] + 1 : 1
        }
        return Swift.max(1, n)
    }
}
