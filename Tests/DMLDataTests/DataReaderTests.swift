import XCTest
import Foundation
import DMLComm
@testable import DMLData
import DMLStatus
import DMLTestSupport

final class DataReaderTests: XCTestCase {
    var dir = ""

    override func setUp() { dir = MPIRunner.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) -> String {
        let path = "\(dir)/\(name)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    // MARK: shard boundaries

    /// Every line is read by exactly one rank, in order, for np 1…8, files of many sizes, lines longer than
    /// a shard, CRLF, blank lines and a missing final newline.
    func testEveryLineIsReadByExactlyOneRank() throws {
        var random = TestRandom(seed: 5)
        var files: [String] = ["", "\n", "a", "a\n", "\n\n\n", "ab\r\ncd\r\n", "x\r\n\r\ny", "1,2\n3,4\n\n\n"]
        for _ in 0..<40 {
            let lines = Int.random(in: 1...30, using: &random)
            var text = ""
            for i in 0..<lines {
                let long = Int.random(in: 0..<8, using: &random) == 0
                let length = long ? Int.random(in: 50...300, using: &random) : Int.random(in: 0...6, using: &random)
                text += String((0..<length).map { _ in Character(UnicodeScalar(UInt8(97 + (i % 26)))) })
                let crlf = Bool.random(using: &random)
                if i < lines - 1 || Bool.random(using: &random) { text += crlf ? "\r\n" : "\n" }
            }
            files.append(text)
        }
        for (f, text) in files.enumerated() {
            let path = write("lines\(f).txt", text)
            // Reference split on bytes (Swift's Characters would merge "\r\n" into one).
            var expected = Array(text.utf8).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
                .map { String(decoding: $0.last == UInt8(ascii: "\r") ? $0.dropLast() : $0, as: UTF8.self) }
            if text.utf8.last == UInt8(ascii: "\n") || text.isEmpty { expected.removeLast() }
            let input = try InputFile(path)
            for p in 1...8 {
                var got: [String] = []
                for r in 0..<p {
                    let range = LineRange(file: input, range: LineRange.byteRange(size: input.size, rank: r, ranks: p))
                    // A tiny chunk forces the buffer to refill and grow mid-line.
                    let before = got.count
                    let n = try range.forEachLine(chunk: 7) { line, index in
                        XCTAssertEqual(index, got.count - before)
                        got.append(String(decoding: line, as: UTF8.self))
                    }
                    XCTAssertEqual(n, got.count - before, "line count")
                }
                XCTAssertEqual(got, expected, "file \(f) (\(text.utf8.count) bytes), np=\(p)")
            }
        }
    }

    // MARK: readers against a reference parse

    func concatenated(_ shards: [(Dataset, LabelMapping?)]) -> (x: [Float], y: [Float]) {
        var x: [Float] = [], y: [Float] = []
        var next = 0
        for (d, _) in shards {
            XCTAssertEqual(d.firstRow, next, "first rows are prefix sums of the shard sizes")
            next += d.rows
            x += d.x
            y += d.y
        }
        XCTAssertEqual(next, shards[0].0.globalRows)
        return (x, y)
    }

    func testCSVMatchesAReferenceParseForAnyNumberOfRanks() throws {
        var random = TestRandom(seed: 9)
        var rows: [[Double]] = []
        var text = "label, f1, f2, f3\r\n"
        for i in 0..<157 {
            let label = Double([3, 7, -2][i % 3])
            let values = (0..<3).map { _ in Double(Float.random(in: -1000...1000, using: &random)) }
            rows.append([label] + values)
            let formats = ["%.9g", "%.3e", "%f", "%.0f"]
            text += ([String(Int(label))] + values.enumerated().map { String(format: formats[($0.offset + i) % 4], $0.element) })
                .joined(separator: i % 5 == 0 ? " , " : ",") + (i % 2 == 0 ? "\r\n" : "\n")
            if i % 50 == 0 { text += "\n" }   // blank lines hold no row
        }
        let path = write("data.csv", text + "\n\n")
        let reference = rows.map { r in r.dropFirst().map { Float(String(format: "%.9g", $0))! } }
        for p in 1...6 {
            let shards = try LocalCommunicator.run(size: p) { comm in
                try DataLoader.read(DataSource(path: path), options: ReadOptions(), comm: comm)
            }
            let (x, y) = concatenated(shards)
            XCTAssertEqual(shards[0].1?.values, [-2, 3, 7])
            XCTAssertEqual(shards[0].0.classes, 3)
            XCTAssertEqual(y, rows.map { Float([-2.0, 3, 7].firstIndex(of: $0[0])!) }, "np=\(p)")
            // The written text rounds the values; compare with what the text says, parsed by Foundation.
            let textValues = text.split(whereSeparator: \.isNewline).dropFirst().filter { !$0.isEmpty }
                .map { $0.split(separator: ",").dropFirst().map { Float(Double($0.trimmingCharacters(in: .whitespaces))!) } }
            XCTAssertEqual(x, textValues.flatMap { $0 }, "np=\(p)")
            XCTAssertEqual(x.count, reference.count * 3)
        }
    }

    func testWhitespaceCSVWithTheLabelLastAndNoHeader() throws {
        let path = write("data.txt", "1.5 2 0\n\t3  4e-1   1 \n-5 6 0")
        var options = ReadOptions()
        options.labelColumn = .last
        for p in 1...3 {
            let (x, y) = concatenated(try LocalCommunicator.run(size: p) { comm in
                try DataLoader.read(DataSource(path: path), options: options, comm: comm)
            })
            XCTAssertEqual(x, [1.5, 2, 3, 0.4, -5, 6])
            XCTAssertEqual(y, [0, 1, 0])
        }
    }

    func testRegressionKeepsTargets() throws {
        let path = write("r.csv", "y,a\n0.25,1\n-3.5,2\n")
        var options = ReadOptions()
        options.task = .regression
        let shards = try LocalCommunicator.run(size: 2) { comm in try DataLoader.read(DataSource(path: path), options: options, comm: comm) }
        XCTAssertEqual(concatenated(shards).y, [0.25, -3.5])
        options.labelColumn = .name("a")
        let byName = try LocalCommunicator.run(size: 2) { comm in try DataLoader.read(DataSource(path: path), options: options, comm: comm) }
        XCTAssertEqual(concatenated(byName).y, [1, 2])
        XCTAssertEqual(concatenated(byName).x, [0.25, -3.5])
        XCTAssertEqual(shards[0].0.classes, 0)
        XCTAssertNil(shards[0].1)
    }

    func testLIBSVMMatchesAReferenceParse() throws {
        var random = TestRandom(seed: 2)
        var text = ""
        var dense: [[Float]] = []
        var labels: [Float] = []
        for i in 0..<90 {
            var row = [Float](repeating: 0, count: 12)
            var tokens = [i % 2 == 0 ? "+1" : "-1"]
            if i % 7 == 0 { tokens.append("qid:3") }
            for j in 0..<12 where Int.random(in: 0..<3, using: &random) == 0 {
                let v = Float(Int.random(in: -999...999, using: &random)) / 8
                row[j] = v
                tokens.append("\(j + 1):\(v)")
            }
            if i == 40 { tokens.append("12:0.5"); row[11] = 0.5 }
            dense.append(row)
            labels.append(i % 2 == 0 ? 1 : 0)
            text += tokens.joined(separator: " ") + (i % 3 == 0 ? " # comment" : "") + "\n"
        }
        let path = write("data.svm", text)
        for p in 1...5 {
            let shards = try LocalCommunicator.run(size: p) { comm in try DataLoader.read(DataSource(path: path), options: ReadOptions(), comm: comm) }
            XCTAssertEqual(shards[0].0.features, 12, "the largest index over all ranks")
            let (x, y) = concatenated(shards)
            XCTAssertEqual(x, dense.flatMap { $0 }, "np=\(p)")
            XCTAssertEqual(y, labels)
            XCTAssertEqual(shards[0].1?.names, ["-1", "1"])
        }
        var options = ReadOptions()
        options.features = 20
        let wide = try LocalCommunicator.run(size: 2) { comm in try DataLoader.read(DataSource(path: path), options: options, comm: comm) }
        XCTAssertEqual(wide[0].0.features, 20)
    }

    /// Writes a .npy file the way numpy.save does (`writeNPYFile`).
    func writeNPY(_ name: String, descr: String, shape: [Int], bytes: [UInt8]) -> String {
        let path = "\(dir)/\(name)"
        writeNPYFile(path, descr: descr, shape: shape, bytes: bytes)
        return path
    }

    func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    func testNPYFeaturesAndLabelsFilesAndALabelColumn() throws {
        let rows = 37, d = 4
        let values = (0..<rows * d).map { Double($0) * 0.25 - 7 }
        let x64 = writeNPY("x64.npy", descr: "<f8", shape: [rows, d], bytes: bytes(values))
        let x32 = writeNPY("x32.npy", descr: "<f4", shape: [rows, d], bytes: bytes(values.map { Float($0) }))
        let y = writeNPY("y.npy", descr: "<i8", shape: [rows], bytes: bytes((0..<rows).map { Int64($0 % 3 * 10) }))
        let both = writeNPY("xy.npy", descr: "<i4", shape: [rows, 3], bytes: bytes((0..<rows * 3).map { Int32($0 % 3 == 2 ? $0 % 2 : $0) }))
        for p in 1...5 {
            for path in [x64, x32] {
                let shards = try LocalCommunicator.run(size: p) { comm in
                    try DataLoader.read(DataSource(path: path, labelsPath: y), options: ReadOptions(), comm: comm)
                }
                let (x, labels) = concatenated(shards)
                XCTAssertEqual(x, values.map { Float($0) })
                XCTAssertEqual(labels, (0..<rows).map { Float($0 % 3) })
                XCTAssertEqual(shards[0].1?.names, ["0", "10", "20"])
            }
            var options = ReadOptions()
            options.labelColumn = .last
            let (x, labels) = concatenated(try LocalCommunicator.run(size: p) { comm in
                try DataLoader.read(DataSource(path: both), options: options, comm: comm)
            })
            let expectedX: [Float] = (0..<rows).flatMap { (r: Int) -> [Float] in [Float(3 * r), Float(3 * r + 1)] }
            let expectedY: [Float] = (0..<rows).map { (r: Int) -> Float in Float((3 * r + 2) % 2) }
            XCTAssertEqual(x, expectedX)
            XCTAssertEqual(labels, expectedY)
        }
    }

    /// `labeled = false` (prediction input): every column is a feature, with or without a header, in CSV and
    /// `.npy`, on any number of ranks (more ranks than rows too), and `columns` sees the columns up front.
    /// LIBSVM and a labels file cannot be read that way: one usage error.
    func testInputWithoutLabelsIsAllFeatures() throws {
        var options = ReadOptions()
        options.labeled = false
        let withHeader = write("x.csv", "a,b,c\n1,2,3\n4,5,6\n-7,8.5,9\n")
        let bare = write("x.txt", "1 2 3\n4 5 6\n-7 8.5 9")
        let npy = writeNPY("x.npy", descr: "<f4", shape: [3, 3], bytes: bytes([1, 2, 3, 4, 5, 6, -7, 8.5, 9] as [Float]))
        for path in [withHeader, bare, npy] {
            for p in 1...5 {
                let shards = try LocalCommunicator.run(size: p) { comm in
                    try DataLoader.read(DataSource(path: path), options: options, comm: comm, features: 3)
                }
                let (x, y) = concatenated(shards)
                XCTAssertEqual(x, [1, 2, 3, 4, 5, 6, -7, 8.5, 9], "\(path), np=\(p)")
                XCTAssertEqual(y, [0, 0, 0])
                XCTAssertEqual(shards[0].0.classes, 0)
                XCTAssertNil(shards[0].1)
            }
        }
        XCTAssertEqual(try DataLoader.columns(DataSource(path: withHeader), options: options)?.count, 3)
        XCTAssertEqual(try DataLoader.columns(DataSource(path: withHeader), options: options)?.names, ["a", "b", "c"])
        XCTAssertNil(try DataLoader.columns(DataSource(path: bare), options: options)?.names)
        XCTAssertEqual(try DataLoader.columns(DataSource(path: npy), options: options)?.count, 3)
        XCTAssertNil(try DataLoader.columns(DataSource(path: write("s.svm", "1 1:2\n")), options: options))
        XCTAssertEqual(DataLoader.featureNames(DataSource(path: withHeader), options: options), ["a", "b", "c"])
        let svm = write("u.svm", "1 1:2\n0 2:3\n")
        for source in [DataSource(path: svm), DataSource(path: npy, labelsPath: npy)] {
            XCTAssertThrowsError(try LocalCommunicator.run(size: 2) { comm in
                try DataLoader.read(source, options: options, comm: comm, features: 3)
            }) { error in
                XCTAssertEqual(FailureKind(of: error), .usage, "\(error)")
                XCTAssertTrue("\(error)".contains("cannot be read without labels"), "\(error)")
            }
        }
    }

    func testNPYErrorsNameTheFileAndTheElement() {
        func fail(_ x: String, _ y: String?, ranks: Int = 3) -> String {
            let outcomes = try! LocalCommunicator.run(size: ranks) { comm -> String? in
                do { _ = try DataLoader.read(DataSource(path: x, labelsPath: y), options: ReadOptions(), comm: comm); return nil }
                catch let f as AgreedFailure { return f.message } catch { return "not agreed: \(error)" }
            }
            XCTAssertEqual(Set(outcomes.map { $0 ?? "" }).count, 1, "all ranks agree")
            return outcomes[0] ?? "no error"
        }
        var values = (0..<40).map { Float($0) }
        values[4 * 7 + 2] = .nan
        let x = writeNPY("nan.npy", descr: "<f4", shape: [10, 4], bytes: bytes(values))
        let y = writeNPY("y.npy", descr: "<i8", shape: [10], bytes: bytes((0..<10).map { Int64($0 % 2) }))
        XCTAssertEqual(fail(x, y), "\(x), X[7, 2]: nan is not a finite number")
        let short = writeNPY("short.npy", descr: "<i8", shape: [9], bytes: bytes((0..<9).map { Int64($0 % 2) }))
        let good = writeNPY("good.npy", descr: "<f8", shape: [10, 4], bytes: bytes((0..<40).map { Double($0) }))
        XCTAssertEqual(fail(good, short), "\(short): 9 labels but \(good) has 10 rows")
        let halves = writeNPY("halves.npy", descr: "<f8", shape: [10], bytes: bytes((0..<10).map { Double($0) / 2 }))
        XCTAssertEqual(fail(good, halves), "\(halves), y[1]: class label 0.5 is not an integer (use --task regression for real-valued targets)")
        let fortran = write("f.npy", "")
        _ = FileManager.default.createFile(atPath: fortran, contents: Data([0x93] + Array("NUMPY".utf8) + [1, 0, 70, 0]
            + Array("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }".padding(toLength: 69, withPad: " ", startingAt: 0).utf8) + [10]
            + [UInt8](repeating: 0, count: 16)))
        XCTAssertEqual(fail(fortran, y), "\(fortran): the array is in Fortran order; save it in C order (numpy.ascontiguousarray)")
        let truncated = writeNPY("t.npy", descr: "<f4", shape: [10, 4], bytes: bytes((0..<39).map { Float($0) }))
        XCTAssertTrue(fail(truncated, y).hasPrefix("\(truncated): the file is truncated"))
        XCTAssertEqual(fail(write("text.npy", "hello"), y), "\(dir)/text.npy: not a .npy file (no \\x93NUMPY magic)")
    }

    /// The kind of a data error survives the agreement, whichever rank found it: a file that is not there
    /// (or a directory) is `.noInput` (exit 66), one that does not parse is `.dataFormat` (65).
    func testMissingAndMalformedFilesAreTheirOwnKindsOnEveryRank() {
        func kinds(_ path: String, format: DataFormat? = nil, ranks: Int = 3) -> [FailureKind?] {
            try! LocalCommunicator.run(size: ranks) { comm -> FailureKind? in
                do { _ = try DataLoader.read(DataSource(path: path, format: format), options: ReadOptions(), comm: comm); return nil }
                catch let f as AgreedFailure { return f.failureKind } catch { return nil }
            }
        }
        XCTAssertEqual(kinds("\(dir)/missing.csv"), [.noInput, .noInput, .noInput])
        XCTAssertEqual(kinds(dir, format: .csv), [.noInput, .noInput, .noInput])
        XCTAssertEqual(kinds("\(dir)/missing.npy"), [.noInput, .noInput, .noInput])
        var lines = (1...60).map { "\($0 % 2),\($0).5,2" }
        lines[55] = "1,x,2"  // in the last rank's byte range
        XCTAssertEqual(kinds(write("bad.csv", lines.joined(separator: "\n"))), [.dataFormat, .dataFormat, .dataFormat])
        XCTAssertEqual(kinds(write("empty.csv", "")), [.dataFormat, .dataFormat, .dataFormat])
        XCTAssertEqual(kinds(write("bad.npy", "hello")), [.dataFormat, .dataFormat, .dataFormat])
    }

    // MARK: errors name the global line, whatever the number of ranks

    func failure(_ path: String, ranks: Int, options: ReadOptions = ReadOptions(), test: String? = nil) -> [String] {
        let outcomes = try! LocalCommunicator.run(size: ranks) { comm -> String? in
            do {
                let (train, mapping) = try DataLoader.read(DataSource(path: path), options: options, comm: comm)
                if let t = test {
                    _ = try DataLoader.read(DataSource(path: t), options: options, comm: comm, features: train.features, labels: mapping)
                }
                return nil
            } catch let f as AgreedFailure { return f.message } catch { return "not agreed: \(error)" }
        }
        return outcomes.map { $0 ?? "no error" }
    }

    func testErrorsNameTheGlobalLineAndColumnOnEveryRankCount() {
        var good = (1...60).map { "\($0 % 2),\($0).5,2" }
        func check(_ line: Int, _ replacement: String, _ expected: String, options: ReadOptions = ReadOptions()) {
            var lines = good
            lines[line - 1] = replacement
            let path = write("bad\(line).csv", lines.joined(separator: "\n") + "\n")
            for p in [1, 2, 3, 4, 7] {
                let messages = failure(path, ranks: p, options: options)
                XCTAssertEqual(Set(messages).count, 1, "every rank agrees: \(messages)")
                XCTAssertEqual(messages[0], "\(path), \(expected)", "np=\(p)")
            }
        }
        check(41, "1,2", "line 41: 2 fields, but the file has 3 (as line 1 shows)")
        check(53, "1,2,3,4", "line 53, column 4: 4 fields, but the file has 3 (as line 1 shows)")
        check(7, "0,abc,3", "line 7, column 2: \"abc\" is not a number")
        check(60, "0,1,NaN", "line 60, column 3: missing value (\"NaN\"): fill missing values with --missing zero or --missing mean")
        check(30, "0,1,-inf", "line 30, column 3: -inf is not a finite number (NaN and infinite values are not allowed)")
        check(22, "0,,3", "line 22, column 2: missing value (an empty field): fill missing values with --missing zero or --missing mean")
        check(33, "0,1e999,3", "line 33, column 2: 1e999 is outside the 32-bit float range")
        check(44, "0.5,1,3", "line 44, column 1: class label 0.5 is not an integer (use --task regression for real-valued targets)")
        good[0] = "label,a,b"
        check(12, "1,2 3,4", "line 12, column 2: \"2 3\" is not a number (is 'a' a text column? encode it with --categorical a or leave it out with --drop-columns a)")

        let train = write("train.csv", "0,1,2\n1,3,4\n")
        let narrow = write("narrow.csv", "0,1\n1,2\n")
        XCTAssertEqual(failure(train, ranks: 2, test: narrow)[1], "\(narrow): 1 features per row, but the training data has 2")
        let unseen = write("unseen.csv", "0,1,2\n1,3,4\n5,5,5\n")
        XCTAssertEqual(failure(train, ranks: 2, test: unseen)[1], "\(unseen), line 3: class label 5 does not occur in the training data")
        XCTAssertEqual(failure("\(dir)/missing.csv", ranks: 2)[0], "\(dir)/missing.csv: no such file")
        XCTAssertEqual(failure(write("empty.csv", ""), ranks: 3)[1], "\(dir)/empty.csv: the file is empty")
        XCTAssertEqual(failure(write("blank.csv", "a,b\n\n\n"), ranks: 2)[0], "\(dir)/blank.csv: no data rows")
        XCTAssertEqual(failure(dir, ranks: 2)[0], "\(dir) is a directory, not a data file")
        XCTAssertEqual(failure(write("train.data", "0,1,2\n1,3,4\n"), ranks: 2)[0],
                       "\(dir)/train.data: cannot tell the format from the file name; name it with --format (csv, libsvm, npy, hdf5)")
        XCTAssertEqual(failure(write("one.csv", "0,1\n0,2\n"), ranks: 2)[0],
                       "\(dir)/one.csv: every row has the same class label (0): classification needs at least two classes")
        let svm = write("bad.svm", "1 1:2 3:4\n0 2:1\n1 0:3\n")
        XCTAssertEqual(failure(svm, ranks: 3)[0], "\(svm), line 3, column 2: feature index 0: LIBSVM indices start at 1")
    }

    // MARK: validation split, standardisation, sampler

    func loadAll(_ path: String, ranks: Int, fraction: Double, standardize: Bool) throws -> [LoadedData] {
        try LocalCommunicator.run(size: ranks) { comm in
            let (train, mapping) = try DataLoader.read(DataSource(path: path), options: ReadOptions(), comm: comm)
            var loaded = LoadedData(train: train, labels: mapping, description: "")
            try loaded.prepare(validationFraction: fraction, standardize: standardize, seed: 11, comm: comm)
            return loaded
        }
    }

    func testValidationSplitAndStandardisationAreTheSameForAnyNumberOfRanks() throws {
        var random = TestRandom(seed: 4)
        let text = (0..<301).map { i in "\(i % 4),\(Float.random(in: 0...10, using: &random)),\(Float.random(in: -50...(-40), using: &random)),7" }
        let path = write("split.csv", text.joined(separator: "\n"))
        var reference: (train: [Float], validation: [Float], trainY: [Float], mean: [Float])?
        for p in 1...6 {
            let all = try loadAll(path, ranks: p, fraction: 0.25, standardize: true)
            var trainX: [Float] = [], validationX: [Float] = [], trainY: [Float] = []
            var next = (0, 0)
            for l in all {
                XCTAssertEqual(l.train.firstRow, next.0)
                XCTAssertEqual(l.validation!.firstRow, next.1)
                next = (next.0 + l.train.rows, next.1 + l.validation!.rows)
                trainX += l.train.x; trainY += l.train.y
                validationX += l.validation!.x
            }
            XCTAssertEqual(next.0 + next.1, 301)
            XCTAssertEqual(all[0].train.globalRows, next.0)
            XCTAssertGreaterThan(next.1, 40)
            XCTAssertLessThan(next.1, 110)
            let s = all[0].standardization!
            XCTAssertEqual(s.std[2], 1, "a constant feature keeps std 1")
            XCTAssertEqual(all[0].metadata["labels"], "[\"0\",\"1\",\"2\",\"3\"]")
            if let r = reference {
                XCTAssertEqual(trainX, r.train, "np=\(p)")
                XCTAssertEqual(validationX, r.validation, "np=\(p)")
                XCTAssertEqual(trainY, r.trainY)
                XCTAssertLessThan(maxRelativeDifference(s.mean, r.mean), 1e-6)
            } else {
                reference = (trainX, validationX, trainY, s.mean)
                let n = Double(next.0)
                let mean0 = stride(from: 0, to: trainX.count, by: 3).map { Double(trainX[$0]) }.reduce(0, +) / n
                let var0 = stride(from: 0, to: trainX.count, by: 3).map { Double(trainX[$0]) * Double(trainX[$0]) }.reduce(0, +) / n
                XCTAssertEqual(mean0, 0, accuracy: 1e-5)
                XCTAssertEqual(var0, 1, accuracy: 1e-4)
            }
        }
    }

    /// With shards of uneven sizes (cut by bytes), every global batch is still the same set of rows.
    func testBatchesAreTheSameForAnyNumberOfRanksOnUnevenShards() throws {
        var lines: [String] = []
        for i in 0..<211 { lines.append("\(i % 2)," + String(repeating: "0", count: i % 13 == 0 ? 200 : 0) + "1" + ",\(i)") }
        let path = write("uneven.csv", lines.joined(separator: "\n"))
        var reference: [[Float]] = []
        for p in 1...8 {
            let shards = try LocalCommunicator.run(size: p) { comm in try DataLoader.read(DataSource(path: path), options: ReadOptions(), comm: comm).0 }
            if p > 2 { XCTAssertNotEqual(Set(shards.map(\.rows)).count, 1, "shards are uneven") }
            let sampler = BatchSampler(rows: 211, batchSize: 20, seed: 3)
            var batches: [[Float]] = []
            for step in 0..<(2 * sampler.stepsPerEpoch) {
                var ids: [Float] = []
                for s in shards {
                    for row in sampler.localRows(ofStep: step, in: s.globalRange) { ids.append(s.x[(row - s.firstRow) * 2 + 1]) }
                }
                XCTAssertEqual(ids.count, sampler.globalBatchRows(ofStep: step))
                batches.append(ids.sorted())
            }
            XCTAssertEqual(batches[sampler.stepsPerEpoch - 1].count, 11, "the last batch is short")
            if reference.isEmpty { reference = batches } else { XCTAssertEqual(batches, reference, "np=\(p)") }
        }
    }
}
