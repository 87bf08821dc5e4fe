import XCTest
import DMLComm
import Foundation
import DMLData
import DMLKernels
import DMLTestSupport
@testable import DMLTraining

/// `ShardCache` (the binary shard file) and `ShardStream` (reading its rows back in batch order).
final class ShardCacheTests: XCTestCase {
    var dir = ""
    var source = ""
    override func setUp() {
        dir = NSTemporaryDirectory() + "shard-cache-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        source = dir + "/data.csv"
        _ = FileManager.default.createFile(atPath: source, contents: Data("1,2\n".utf8))
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func key(options: String = "opts", rank: Int = 1, ranks: Int = 3) -> ShardCache.Key {
        ShardCache.Key(path: source, options: options, rank: rank, ranks: ranks)!
    }

    func dense(rows: Int = 37, features: Int = 5) -> Dataset {
        var random = TestRandom(seed: 1)
        let x = (0..<rows * features).map { _ in Float.random(in: -3...3, using: &random) }
        let y = (0..<rows).map { Float($0 % 3) }
        return Dataset(features: features, classes: 3, globalRows: Swift.max(100, 40 + rows), firstRow: 40, x: x, y: y)
    }

    func sparse() -> Dataset {
        var random = TestRandom(seed: 2)
        var x = [Float](repeating: 0, count: 29 * 40)
        for i in x.indices where Int.random(in: 0..<10, using: &random) == 0 { x[i] = Float.random(in: 1...2, using: &random) }
        return Dataset(features: 40, classes: 2, globalRows: 60, firstRow: 0, csr: CSRMatrix(dense: x, rows: 29, columns: 40),
                       y: (0..<29).map { Float($0 % 2) })
    }

    func open(_ path: String, _ key: ShardCache.Key) -> (Dataset, LabelMapping?)? {
        if case let .hit(d, l, _) = ShardCache.open(path, key: key) { return (d, l) }
        return nil
    }

    func testDenseAndCSRRowsReadBackInBatchOrderWithTheSameBits() throws {
        for data in [dense(), sparse()] {
            let path = ShardCache.path(directory: dir, key: key())
            let labels = data.classes == 3 ? LabelMapping(values: [-1, 0.5, 7]) : nil
            try ShardCache.write(data, labels: labels, key: key(), to: path)
            let (back, mapping) = try XCTUnwrap(open(path, key()))
            XCTAssertEqual(mapping, labels)
            XCTAssertTrue(back.isStreamed)
            XCTAssertEqual(back.isSparse, data.isSparse)
            XCTAssertEqual([back.rows, back.features, back.classes, back.globalRows, back.firstRow],
                           [data.rows, data.features, data.classes, data.globalRows, data.firstRow])
            XCTAssertEqual(back.y, data.y)
            // A shuffled batch with repeats of neighbours, and a run of consecutive rows.
            for rows in [[5, 3, 4, 27, 0, 1, 2, 28], Array(10..<20)] {
                let got = try back.stream!.gather(rows)
                switch got {
                case let .dense(x):
                    XCTAssertEqual(x, rows.flatMap { r in data.x[(r * data.features)..<((r + 1) * data.features)] })
                case let .csr(m):
                    var expected = CSRMatrix(columns: data.features)
                    rows.withUnsafeBufferPointer { expected.gather(data.csr!, rows: $0, firstRow: 0) }
                    XCTAssertEqual(m, expected)
                }
            }
            // The first rows kept in memory (dense only): the same rows, partly from memory and partly read.
            let stream = try XCTUnwrap(back.stream)
            let before = describe(try stream.gather([5, 3, 4, 27, 0, 1, 2, 28]))
            try stream.keepResident(bytes: 4 * data.features * 4 + 3)
            XCTAssertEqual(stream.residentRows, data.isSparse ? 0 : 4)
            XCTAssertEqual(describe(try stream.gather([5, 3, 4, 27, 0, 1, 2, 28])), before)
            nonisolated(unsafe) let pair = (back, data)
            let sums = try LocalCommunicator.run(size: 1) { comm in [try Checksum.dataset(pair.0, comm: comm), try Checksum.dataset(pair.1, comm: comm)] }
            XCTAssertEqual(sums[0][0], sums[0][1], "the data checksum of streamed rows is that of the rows in memory")
        }
    }

    /// Step windows (`plan`): each step's rows are the direct read's, across window boundaries, from any
    /// starting step (a resume), with and without resident rows, and a step asked for other rows than planned
    /// gets those rows; without resident rows a step's rows are used in place (`withWindowRows`). `useMemory`
    /// splits a budget between resident rows and the window.
    func testStepWindowsGiveEachStepTheRowsOfADirectRead() throws {
        let data = dense(rows: 370, features: 5)
        let path = ShardCache.path(directory: dir, key: key())
        try ShardCache.write(data, labels: nil, key: key(), to: path)
        let sampler = BatchSampler(rows: 1000, batchSize: 160, seed: 3)
        let range = data.globalRange
        let rowsOf: @Sendable (Int) -> [Int] = { sampler.localRows(ofStep: $0, in: range).map { $0 - 40 } }
        for (windowRows, resident, start) in [(100, 0, 0), (150, 0, 5), (400, 0, 0), (120, 90, 2), (64, 300, 0)] {
            let (back, _) = try XCTUnwrap(open(path, key()))
            let stream = try XCTUnwrap(back.stream)
            try stream.keepResident(bytes: resident * 20)
            stream.windowBytes = windowRows * (4 * 5 + 8)
            stream.plan(endStep: 30, rowsOf: rowsOf)
            XCTAssertTrue(stream.readsWindows, "a window of \(windowRows) rows, \(resident) resident")
            for step in start..<30 {
                let local = rowsOf(step)
                let expected = local.flatMap { r in data.x[(r * 5)..<((r + 1) * 5)] }
                // In place in the window when no row is resident (the step's rows lie there in batch order).
                let inPlace = try stream.withWindowRows(local, step: step) { block -> [Float] in
                    var out = [Float](repeating: 0, count: block.rows * block.features)
                    out.withUnsafeMutableBufferPointer { block.densify(into: $0.baseAddress!) }
                    return out
                }
                XCTAssertEqual(inPlace, resident == 0 ? expected : nil, "window \(windowRows) step \(step)")
                XCTAssertEqual(describe(try stream.gather(local, step: step)), describe(.dense(expected)), "window \(windowRows) step \(step)")
            }
            XCTAssertNil(try stream.withWindowRows([3, 1], step: 29) { $0.rows }, "other rows than planned are not in place")
            XCTAssertGreaterThan(stream.windowLoads, windowRows >= 370 - resident ? 0 : 1)
            XCTAssertEqual(describe(try stream.gather([3, 1], step: 29)), describe(.dense(Array(data.x[15..<20] + data.x[5..<10]))))
        }
        // A window that cannot hold 64 rows: a read a row.
        for windowRows in [63, 1] {
            let (back, _) = try XCTUnwrap(open(path, key()))
            back.stream!.windowBytes = windowRows * (4 * 5 + 8)
            back.stream!.plan(endStep: 30, rowsOf: rowsOf)
            XCTAssertFalse(back.stream!.readsWindows, "\(windowRows) rows")
        }
        // useMemory: all rows resident when they fit; else 2·budget − shard resident and the rest a window.
        let shard = 370 * 20
        for (budget, resident, window) in [(shard, 370, -1), (shard * 3 / 4, 185, shard * 3 / 4 - 185 * 20), (shard / 3, 0, shard / 3)] {
            let (back, _) = try XCTUnwrap(open(path, key()))
            let stream = try XCTUnwrap(back.stream)
            try stream.useMemory(budget)
            XCTAssertEqual(stream.residentRows, resident, "budget \(budget)")
            if window >= 0 { XCTAssertEqual(stream.windowBytes, window, "budget \(budget)") }
        }
    }

    /// Window loads over several 1 MiB blocks and several windows give the rows of a direct read.
    func testWindowLoadsOverManyBlocksGiveTheRowsOfADirectRead() throws {
        let rows = 2400, features = 1000   // 262 rows a 1 MiB block: 10 blocks
        var random = TestRandom(seed: 7)
        let x = (0..<rows * features).map { _ in Float.random(in: -1...1, using: &random) }
        let data = Dataset(features: features, classes: 2, globalRows: rows, firstRow: 0, x: x, y: (0..<rows).map { Float($0 % 2) })
        let path = ShardCache.path(directory: dir, key: key())
        try ShardCache.write(data, labels: nil, key: key(), to: path)
        let sampler = BatchSampler(rows: rows, batchSize: 300, seed: 5)
        let range = data.globalRange
        let rowsOf: @Sendable (Int) -> [Int] = { sampler.localRows(ofStep: $0, in: range) }
        for start in [0, 3] {
            let (back, _) = try XCTUnwrap(open(path, key()))
            let stream = try XCTUnwrap(back.stream)
            stream.windowBytes = rows * (4 * features + 8)
            stream.plan(endStep: 16, rowsOf: rowsOf)
            XCTAssertTrue(stream.readsWindows)
            for step in start..<16 {
                let local = rowsOf(step)
                guard case let .dense(got) = try stream.gather(local, step: step) else { return XCTFail("dense rows") }
                XCTAssertTrue(got == local.flatMap { x[($0 * features)..<(($0 + 1) * features)] }, "from step \(start): step \(step)")
            }
            XCTAssertGreaterThan(stream.windowLoads, 1, "16 steps of 300 rows: more than one window of 2400")
        }
    }

    func describe(_ rows: ShardStream.Rows) -> String {
        switch rows {
        case let .dense(x): return "\(x)"
        case let .csr(m): return "\(m)"
        }
    }

    /// Two writers of one cache (two jobs): each streams the rows it wrote, whatever the other renames over it.
    func testAWriterStreamsItsOwnFileWhateverIsRenamedOverIt() throws {
        let path = ShardCache.path(directory: dir, key: key())
        let a = dense(rows: 37, features: 5), b = dense(rows: 12, features: 5)
        let first = try ShardCache.write(a, labels: nil, key: key(), to: path)
        try ShardCache.write(b, labels: nil, key: key(), to: path)
        XCTAssertEqual(first.path, path, "messages name the cache, not its temporary")
        XCTAssertEqual(describe(try first.gather([36, 0])), describe(.dense(Array(a.x[180..<185] + a.x[0..<5]))))
        XCTAssertEqual(try XCTUnwrap(open(path, key())).0.rows, 12, "the cache holds the last writer's rows")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).count, 2, "no temporary left")
    }

    func testACacheOfAnotherFileRankOptionsOrVersionIsStale() throws {
        let path = ShardCache.path(directory: dir, key: key())
        try ShardCache.write(dense(), labels: nil, key: key(), to: path)
        XCTAssertNotNil(open(path, key()))
        for (other, why) in [(key(options: "other"), "other settings"), (key(rank: 2), "other settings")] {
            guard case let .stale(reason) = ShardCache.open(path, key: other) else { return XCTFail("\(other)") }
            XCTAssertTrue(reason.contains(why), reason)
        }
        XCTAssertNotEqual(ShardCache.path(directory: dir, key: key(options: "other")), path, "other options, another cache file")
        // The source rewritten (size and time): another version of it.
        Thread.sleep(forTimeInterval: 0.01)
        _ = FileManager.default.createFile(atPath: source, contents: Data("1,2\n3,4\n".utf8))
        guard case let .stale(reason) = ShardCache.open(path, key: key()) else { return XCTFail() }
        XCTAssertTrue(reason.contains("another version of"), reason)
        if case .absent = ShardCache.open(dir + "/none.dmlshard", key: key()) {} else { XCTFail("no file: absent") }

        // The --labels file rewritten (its version is in the key's companions, not in the cache's name).
        let labels = dir + "/y.npy"
        _ = FileManager.default.createFile(atPath: labels, contents: Data([1, 2, 3, 4]))
        var withLabels = key()
        withLabels.companions = ShardCache.Key.version(of: labels)
        try ShardCache.write(dense(), labels: nil, key: withLabels, to: path)
        XCTAssertNotNil(open(path, withLabels))
        XCTAssertEqual(ShardCache.path(directory: dir, key: withLabels), path)
        Thread.sleep(forTimeInterval: 0.02)
        _ = FileManager.default.createFile(atPath: labels, contents: Data([4, 3, 2, 1]))
        withLabels.companions = ShardCache.Key.version(of: labels)
        guard case let .stale(why) = ShardCache.open(path, key: withLabels) else { return XCTFail("a rewritten labels file reused the cache") }
        XCTAssertEqual(why, "was made with another version of the labels file \(labels)")
    }

    /// A rewrite that keeps the size and sets the modification time back (`touch -r`, a copy keeping times) is
    /// still another version: the status-change time moved (and the sampled blocks differ); a rewrite of the same
    /// bytes in place changes only the status-change time, and is stale too. An untouched file stays a hit.
    func testARewriteWithTheSameSizeAndModificationTimeIsStale() throws {
        let text = String(repeating: "1,2.5,3\n", count: 3000)   // 24 kB: the sampled blocks cover part of it
        _ = FileManager.default.createFile(atPath: source, contents: Data(text.utf8))
        let path = ShardCache.path(directory: dir, key: key())
        try ShardCache.write(dense(), labels: nil, key: key(), to: path)
        XCTAssertNotNil(open(path, key()), "unchanged: a hit")
        var st = stat()
        XCTAssertEqual(stat(source, &st), 0)
        let times = [st.st_atim, st.st_mtim]
        for (name, bytes) in [("other bytes", text.replacingOccurrences(of: "2.5", with: "7.5")), ("the same bytes", text)] {
            Thread.sleep(forTimeInterval: 0.02)   // the kernel's file clock ticks every few ms
            let handle = try XCTUnwrap(FileHandle(forWritingAtPath: source))   // in place: the inode stays
            handle.write(Data(bytes.utf8))
            try handle.close()
            XCTAssertEqual(times.withUnsafeBufferPointer { utimensat(AT_FDCWD, source, $0.baseAddress, 0) }, 0)   // touch -r
            var now = stat()
            XCTAssertEqual(stat(source, &now), 0)
            XCTAssertEqual([Int(now.st_size), now.st_mtim.tv_sec, now.st_mtim.tv_nsec, Int(now.st_ino)],
                           [Int(st.st_size), st.st_mtim.tv_sec, st.st_mtim.tv_nsec, Int(st.st_ino)], "\(name): size, time and inode restored")
            guard case let .stale(reason) = ShardCache.open(path, key: key()) else { return XCTFail("\(name): a stale cache was reused") }
            XCTAssertTrue(reason.contains("another version of"), reason)
        }
    }

    /// What the read learnt besides the rows (input columns, text labels, the fill, categories, names, notes)
    /// comes back from the cache as written.
    func testTheFactsOfTheReadComeBackFromTheCache() throws {
        let path = ShardCache.path(directory: dir, key: key())
        let facts = ShardFacts(missingFill: [0.25, -.nan, 3], notes: ["filled 4 missing values\nwith means"], categories: [["a=b", "c"]],
                               featureNames: ["x", "colour=red"], inputColumns: 4)
        try ShardCache.write(dense(), labels: LabelMapping(text: ["cat", "dog", "émeu"]), facts: facts, key: key(), to: path)
        guard case let .hit(_, labels, back) = ShardCache.open(path, key: key()) else { return XCTFail("a hit") }
        XCTAssertEqual(labels, LabelMapping(text: ["cat", "dog", "émeu"]))
        var expected = facts
        expected.labelText = ["cat", "dog", "émeu"]
        XCTAssertEqual(back, expected)
        XCTAssertEqual(back.file(data: dense(), labels: labels).inputColumns, 4)
    }

    func testEveryDamagedByteIsFound() throws {
        let path = ShardCache.path(directory: dir, key: key())
        try ShardCache.write(dense(rows: 6, features: 3), labels: nil, key: key(), to: path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        for i in stride(from: 0, to: good.count, by: 7) {
            var bad = good
            bad[i] ^= 0x04
            try bad.write(to: URL(fileURLWithPath: path))
            guard case .stale = ShardCache.open(path, key: key()) else { return XCTFail("byte \(i) flipped was not noticed") }
        }
        for cut in [0, 10, good.count - 1] {
            try good.prefix(cut).write(to: URL(fileURLWithPath: path))
            guard case .stale = ShardCache.open(path, key: key()) else { return XCTFail("cut at \(cut) was not noticed") }
        }
    }

    func testAFullDiskLeavesTheOldCacheAndNoTemporary() throws {
        let path = ShardCache.path(directory: dir, key: key())
        try ShardCache.write(dense(), labels: nil, key: key(), to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        for after in [0, 100, 1000] {
            XCTAssertThrowsError(try ShardCache.write(dense(rows: 50), labels: nil, key: key(), to: path, fault: .fail(afterBytes: after))) {
                XCTAssertTrue("\($0)".contains(path), "\($0)")
            }
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["data.csv", URL(fileURLWithPath: path).lastPathComponent])
        }
    }
}
