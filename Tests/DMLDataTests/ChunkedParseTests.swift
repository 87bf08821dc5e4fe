import XCTest
import Foundation
import DMLComm
@testable import DMLData
import DMLTestSupport

/// `DataLoader.read` with a `DenseRowSink`: a CSV byte range parsed a few bytes at a time gives the rows,
/// labels and error lines of the one-piece parse, for any chunk size and rank count.
final class ChunkedParseTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = MPIRunner.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Collects the rows in a file (each rank its own) and streams them back.
    final class FileSink: DenseRowSink, @unchecked Sendable {
        let path: String
        let chunkBytes: Int
        var x: [Float] = []
        var appends = 0
        init(path: String, chunkBytes: Int) { self.path = path; self.chunkBytes = chunkBytes }
        func append(rows: [Float], features: Int) throws { x += rows; appends += 1 }
        func restart() throws { x = [] }
        func finish(y: [Float], features: Int, classes: Int, globalRows: Int, firstRow: Int, labels: LabelMapping?, facts: ShardFacts) throws -> ShardStream {
            if let fill = facts.missingFill { for i in x.indices where x[i].isNaN { x[i] = Float(bitPattern: fill[i % features]) } }
            _ = FileManager.default.createFile(atPath: path, contents: x.withUnsafeBytes { Data($0) })
            return try ShardStream(path: path, rows: y.count, features: features, layout: .dense(offset: 0))
        }
    }

    func write(_ text: String) -> String {
        let path = "\(dir)/data.csv"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func testChunksGiveTheWholeParsesRowsForAnyChunkSizeAndRankCount() throws {
        var random = TestRandom(seed: 11)
        var text = "label,a,b\n"
        for i in 0..<300 {
            text += "\(Int.random(in: 0...4, using: &random) * 3),\(Float.random(in: -9...9, using: &random)),\(i)" + (i % 3 == 0 ? "\r\n" : "\n")
            if i % 17 == 0 { text += "\n  \n" }   // blank lines
            if i == 100 { text += "2,0.\(String(repeating: "1", count: 300)),5\n" }   // a line longer than a chunk
        }
        let path = write(text)
        for ranks in [1, 2, 5] {
            let whole = try LocalCommunicator.run(size: ranks) { comm in try DataLoader.read(DataSource(path: path), options: ReadOptions(), comm: comm) }
            for chunk in [1, 7, 64, 1000, 1 << 20] {
                let sinks = (0..<ranks).map { FileSink(path: "\(dir)/rows-\(ranks)-\(chunk)-\($0)", chunkBytes: chunk) }
                let shared = sinks
                let parts = try LocalCommunicator.run(size: ranks) { comm in
                    try DataLoader.read(DataSource(path: path), options: ReadOptions(), comm: comm, rowSink: shared[comm.rank])
                }
                for r in 0..<ranks {
                    let (a, b) = (whole[r].0, parts[r].0)
                    XCTAssertTrue(b.isStreamed)
                    XCTAssertEqual(sinks[r].x, a.x, "ranks \(ranks) chunk \(chunk) rank \(r)")
                    XCTAssertEqual(b.y, a.y)
                    XCTAssertEqual([b.rows, b.firstRow, b.globalRows, b.classes], [a.rows, a.firstRow, a.globalRows, a.classes])
                    XCTAssertEqual(parts[r].1, whole[r].1)
                    if chunk == 1 { XCTAssertGreaterThan(sinks[r].appends, 1) }
                }
            }
        }
    }

    /// `.npy` rows (label column 0, and features with a separate labels file) go to the sink a piece of rows at a
    /// time: the same rows, labels and mapping as the whole read, for any piece size and rank count.
    func testNPYRowsGoToTheSinkAPieceAtATime() throws {
        var random = TestRandom(seed: 12)
        let rows = 97, columns = 4
        let values = (0..<rows * columns).map { i in i % columns == 0 ? Double(Int.random(in: 0...3, using: &random)) : Double.random(in: -5...5, using: &random) }
        let xy = "\(dir)/xy.npy", x = "\(dir)/x.npy", y = "\(dir)/y.npy"
        writeNPYFile(xy, descr: "<f8", shape: [rows, columns], bytes: values.withUnsafeBytes { Array($0) })
        let features = (0..<rows).flatMap { r in (1..<columns).map { Float(values[r * columns + $0]) } }
        writeNPYFile(x, descr: "<f4", shape: [rows, columns - 1], bytes: features.withUnsafeBytes { Array($0) })
        let labels = (0..<rows).map { Int64(values[$0 * columns]) }
        writeNPYFile(y, descr: "<i8", shape: [rows], bytes: labels.withUnsafeBytes { Array($0) })
        for source in [DataSource(path: xy), DataSource(path: x, labelsPath: y)] {
            for ranks in [1, 3] {
                let whole = try LocalCommunicator.run(size: ranks) { comm in try DataLoader.read(source, options: ReadOptions(), comm: comm) }
                for chunk in [1, 40, 1 << 20] {
                    let sinks = (0..<ranks).map { FileSink(path: "\(dir)/npy-\(ranks)-\(chunk)-\($0)", chunkBytes: chunk) }
                    let shared = sinks
                    let parts = try LocalCommunicator.run(size: ranks) { comm in
                        try DataLoader.read(source, options: ReadOptions(), comm: comm, rowSink: shared[comm.rank])
                    }
                    for r in 0..<ranks {
                        let (a, b) = (whole[r].0, parts[r].0)
                        XCTAssertTrue(b.isStreamed)
                        XCTAssertEqual(sinks[r].x, a.x, "\(source.path) ranks \(ranks) chunk \(chunk) rank \(r)")
                        XCTAssertEqual(b.y, a.y)
                        XCTAssertEqual([b.rows, b.firstRow, b.globalRows, b.classes, b.features], [a.rows, a.firstRow, a.globalRows, a.classes, a.features])
                        XCTAssertEqual(parts[r].1, whole[r].1)
                        XCTAssertEqual(sinks[r].appends, chunk == 1 << 20 ? 1 : (a.rows + Swift.max(1, chunk / 12) - 1) / Swift.max(1, chunk / 12))
                    }
                }
            }
        }
    }

    /// Quoted fields with line breaks, commas and quotes inside (a dropped note column), quoted numbers, text
    /// labels and missing values filled with the column means (`--missing mean`): the chunks, however small
    /// (a chunk may start inside a quoted line break), give the whole read's rows (the means filled in), labels,
    /// fill values and notes, at any rank count.
    func testQuotedFieldsTextLabelsAndMissingMeansGoThroughChunks() throws {
        var random = TestRandom(seed: 13)
        var text = "note,label,a,b\r\n"
        for i in 0..<120 {
            let note = i % 4 == 0 ? "\"line one\nline, \"\"two\"\"\r\nthree\"" : i % 4 == 1 ? "\"plain\"" : "n\(i)"
            let label = ["cat", "dog", "\"emu\nbird\"", "7"][Int.random(in: 0...3, using: &random)]
            let a = i % 5 == 0 ? "" : i % 7 == 0 ? "NA" : String(format: "%.3f", Double.random(in: -4...4, using: &random))
            let b = i % 3 == 0 ? "\"\(Double(i) / 8)\"" : i % 11 == 0 ? "?" : "\(i)"
            text += "\(note),\(label),\(a),\(b)" + (i % 2 == 0 ? "\n" : "\r\n")
        }
        let path = write(text)
        var options = ReadOptions()
        options.missing = .mean
        options.dropColumns = [.name("note")]
        options.labelColumn = .name("label")
        for ranks in [1, 2, 3] {
            let whole = try LocalCommunicator.run(size: ranks) { comm in try DataLoader.load(DataSource(path: path), options: options, comm: comm) }
            XCTAssertEqual(whole[0].labels?.text, ["7", "cat", "dog", "emu\nbird"])
            XCTAssertFalse(whole[0].notes.isEmpty, "missing values were filled")
            for chunk in [1, 13, 100, 1 << 20] {
                let sinks = (0..<ranks).map { FileSink(path: "\(dir)/q-\(ranks)-\(chunk)-\($0)", chunkBytes: chunk) }
                let shared = sinks
                let parts = try LocalCommunicator.run(size: ranks) { comm in
                    try DataLoader.load(DataSource(path: path), options: options, comm: comm, rowSink: shared[comm.rank])
                }
                for r in 0..<ranks {
                    let (a, b) = (whole[r], parts[r])
                    XCTAssertTrue(b.data.isStreamed)
                    XCTAssertEqual(sinks[r].x.map(\.bitPattern), a.data.x.map(\.bitPattern), "ranks \(ranks) chunk \(chunk) rank \(r)")
                    XCTAssertFalse(sinks[r].x.contains { $0.isNaN })
                    XCTAssertEqual(b.data.y, a.data.y)
                    XCTAssertEqual([b.data.rows, b.data.firstRow, b.data.globalRows, b.data.classes], [a.data.rows, a.data.firstRow, a.data.globalRows, a.data.classes])
                    XCTAssertEqual(b.labels, a.labels)
                    XCTAssertEqual(b.missingFill, a.missingFill)
                    XCTAssertEqual(b.notes, a.notes)
                    XCTAssertEqual(b.inputColumns, a.inputColumns)
                    XCTAssertEqual(b.featureNames, a.featureNames)
                }
            }
        }
    }

    func testAnErrorInALaterChunkNamesTheFilesLine() throws {
        var text = "y,a\n"
        for i in 0..<50 { text += "\(i % 2),\(i)\n" }
        text += "1,oops\n"
        let path = write(text + "0,1\n")
        for ranks in [1, 3] {
            let messages = try LocalCommunicator.run(size: ranks) { comm -> String in
                let sink = FileSink(path: "\(self.dir)/r\(comm.rank)", chunkBytes: 16)
                do { _ = try DataLoader.read(DataSource(path: path), options: ReadOptions(), comm: comm, rowSink: sink); return "no error" }
                catch let f as AgreedFailure { return f.message } catch { return "not agreed: \(error)" }
            }
            XCTAssertEqual(Set(messages).count, 1)
            XCTAssertTrue(messages[0].contains("line 52, column 2"), messages[0])
        }
    }
}
