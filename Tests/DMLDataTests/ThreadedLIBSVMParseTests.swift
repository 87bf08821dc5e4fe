import XCTest
import Foundation
@testable import DMLData
import DMLTestSupport

/// `LIBSVMParser.parse(_:threads:)`: a rank's byte range parsed by several threads gives the one-thread
/// parse's rows, bits, labels and line count, and its error (the same line and column), for any cut.
final class ThreadedLIBSVMParseTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = MPIRunner.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ text: String, name: String = "data.svm") -> String {
        let path = "\(dir)/\(name)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    /// Rows with blank lines, comments, CRLF ends, labels seen first late in the file and a long line.
    func tricky(rows: Int, seed: UInt64) -> String {
        var random = TestRandom(seed: seed)
        var text = ""
        for i in 0..<rows {
            let label = i == rows - 7 ? 9 : (i == rows / 2 ? 300 : Int.random(in: 0...2, using: &random))
            var line = "\(label)"
            var index = 0
            for _ in 0..<Int.random(in: 0...(i == 40 ? 400 : 12), using: &random) {
                index += Int.random(in: 1...50, using: &random)
                line += " \(index):" + (Bool.random(using: &random) ? "1" : "\(Float.random(in: -9...9, using: &random))")
            }
            if i % 29 == 0 { line += " # a comment 5:5" }
            text += line + (i % 3 == 0 ? "\r\n" : "\n")
            if i % 31 == 0 { text += "\n   \n" }
        }
        return text
    }

    func parse(_ path: String, threads: Int, chunk: Int = 997, range: Range<Int>? = nil, hash: FeatureHash? = nil) throws -> LIBSVMParser.Sparse {
        let file = try InputFile(path)
        let parser = LIBSVMParser(file: path, classification: true, maxFeatures: nil, hash: hash)
        return try parser.parse(LineRange(file: file, range: range ?? 0..<file.size), threads: threads, chunkBytes: chunk)
    }

    func assertSame(_ a: LIBSVMParser.Sparse, _ b: LIBSVMParser.Sparse, _ what: String) {
        XCTAssertEqual(a.indices, b.indices, what)
        XCTAssertEqual(a.values.map(\.bitPattern), b.values.map(\.bitPattern), what)
        XCTAssertEqual(a.rowEnds, b.rowEnds, what)
        XCTAssertEqual(a.maxIndex, b.maxIndex, what)
        XCTAssertEqual(a.shard.labels, b.shard.labels, what)
        XCTAssertEqual(a.shard.lines, b.shard.lines, what)
        XCTAssertEqual(a.shard.labelFirstSeen, b.shard.labelFirstSeen, what)
        XCTAssertEqual(a.shard.smallLabelsSeen, b.shard.smallLabelsSeen, what)
    }

    func testAnyThreadCountGivesTheOneThreadParse() throws {
        let path = write(tricky(rows: 700, seed: 5))
        let size = try InputFile(path).size
        for hash in [nil, FeatureHash(bits: 10)] {
            // The whole file, and a range that starts and ends inside lines (a rank's share).
            for range in [0..<size, 1234..<(size - 999)] {
                let one = try parse(path, threads: 1, range: range, hash: hash)
                XCTAssertGreaterThan(one.rowEnds.count, 300)
                // Chunks shorter than a line (most own no line), about a line, and many lines.
                for (threads, chunk) in [(2, 1), (3, 61), (2, 997), (7, 4096), (64, 300), (2, 1 << 20)] {
                    assertSame(try parse(path, threads: threads, chunk: chunk, range: range, hash: hash), one,
                               "threads \(threads) chunk \(chunk) range \(range) hashed \(hash != nil)")
                }
            }
        }
    }

    func testAnErrorInALaterPieceNamesTheOneThreadParsesLineAndColumn() throws {
        // Split on the byte: a String's "\r\n" is one Character, which a split on "\n" would not cut.
        var lines = tricky(rows: 400, seed: 8).utf8.split(separator: 10, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        lines[lines.count * 3 / 4] = "1 3:1 3:2"          // a duplicate index in the last quarter
        let path = write(lines.joined(separator: "\n"))
        func failure(threads: Int, chunk: Int = 997) -> LocalLineError? {
            do { _ = try parse(path, threads: threads, chunk: chunk); return nil } catch { return error as? LocalLineError }
        }
        let one = try XCTUnwrap(failure(threads: 1))
        XCTAssertEqual(one.localLine, lines.count * 3 / 4)
        XCTAssertEqual(one.column, 3)
        for (threads, chunk) in [(2, 997), (4, 50), (9, 3000), (2, 1)] {
            let e = try XCTUnwrap(failure(threads: threads, chunk: chunk))
            XCTAssertEqual([e.localLine, e.column], [one.localLine, one.column], "threads \(threads) chunk \(chunk)")
            XCTAssertEqual(e.message, one.message)
        }
        // Two bad lines: the first in file order is the one reported, whichever piece finishes first.
        lines[lines.count / 5] = "1 0:1"
        let both = write(lines.joined(separator: "\n"), name: "both.svm")
        for threads in [1, 2, 5] {
            do {
                let file = try InputFile(both)
                _ = try LIBSVMParser(file: both, classification: true, maxFeatures: nil)
                    .parse(LineRange(file: file, range: 0..<file.size), threads: threads, chunkBytes: 500)
                XCTFail("no error with \(threads) threads")
            } catch let e as LocalLineError {
                XCTAssertEqual([e.localLine, e.column], [lines.count / 5, 2], "threads \(threads)")
            }
        }
    }
}
