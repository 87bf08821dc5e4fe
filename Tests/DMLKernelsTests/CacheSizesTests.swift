@testable import DMLKernels
import Foundation
import XCTest

/// `CacheSizes`: sysfs's cache description parsed (sizes, shared CPU lists), and `Gemm`'s blocks derived from it.
final class CacheSizesTests: XCTestCase {
    func testSizesAndCPUListsParse() {
        XCTAssertEqual(CacheSizes.parseSize("48K"), 48 << 10)
        XCTAssertEqual(CacheSizes.parseSize("32M"), 32 << 20)
        XCTAssertEqual(CacheSizes.parseSize("512"), 512)
        XCTAssertNil(CacheSizes.parseSize("big"))
        XCTAssertEqual(CacheSizes.countCPUs("0-1"), 2)
        XCTAssertEqual(CacheSizes.countCPUs("0-7,64-71"), 16)
        XCTAssertEqual(CacheSizes.countCPUs("5"), 1)
    }

    func testSysfsDirectoryIsRead() throws {
        // A Zen 3 core complex: 32 KiB L1d, 512 KiB L2, 32 MiB L3 shared by 16 CPUs (and an instruction cache).
        let root = NSTemporaryDirectory() + "dml-cache-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (i, level, type, size, shared) in [(0, 1, "Data", "32K", "0,8"), (1, 1, "Instruction", "32K", "0,8"),
                                               (2, 2, "Unified", "512K", "0,8"), (3, 3, "Unified", "32768K", "0-7,64-71")] {
            let dir = "\(root)/index\(i)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for (name, value) in [("level", "\(level)"), ("type", type), ("size", size), ("shared_cpu_list", shared)] {
                try (value + "\n").write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8)
            }
        }
        let caches = try XCTUnwrap(CacheSizes.sysfs(root: root))
        XCTAssertEqual(caches, CacheSizes(l1d: 32 << 10, l2: 512 << 10, l3PerCore: 2 << 20, source: "sysfs"))
        XCTAssertNil(CacheSizes.sysfs(root: root + "/absent"))
    }

    func testBlocksFollowTheCaches() {
        // kc is fixed (it is part of the bits); mc is a quarter of L2 in whole slivers, nc half the L3 share.
        let zen3 = Gemm.blocks(CacheSizes(l1d: 32 << 10, l2: 512 << 10, l3PerCore: 4 << 20, source: "test"))
        XCTAssertEqual(zen3.mc, 126)
        XCTAssertEqual(zen3.nc, 2048)
        let zen5 = Gemm.blocks(CacheSizes(l1d: 48 << 10, l2: 1 << 20, l3PerCore: 16 << 20, source: "test"))
        XCTAssertEqual(zen5.mc, 252)
        XCTAssertEqual(zen5.nc, 4096)
        let tiny = Gemm.blocks(CacheSizes(l1d: 16 << 10, l2: 64 << 10, l3PerCore: 0, source: "test"))
        XCTAssertEqual(tiny.mc, 48)
        XCTAssertEqual(tiny.nc, 512)
        XCTAssertEqual(Gemm.kc, 256)
        XCTAssertEqual(Gemm.nc % 64, 0)
        XCTAssertEqual(Gemm.mc % Gemm.mr, 0)
        let here = Gemm.blocks(CacheSizes.current)
        XCTAssertEqual(Gemm.mc, here.mc)
        XCTAssertEqual(Gemm.nc, here.nc)
    }
}
