import XCTest
import Foundation
import DMLComm
@testable import DMLData
import DMLKernels
import DMLStatus
import DMLTestSupport

/// LIBSVM rows kept as CSR (`--sparse`): the parse equals scikit-learn's `load_svmlight_file` on a tricky
/// checked-in fixture, for any number of ranks; errors name the file, line and column; feature hashing maps
/// indices as the stated XXH3 map does (buckets computed in Python by the fixture's generator); the validation
/// split of CSR rows is the dense one's. (`DataReaderTests`' temporary directory and `write`.)
extension DataReaderTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/libsvm")

    struct Expected: Decodable {
        struct CSR: Decodable { let indptr: [Int]; let indices: [Int32]; let data: [Float] }
        let features: Int
        let indptr: [Int]
        let indices: [Int32]
        let data: [Float]
        let labels: [Float]
        let buckets4: [String: Int32]
        let buckets18: [String: Int32]
        let hashed4: CSR
    }

    func expected() throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("tricky.expected.json")))
    }

    /// The shards' CSR rows joined in rank order (checking first rows are prefix sums), and the labels.
    func joined(_ shards: [(Dataset, LabelMapping?)]) -> (CSRMatrix, [Float]) {
        var all = CSRMatrix(columns: shards[0].0.features), y: [Float] = []
        var next = 0
        for (d, _) in shards {
            XCTAssertEqual(d.firstRow, next)
            next += d.rows
            guard let csr = d.csr else { XCTFail("rank's rows are not CSR"); continue }
            XCTAssertEqual(csr.rows, d.rows)
            for r in 0..<csr.rows { all.append(row: r, of: csr) }
            y += d.y
        }
        return (all, y)
    }

    func readSparse(_ path: String, ranks: Int, _ configure: (inout ReadOptions) -> Void = { _ in }) throws -> [(Dataset, LabelMapping?)] {
        var options = ReadOptions()
        options.task = .regression      // labels as written, to compare with scikit-learn's
        configure(&options)
        return try LocalCommunicator.run(size: ranks) { comm in try DataLoader.read(DataSource(path: path), options: options, comm: comm) }
    }

    func testSparseTrickyFileEqualsScikitLearnsParseOnAnyNumberOfRanks() throws {
        let e = try expected()
        let path = Self.fixtures.appendingPathComponent("tricky.svm").path
        for p in 1...4 {
            let shards = try readSparse(path, ranks: p) { $0.sparse = .on }
            XCTAssertEqual(shards[0].0.features, e.features)
            let (csr, y) = joined(shards)
            XCTAssertEqual(csr.rowStarts, e.indptr, "np=\(p)")
            XCTAssertEqual(csr.indices, e.indices, "np=\(p)")
            XCTAssertEqual(csr.values, e.data, "np=\(p)")
            XCTAssertEqual(y, e.labels, "np=\(p)")
            // The dense reading is the same rows.
            let dense = try readSparse(path, ranks: p) { $0.sparse = .off }
            XCTAssertNil(dense[0].0.csr)
            XCTAssertEqual(dense.flatMap { $0.0.x }, csr.dense(), "np=\(p)")
        }
        // auto: 26 of 80 values non-zero (32 %) is above the 10 % rule, so dense.
        XCTAssertFalse(try readSparse(path, ranks: 2) { $0.sparse = .auto }[0].0.isSparse)
        // --features widens the rows.
        XCTAssertEqual(try readSparse(path, ranks: 2) { $0.sparse = .on; $0.features = 20 }[0].0.csr?.columns, 20)
    }

    func testSparseAutoChoosesCSRBelowTenPercentDensity() throws {
        // 2 non-zeros in 30 columns per row: 6.7 %.
        let path = write("thin.svm", (0..<20).map { "\($0 % 2) \($0 % 10 + 1):1 30:2" }.joined(separator: "\n") + "\n")
        XCTAssertTrue(try readSparse(path, ranks: 3) { $0.sparse = .auto }[0].0.isSparse)
        XCTAssertFalse(try readSparse(path, ranks: 3) { $0.sparse = .off }[0].0.isSparse)
    }

    func testSparseHashingIsTheStatedXXH3MapOnEveryRank() throws {
        let e = try expected()
        for (i, b) in e.buckets4 { XCTAssertEqual(FeatureHash(bits: 4)!.bucket(Int(i)!), b, "index \(i)") }
        for (i, b) in e.buckets18 { XCTAssertEqual(FeatureHash(bits: 18)!.bucket(Int(i)!), b, "index \(i)") }
        XCTAssertNil(FeatureHash(bits: 0))
        XCTAssertNil(FeatureHash(bits: 32))
        XCTAssertNotNil(FeatureHash(bits: 31))
        let map = FeatureHash(bits: 18)!
        XCTAssertEqual(map.description, "xxh3-64 seed=0x444d4c5f48415348 bits=18")
        XCTAssertEqual(FeatureHash(description: map.description), map)
        XCTAssertNil(FeatureHash(description: "murmur3 seed=0x1 bits=18"))
        // A long row (the sorted path) hashes as the short rows' insertion sort would: by bucket, then index.
        let map3 = FeatureHash(bits: 3)!
        let long = write("long.svm", "1 " + (1...300).map { "\($0):\($0)" }.joined(separator: " ") + "\n0 5:1\n")
        let hashedLong = try readSparse(long, ranks: 1) { $0.sparse = .on; $0.hash = map3 }[0].0.csr!
        var sums = [Float](repeating: 0, count: 8)
        for i in 1...300 { sums[Int(map3.bucket(i))] += Float(i) }
        XCTAssertEqual(hashedLong.indices[0..<hashedLong.rowStarts[1]].map { Int($0) }, (0..<8).filter { sums[$0] != 0 })
        XCTAssertEqual(Array(hashedLong.values[0..<hashedLong.rowStarts[1]]), sums.filter { $0 != 0 })
        let path = Self.fixtures.appendingPathComponent("tricky.svm").path
        for p in 1...4 {
            let shards = try readSparse(path, ranks: p) { $0.sparse = .on; $0.hash = FeatureHash(bits: 4) }
            XCTAssertEqual(shards[0].0.features, 16)
            let (csr, y) = joined(shards)
            XCTAssertEqual(csr.rowStarts, e.hashed4.indptr, "np=\(p)")
            XCTAssertEqual(csr.indices, e.hashed4.indices, "np=\(p)")
            XCTAssertEqual(csr.values, e.hashed4.data, "np=\(p): values of one bucket added")
            XCTAssertEqual(y, e.labels)
        }
    }

    func sparseFailure(_ path: String, ranks: Int, _ configure: (inout ReadOptions) -> Void = { _ in }) -> [String] {
        var options = ReadOptions()
        options.sparse = .on
        configure(&options)
        let outcomes = try! LocalCommunicator.run(size: ranks) { comm -> String? in
            do { _ = try DataLoader.read(DataSource(path: path), options: options, comm: comm); return nil }
            catch let f as AgreedFailure { return f.message } catch { return "not agreed: \(error)" }
        }
        return outcomes.map { $0 ?? "no error" }
    }

    /// Each bad line on line 37 of 50, read on 1–4 ranks: one message, the same on every rank, naming the
    /// file, the global line and the column (the token's position on the line, the label being column 1).
    func testSparseErrorsNameTheFileLineAndColumn() {
        let good = (1...50).map { "\($0 % 2) 1:0.5 4:\($0).25 9:-1" }
        func check(_ replacement: String, _ expected: String, _ configure: (inout ReadOptions) -> Void = { _ in }) {
            var lines = good
            lines[36] = replacement
            let path = write("bad.svm", lines.joined(separator: "\n") + "\n")
            for p in 1...4 {
                let messages = sparseFailure(path, ranks: p, configure)
                XCTAssertEqual(Set(messages).count, 1, "every rank agrees: \(messages)")
                XCTAssertEqual(messages[0], "\(path), line 37, \(expected)", "np=\(p)")
            }
        }
        check("1 1:0.5 4:2 3:1", "column 4: feature index 3 is not above the previous one (4)")
        check("1 1:0.5 4:2 4:1", "column 4: feature index 4 appears twice in the row")
        check("0 1:0.5 12:1", "column 3: feature index 12 but the data has 10 features") { $0.features = 10 }
        check("0 0:0.5 2:1", "column 2: feature index 0: LIBSVM indices start at 1")
        check("0 1:0.5 2:abc", "column 3: \"abc\" is not a number")
        check("0 1:0.5 2:1e999", "column 3: 1e999 is not a finite number in 32-bit float range")
        check("0 1:0.5 2:nan", "column 3: nan is not a finite number (NaN and infinite values are not allowed)")
        check("x 1:0.5", "column 1: label \"x\" is not a number")
        check("1 1:0.5 7", "column 3: \"7\" is not index:value")
        // Hashing checks the indices as written, before they are mapped.
        check("1 1:0.5 4:2 3:1", "column 4: feature index 3 is not above the previous one (4)") { $0.hash = FeatureHash(bits: 3) }
        XCTAssertEqual(Set(sparseFailure(write("empty.svm", ""), ranks: 3)), ["\(dir)/empty.svm: the file is empty"])
        XCTAssertEqual(Set(sparseFailure(write("blank.svm", "\n# only a comment\n\n"), ranks: 2)), ["\(dir)/blank.svm: no feature values in any row"])
        let csv = write("dense.csv", "0,1\n1,2\n")
        XCTAssertEqual(Set(sparseFailure(csv, ranks: 2)),
                       ["--sparse on keeps LIBSVM rows as CSR, but \(csv) is csv input, which stays dense: use --sparse auto or off"])
        XCTAssertEqual(Set(sparseFailure(csv, ranks: 2) { $0.sparse = .auto; $0.hash = FeatureHash(bits: 4) }),
                       ["feature hashing (--hash-bits) maps LIBSVM feature indices, but \(csv) is csv input"])
    }

    /// A validation split of CSR rows holds the same rows, with the same global numbering, as the dense split.
    func testSparseValidationSplitOfCSRRowsIsTheDenseSplit() throws {
        var random = TestRandom(seed: 9)
        let text = (0..<200).map { i -> String in
            let cols = (1...40).filter { _ in Int.random(in: 0..<8, using: &random) == 0 }
            return "\(i % 3) " + cols.map { "\($0):\(Float(Int.random(in: -50...50, using: &random)) / 4)" }.joined(separator: " ")
        }.joined(separator: "\n") + "\n"
        let path = write("split.svm", text)
        for p in 1...4 {
            func split(_ mode: SparseMode) throws -> [LoadedData] {
                try LocalCommunicator.run(size: p) { comm in
                    var options = ReadOptions()
                    options.sparse = mode
                    options.features = 40
                    let (train, mapping) = try DataLoader.read(DataSource(path: path), options: options, comm: comm)
                    var loaded = LoadedData(train: train, labels: mapping, description: "")
                    try loaded.prepare(validationFraction: 0.25, standardize: false, seed: 3, comm: comm)
                    return loaded
                }
            }
            let sparse = try split(.on), dense = try split(.off)
            for (s, d) in zip(sparse, dense) {
                XCTAssertEqual(s.train.csr?.dense(), d.train.x, "np=\(p)")
                XCTAssertEqual(s.validation!.csr?.dense(), d.validation!.x, "np=\(p)")
                XCTAssertEqual(s.train.y, d.train.y)
                XCTAssertEqual(s.train.firstRow, d.train.firstRow)
                XCTAssertEqual(s.validation!.globalRows, d.validation!.globalRows)
            }
            // --standardize would centre the CSR rows: refused, one message on every rank.
            let refused = try LocalCommunicator.run(size: p) { comm -> String in
                var options = ReadOptions()
                options.sparse = .on
                let (train, _) = try DataLoader.read(DataSource(path: path), options: options, comm: comm)
                var loaded = LoadedData(train: train, description: "")
                do { try loaded.prepare(validationFraction: 0, standardize: true, seed: 3, comm: comm); return "no error" }
                catch let f as AgreedFailure { return f.message }
            }
            XCTAssertEqual(Set(refused).count, 1)
            XCTAssertTrue(refused[0].hasPrefix("--standardize centres every feature"), refused[0])
        }
    }

    func testSparseCSRMatrixOperations() {
        let x: [Float] = [0, 1, 0, 2,
                          0, 0, 0, 0,
                          3, 0, 4, 0]
        var m = CSRMatrix(dense: x, rows: 3, columns: 4)
        XCTAssertEqual(m.rowStarts, [0, 2, 2, 4])
        XCTAssertEqual(m.indices, [1, 3, 0, 2])
        XCTAssertEqual(m.dense(), x)
        XCTAssertEqual(m.bytes, 8 * 4 + 8 * 4)
        var g = CSRMatrix(columns: 0)
        [12, 10].withUnsafeBufferPointer { g.gather(m, rows: $0, firstRow: 10) }
        XCTAssertEqual(g.dense(), [3, 0, 4, 0, 0, 1, 0, 2])
        m.retainRows { $0 != 0 }
        XCTAssertEqual(m.dense(), [0, 0, 0, 0, 3, 0, 4, 0])
        XCTAssertEqual(m.rowStarts, [0, 0, 2])
    }
}
