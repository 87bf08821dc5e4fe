import XCTest
import Foundation
import DMLComm
@testable import DMLData
import DMLStatus
import DMLTestSupport

/// CSV as spreadsheets and pandas write it (issue 18): RFC 4180 quotes across byte-range shards, BOM,
/// delimiters, text labels, missing values, dropped columns, and the misuse that must stop a run.
final class EverydayCSVTests: XCTestCase {
    var dir = ""

    override func setUp() { dir = MPIRunner.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ bytes: [UInt8]) -> String {
        let path = "\(dir)/\(name)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }
    func write(_ name: String, _ text: String) -> String { write(name, Array(text.utf8)) }

    func read(_ path: String, ranks: Int, _ configure: (inout ReadOptions) -> Void = { _ in }) throws -> [LoadedFile] {
        var options = ReadOptions()
        configure(&options)
        let o = options
        return try LocalCommunicator.run(size: ranks) { comm in try DataLoader.load(DataSource(path: path), options: o, comm: comm) }
    }

    func failure(_ path: String, ranks: Int, _ configure: (inout ReadOptions) -> Void = { _ in }) -> String {
        var options = ReadOptions()
        configure(&options)
        let o = options
        let outcomes = try! LocalCommunicator.run(size: ranks) { comm -> String in
            do { _ = try DataLoader.load(DataSource(path: path), options: o, comm: comm); return "no error" }
            catch let f as AgreedFailure { return f.message } catch { return "not agreed: \(error)" }
        }
        XCTAssertEqual(Set(outcomes).count, 1, "every rank agrees: \(outcomes)")
        return outcomes[0]
    }

    /// Rows in global order over the shards, with the shards' first rows checked.
    func joined(_ shards: [LoadedFile]) -> (x: [Float], y: [Float]) {
        var x: [Float] = [], y: [Float] = [], next = 0
        for s in shards {
            XCTAssertEqual(s.data.firstRow, next)
            next += s.data.rows
            x += s.data.x
            y += s.data.y
        }
        return (x, y)
    }

    // MARK: quoted records and byte-range sharding

    /// A reference RFC 4180 record splitter over the whole file (what Python's csv module does).
    func referenceRecords(_ bytes: [UInt8]) -> [[UInt8]] {
        var records: [[UInt8]] = [], current: [UInt8] = [], inside = false
        for b in bytes {
            if b == UInt8(ascii: "\"") { inside.toggle() }
            if b == UInt8(ascii: "\n") && !inside {
                if current.last == UInt8(ascii: "\r") { current.removeLast() }
                records.append(current); current = []
            } else { current.append(b) }
        }
        if !current.isEmpty { records.append(current) }
        return records
    }

    /// Every record is read by exactly one rank, whole, for np 1…8 and every small chunk size, on files whose
    /// quoted fields hold newlines, CRLF, delimiters and doubled quotes, placed so that range boundaries fall
    /// inside them; the physical line numbers are the file's.
    func testQuotedRecordsAreSplitExactlyAtAnyRankCount() throws {
        var random = TestRandom(seed: 18)
        let pieces = ["1", "22", "\"a\nb\"", "\"x,y\"", "\"q\"\"q\"", "\"\r\n\"", "\"\"", "\"\n\n\n\"", "3.5", "\"long " + String(repeating: "z\n", count: 40) + "\""]
        for f in 0..<30 {
            var text = ""
            for _ in 0..<Int.random(in: 1...25, using: &random) {
                let fields = (0..<3).map { _ in pieces[Int.random(in: 0..<pieces.count, using: &random)] }
                text += fields.joined(separator: ",") + (Bool.random(using: &random) ? "\r\n" : "\n")
            }
            if Bool.random(using: &random) { text.removeLast() }
            let bytes = Array(text.utf8)
            let path = write("q\(f).csv", bytes)
            let input = try InputFile(path)
            let expected = referenceRecords(bytes)
            // The physical line each record starts on.
            var starts: [Int] = [], line = 0
            for r in expected { starts.append(line); line += 1 + r.filter { $0 == UInt8(ascii: "\n") }.count }
            for p in 1...8 {
                let counts = try (0..<p).map { try LineRange.quoteCount(input, LineRange.byteRange(size: input.size, rank: $0, ranks: p)) }
                var got: [[UInt8]] = [], gotLines: [Int] = [], base = 0
                for r in 0..<p {
                    var range = LineRange(file: input, range: LineRange.byteRange(size: input.size, rank: r, ranks: p))
                    range.quoteParity = counts[0..<r].reduce(0, +) & 1 == 1
                    let n = try range.forEachLine(chunk: 5) { record, index in
                        got.append(Array(record))
                        gotLines.append(base + index)
                    }
                    base += n
                }
                XCTAssertEqual(got, expected, "file \(f), np=\(p)")
                XCTAssertEqual(gotLines, starts, "file \(f), np=\(p): physical lines")
            }
        }
    }

    /// The reader on an adversarial file: quoted numbers and labels, quoted newlines inside a text label, CRLF,
    /// `""`, the delimiter inside quotes, at np 1…8: the rows equal a reference parse and the labels map alike.
    func testQuotedCSVMatchesTheReferenceAtEveryRankCount() throws {
        var random = TestRandom(seed: 4)
        var text = "\"label\",\"a, the first\",b\r\n"
        var labels: [String] = [], x: [Float] = []
        let names = ["cat", "dog", "say \"\"hi\"\"", "two\nlines", "x,y"]
        for i in 0..<200 {
            let k = Int.random(in: 0..<names.count, using: &random)
            labels.append(names[k].replacingOccurrences(of: "\"\"", with: "\""))
            let a = Float(i) / 4, b = Float(Int.random(in: -50...50, using: &random))
            x += [a, b]
            let quotedA = i % 3 == 0 ? "\"\(a)\"" : "\(a)"
            text += "\"\(names[k])\",\(quotedA), \(Int(b)) " + (i % 2 == 0 ? "\r\n" : "\n")
        }
        let path = write("adversarial.csv", text)
        let sorted = Array(Set(labels)).sorted()
        for p in 1...8 {
            let shards = try read(path, ranks: p)
            let (gx, gy) = joined(shards)
            XCTAssertEqual(gx, x, "np=\(p)")
            XCTAssertEqual(shards[0].labels?.names, sorted, "np=\(p)")
            XCTAssertEqual(gy.map { sorted[Int($0)] }, labels, "np=\(p)")
        }
        XCTAssertEqual(DataLoader.featureNames(DataSource(path: path), options: ReadOptions()), ["a, the first", "b"])
    }

    /// An unterminated quote, text after a closing quote, a stray quote and a field count that differs after
    /// unquoting are each one message with the file's line and column, on every rank count.
    func testQuoteErrorsNameLineAndColumn() {
        // Quote-free rows: the bad line's quote alone sends the reader down the quoted path.
        let rows = (0..<30).map { "\($0 % 2),\($0),\($0)" }
        func check(_ line: Int, _ replacement: String, _ expected: String) {
            var lines = rows
            lines[line - 1] = replacement
            let path = write("bad\(line).csv", lines.joined(separator: "\n") + "\n")
            for p in [1, 2, 3, 5, 8] { XCTAssertEqual(failure(path, ranks: p), "\(path), \(expected)", "np=\(p)") }
        }
        check(27, "1,2,\"3", "line 27, column 3: unterminated quote: the quoted field that starts here never closes (a quote inside a field is written \"\")")
        check(9, "1,\"2\"x,3", "line 9, column 2: text after the closing quote of a quoted field (a quote inside a field is written \"\")")
        check(14, "1,2\"2,3", "line 14, column 2: a quote inside an unquoted field (quote the whole field and write the quote as \"\")")
        check(20, "1,\"2\",4,5", "line 20, column 4: 4 fields, but the file has 3 (as line 1 shows)")
        check(21, "1,\"2\"", "line 21: 2 fields, but the file has 3 (as line 1 shows)")
        check(3, "\"a\nb\",2,3,4", "line 3, column 4: 4 fields, but the file has 3 (as line 1 shows)")
    }

    // MARK: BOM and delimiters

    func testByteOrderMarkAndDelimiters() throws {
        let bom = write("bom.csv", [0xEF, 0xBB, 0xBF] + Array("y,a,b\n0,1,2\n1,3,4\n".utf8))
        let withName = try read(bom, ranks: 2) { $0.labelColumn = .name("y") }
        XCTAssertEqual(joined(withName).x, [1, 2, 3, 4])
        XCTAssertEqual(DataLoader.featureNames(DataSource(path: bom), options: ReadOptions()), ["a", "b"])
        let headless = write("bom2.csv", [0xEF, 0xBB, 0xBF] + Array("0,1,2\n1,3,4\n".utf8))
        XCTAssertEqual(joined(try read(headless, ranks: 2)).x, [1, 2, 3, 4])
        // Semicolons with decimal commas (European spreadsheets), tabs with empty-free fields, detected.
        let semi = write("semi.csv", "y;a;b\n0;1,5;2\n1;\"3,25\";4\n")
        XCTAssertEqual(joined(try read(semi, ranks: 2)).x, [1.5, 2, 3.25, 4])
        let tab = write("tab.tsv", "y\ta\tb\n0\t1\t2\n1\t3\t4\n")
        XCTAssertEqual(joined(try read(tab, ranks: 2)).x, [1, 2, 3, 4])
        XCTAssertEqual(Delimiter.auto.resolved(firstRecord: Array("\"a;b\",c".utf8)), .comma)
        XCTAssertEqual(Delimiter.auto.resolved(firstRecord: Array("a b  c".utf8)), .whitespace)
        XCTAssertEqual(joined(try read(semi, ranks: 1) { $0.delimiter = .semicolon }).x, [1.5, 2, 3.25, 4])
    }

    // MARK: labels, missing values, columns

    /// Text labels are sorted and agreed across ranks; a test set's unseen label is refused at its line.
    func testTextLabelsAreAgreedAcrossRanks() throws {
        let rows = (0..<40).map { i in "\(["setosa", "virginica", "versicolor"][i % 3]),\(i),\(i * 2)" }
        let path = write("iris.csv", "species,a,b\n" + rows.joined(separator: "\n"))
        for p in [1, 2, 3, 7] {
            let shards = try read(path, ranks: p)
            XCTAssertEqual(shards[0].labels?.names, ["setosa", "versicolor", "virginica"])
            XCTAssertEqual(joined(shards).y, (0..<40).map { Float([0, 2, 1][$0 % 3]) })
        }
        let test = write("test.csv", "species,a,b\nsetosa,1,2\nrosa,3,4\n")
        let outcome = try! LocalCommunicator.run(size: 2) { comm -> String in
            let (train, mapping) = try DataLoader.read(DataSource(path: path), options: ReadOptions(), comm: comm)
            do { _ = try DataLoader.read(DataSource(path: test), options: ReadOptions(), comm: comm, features: train.features, labels: mapping); return "no error" }
            catch let f as AgreedFailure { return f.message }
        }
        XCTAssertEqual(outcome, Array(repeating: "\(test), line 3: class label \"rosa\" does not occur in the training data", count: 2))
    }

    /// `--missing`: refused by default; 0; or the global column means (the same for any rank count), which a
    /// test set reuses.
    func testMissingValuesErrorZeroAndGlobalMeans() throws {
        var lines = ["y,a,b"]
        for i in 0..<30 { lines.append("\(i % 2),\(i % 7 == 3 ? ["", "NA", "NaN", "null", "?"][i % 5] : String(i)),\(i % 11 == 5 ? "\"\"" : String(2 * i))") }
        let path = write("holes.csv", lines.joined(separator: "\n"))
        XCTAssertTrue(failure(path, ranks: 3).contains("missing value"))
        let present = (0..<30).filter { $0 % 7 != 3 }, presentB = (0..<30).filter { $0 % 11 != 5 }
        let meanA = Float(Double(present.reduce(0, +)) / Double(present.count))
        let meanB = Float(Double(presentB.map { 2 * $0 }.reduce(0, +)) / Double(presentB.count))
        for p in [1, 2, 4, 6] {
            let zero = joined(try read(path, ranks: p) { $0.missing = .zero }).x
            XCTAssertEqual(zero[2 * 3], 0)
            let shards = try read(path, ranks: p) { $0.missing = .mean }
            XCTAssertEqual(shards[0].missingFill?[0] ?? 0, meanA, accuracy: 1e-5 * meanA)
            XCTAssertEqual(shards[0].missingFill?[1] ?? 0, meanB, accuracy: 1e-5 * meanB)
            let x = joined(shards).x
            XCTAssertEqual(x[2 * 3], shards[0].missingFill![0])
            XCTAssertEqual(x[2 * 5 + 1], shards[0].missingFill![1])
            XCTAssertEqual(x[2 * 4], 4)
            XCTAssertEqual(shards.map { $0.missingFill! }, Array(repeating: shards[0].missingFill!, count: p))
        }
        let given = try read(path, ranks: 2) { $0.missing = .mean; $0.missingFill = [100, 200] }
        XCTAssertEqual(joined(given).x[2 * 3], 100)
    }

    /// A default pandas `to_csv()` file (row index first) and a label column with more than half as many classes
    /// as rows stop the run with one message; `--drop-columns` fixes the first.
    func testPandasIndexAndTooManyClassesAreRefused() throws {
        let rows = (0..<40).map { "\($0),\($0 % 3),\($0 * 7 % 5),\(($0 * 3) % 11)" }
        let path = write("pandas.csv", ",y,a,b\n" + rows.joined(separator: "\n"))
        for p in [1, 3] {
            XCTAssertEqual(failure(path, ranks: p) { $0.labelColumn = .name("y") },
                           "\(path): column 0 holds 0, 1, 2, … 39, a row index (pandas to_csv writes one unless index=False), not data: leave it out with --drop-columns 0, or name the label column with --label-column")
            let ids = write("ids.csv", "id,a\n" + (0..<40).map { "\(1000 + 3 * $0),\($0 % 4)" }.joined(separator: "\n"))
            XCTAssertEqual(failure(ids, ranks: p), "\(ids): 40 classes in 40 rows: more than half as many classes as rows, so the label column is likely not a label "
                           + "(a row index or an ID?): name the label with --label-column, leave columns out with --drop-columns, or use --task regression for a real-valued target")
            let fixed = try read(path, ranks: p) { $0.labelColumn = .name("y"); $0.dropColumns = [.index(0)] }
            XCTAssertEqual(fixed[0].data.features, 2)
            XCTAssertEqual(fixed[0].labels?.names, ["0", "1", "2"])
            var expected: [Float] = []
            for i in 0..<40 { expected.append(Float(i * 7 % 5)); expected.append(Float((i * 3) % 11)) }
            XCTAssertEqual(joined(fixed).x, expected)
        }
        XCTAssertEqual(DataLoader.featureNames(DataSource(path: path), options: { var o = ReadOptions(); o.labelColumn = .name("y"); o.dropColumns = [.name("a")]; return o }()),
                       ["", "b"])
        XCTAssertEqual(failure(path, ranks: 2) { $0.dropColumns = [.name("nope")] }.prefix(45), "\(path), line 1: --drop-columns nope".prefix(45))
        XCTAssertEqual(failure(path, ranks: 2) { $0.dropColumns = [.index(0)] },
                       "\(path): --drop-columns removes column 0, which --label-column names as the label")
    }

    /// `--categorical`: each such column becomes one 0/1 feature per category (the sorted union over all ranks) in
    /// its place; the same rows at any np; a test set takes the training categories, an unseen value giving an
    /// all-zero block, or with `unseenCategoryIsError` one message with its line and column.
    func testCategoricalColumnsAreOneHotEncodedWithAgreedCategories() throws {
        let colours = ["red", "\"dark, blue\"", "green", "NA"]
        let rows = (0..<40).map { "\($0 % 2),\(colours[($0 * 3) % 4]),\($0)" }
        let path = write("cat.csv", "y,colour,n\n" + rows.joined(separator: "\n") + "\n")
        let sorted = ["NA", "dark, blue", "green", "red"]
        var expected: [Float] = []
        for i in 0..<40 {
            let text = colours[(i * 3) % 4].replacingOccurrences(of: "\"", with: "")
            expected += sorted.map { $0 == text ? 1 : 0 } + [Float(i)]
        }
        for p in [1, 2, 3, 5] {
            let shards = try read(path, ranks: p) { $0.categorical = [.name("colour")] }
            XCTAssertEqual(shards[0].categories, [sorted], "np=\(p)")
            XCTAssertEqual(shards[0].data.features, 5)
            XCTAssertEqual(joined(shards).x, expected, "np=\(p)")
            XCTAssertEqual(shards[0].featureNames, sorted.map { "colour=" + $0 } + ["n"])
        }
        let test = write("cat-test.csv", "y,colour,n\n0,red,1\n1,purple,2\n")
        let zero = try read(test, ranks: 2) { $0.categorical = [.index(1)]; $0.categories = [sorted] }
        XCTAssertEqual(joined(zero).x, [0, 0, 0, 1, 1, 0, 0, 0, 0, 2])
        XCTAssertEqual(zero[0].notes.last, "1 values of --categorical columns not seen in training, encoded as all-zero")
        XCTAssertEqual(failure(test, ranks: 2) { $0.categorical = [.index(1)]; $0.categories = [sorted]; $0.unseenCategoryIsError = true },
                       "\(test), line 3, column 2: category \"purple\" of a --categorical column does not occur in the training data")
        XCTAssertEqual(failure(path, ranks: 1) { $0.categorical = [.index(0)] },
                       "\(path): --categorical names column 0, which --label-column names as the label (a text label needs no flag)")
    }

    /// `--categorical-encoding hash`: CSR rows 2^B wide, numeric feature i in LIBSVM index i's bucket, each category
    /// in the bucket of `COLUMN=VALUE`, values of a shared bucket added; the same rows at any np; and the flags
    /// refused without each other.
    func testHashedCategoricalColumnsAreCSRRows() throws {
        let rows = (0..<30).map { "\($0 % 2),\(["x", "y", "z"][$0 % 3]),\($0 % 4),\(Double($0) / 2)" }
        let path = write("h.csv", "y,kind,a,b\n" + rows.joined(separator: "\n") + "\n")
        let hash = FeatureHash(bits: 6)!
        for p in [1, 2, 4] {
            let shards = try read(path, ranks: p) { $0.categorical = [.name("kind")]; $0.categoricalEncoding = .hash; $0.hash = hash; $0.sparse = .on }
            XCTAssertEqual(shards[0].data.features, 64)
            XCTAssertEqual(shards[0].inputColumns, 3)
            var row = 0
            for s in shards {
                let csr = try XCTUnwrap(s.data.csr)
                for r in 0..<csr.rows {
                    var expected = [Float](repeating: 0, count: 64)
                    let i = row
                    expected[Int(hash.bucket(category: ["x", "y", "z"][i % 3], column: "kind"))] += 1
                    expected[Int(hash.bucket(1))] += Float(i % 4)
                    expected[Int(hash.bucket(2))] += Float(i) / 2
                    var got = [Float](repeating: 0, count: 64)
                    for k in csr.rowStarts[r]..<csr.rowStarts[r + 1] { got[Int(csr.indices[k])] = csr.values[k] }
                    XCTAssertEqual(got, expected, "row \(i), np=\(p)")
                    row += 1
                }
            }
            XCTAssertEqual(row, 30)
        }
        XCTAssertTrue(failure(path, ranks: 1) { $0.categorical = [.name("kind")]; $0.categoricalEncoding = .hash }.hasSuffix("give --hash-bits B"))
        XCTAssertTrue(failure(path, ranks: 1) { $0.categorical = [.name("kind")]; $0.hash = hash }.hasSuffix("give --categorical-encoding hash"))
    }

    /// Text feature columns are found from the first data line before anything is parsed, and named together
    /// with the flags that fix them; missing values there are not text; a categorical column is not refused.
    func testTextColumnsAreReportedAtStartUp() throws {
        let path = write("cars.csv", "price,colour,km,make,doors\n1,red,100,\"VW, Golf\",NA\n0,blue,200,Fiat,3\n")
        XCTAssertEqual(failure(path, ranks: 2),
                       "\(path), line 2: columns colour, make hold text (\"red\"): encode them with --categorical colour,make or leave them out with --drop-columns colour,make")
        XCTAssertEqual(failure(path, ranks: 2) { $0.categorical = [.name("colour")] },
                       "\(path), line 2: column make holds text (\"VW, Golf\"): encode it with --categorical make or leave it out with --drop-columns make")
        let ok = try read(path, ranks: 2) { $0.categorical = [.name("colour"), .name("make")]; $0.missing = .zero }
        XCTAssertEqual(ok[0].data.features, 6)
    }

    /// Flags that do not apply to the format are refused, not ignored.
    func testFlagsThatDoNotApplyAreRefused() {
        let csv = write("a.csv", "0,1\n1,2\n")
        XCTAssertEqual(failure(csv, ranks: 2) { $0.features = 10 },
                       "\(csv): --features sets the feature count of LIBSVM files; a csv file's columns give it (leave --features out)")
        let outcome = try! LocalCommunicator.run(size: 2) { comm -> String in
            do { _ = try DataLoader.read(DataSource(path: csv, labelsPath: "\(self.dir)/y.npy"), options: ReadOptions(), comm: comm); return "no error" }
            catch let f as AgreedFailure { return f.message }
        }
        XCTAssertEqual(outcome[0], "\(csv): --labels is a .npy file of labels for .npy features; a csv file holds its labels itself (choose the column with --label-column)")
        let svm = write("a.svm", "0 1:1\n1 2:1\n")
        XCTAssertEqual(failure(svm, ranks: 1) { $0.missing = .mean }, "\(svm): --missing applies to CSV files; this is libsvm input")
    }
}
