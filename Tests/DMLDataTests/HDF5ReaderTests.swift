import XCTest
import Foundation
import DMLComm
@testable import DMLData
import DMLStatus
import DMLTestSupport

/// HDF5 input: files written here through the C library (`HDF5TestFile`), read by 1–4 ranks (threads with a
/// `LocalCommunicator`), each rank its hyperslab of rows.
final class HDF5ReaderTests: XCTestCase {
    var dir = ""

    override func setUp() { dir = MPIRunner.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Every rank's shard, in rank order.
    func read(_ source: DataSource, options: ReadOptions = ReadOptions(), ranks: Int) throws -> [(Dataset, LabelMapping?)] {
        try LocalCommunicator.run(size: ranks) { comm in try DataLoader.read(source, options: options, comm: comm) }
    }

    /// The shards joined: each starts where the previous ended, and together they are every row once.
    func whole(_ shards: [(Dataset, LabelMapping?)]) -> (x: [Float], y: [Float]) {
        var x: [Float] = [], y: [Float] = [], next = 0
        for (d, _) in shards {
            XCTAssertEqual(d.firstRow, next, "shards are contiguous, in rank order")
            XCTAssertEqual(d.rows, ShardPlan(rows: d.globalRows, ranks: shards.count).range(of: shards.firstIndex { $0.0.firstRow == d.firstRow }!).count,
                           "the rows of ShardPlan, as every format read by row")
            next += d.rows
            x += d.x
            y += d.y
        }
        XCTAssertEqual(next, shards[0].0.globalRows)
        return (x, y)
    }

    /// float32, float64, int32, int8 and uint8 features, contiguous and chunked + gzip (chunks that cut the
    /// columns too, and a chunk larger than a rank's shard): on 1–4 ranks the shards joined are the whole
    /// array, and the labels dataset becomes the same classes as a .npy labels file would.
    func testEveryNumericTypeAndLayoutReadsTheSameRowsOnAnyNumberOfRanks() throws {
        let rows = 37, d = 5
        var random = TestRandom(seed: 11)
        let integers = (0..<rows * d).map { _ in Int32.random(in: -100...100, using: &random) }
        let reals = (0..<rows * d).map { _ in Double(Float.random(in: -1000...1000, using: &random)) }
        let labels = (0..<rows).map { Int64([7, -1, 3][$0 % 3]) }
        let path = "\(dir)/data.h5"
        let file = HDF5TestFile(path)
        file.write("/f32/X", reals.map { Float($0) }, shape: [rows, d])
        file.write("/f64/X", reals, shape: [rows, d], chunk: [4, 2], gzip: 6)
        file.write("/i32/X", integers, shape: [rows, d], chunk: [20, d], gzip: 1)
        file.write("/i8/X", integers.map { Int8($0) }, shape: [rows, d], chunk: [3, d])
        file.write("/u8/X", integers.map { UInt8($0 + 100) }, shape: [rows, d])
        file.write("/y", labels, shape: [rows], chunk: [5], gzip: 9)
        file.write("/yf", labels.map { Double($0) / 4 }, shape: [rows])
        file.close()
        let expected: [String: [Float]] = [
            "/f32/X": reals.map { Float($0) }, "/f64/X": reals.map { Float($0) }, "/i32/X": integers.map { Float($0) },
            "/i8/X": integers.map { Float($0) }, "/u8/X": integers.map { Float($0 + 100) },
        ]
        let classes = labels.map { Float([-1, 3, 7].firstIndex(of: $0)!) }
        for (set, values) in expected.sorted(by: { $0.key < $1.key }) {
            for ranks in 1...4 {
                let shards = try read(DataSource(path: path, hdf5: HDF5Datasets(features: set, labels: "/y")), ranks: ranks)
                let (x, y) = whole(shards)
                XCTAssertEqual(x, values, "\(set), np=\(ranks)")
                XCTAssertEqual(y, classes, "\(set), np=\(ranks)")
                XCTAssertEqual(shards[0].1?.names, ["-1", "3", "7"])
                XCTAssertEqual(shards[0].0.features, d)
            }
        }
        // Regression targets from a float dataset, kept as values.
        var regression = ReadOptions()
        regression.task = .regression
        let targets = whole(try read(DataSource(path: path, hdf5: HDF5Datasets(features: "/f64/X", labels: "/yf")), options: regression, ranks: 3)).y
        XCTAssertEqual(targets, labels.map { Float(Double($0) / 4) })
        // --format hdf5 on a file without the extension.
        let renamed = "\(dir)/data.bin"
        try FileManager.default.copyItem(atPath: path, toPath: renamed)
        let byFormat = whole(try read(DataSource(path: renamed, format: .hdf5, hdf5: HDF5Datasets(features: "/f32/X", labels: "/y")), ranks: 2))
        XCTAssertEqual(byFormat.x, expected["/f32/X"])
    }

    /// Wide rows (4096 columns), so a rank's rows take several read pieces: contiguous, chunked by 50 rows
    /// (pieces rounded to whole chunks), chunks that split the columns, and big-endian storage, on 1–4 ranks.
    func testRowsSpanningManyReadPiecesAndBigEndianStorage() throws {
        let rows = 400, d = 4096
        let values = (0..<rows * d).map { Double(($0 * 7919) % 2001 - 1000) / 8 }
        let labels = (0..<rows).map { Int32($0 % 4) }
        let path = "\(dir)/wide.h5"
        let file = HDF5TestFile(path)
        file.write("/contiguous", values.map { Float($0) }, shape: [rows, d])
        file.write("/chunked", values.map { Float($0) }, shape: [rows, d], chunk: [50, d], gzip: 1)
        file.write("/tiles", values, shape: [rows, d], chunk: [33, 1000], gzip: 1)
        file.write("/big", values, shape: [rows, d], chunk: [64, d], bigEndian: true)
        file.write("/y", labels, shape: [rows], bigEndian: true)
        file.close()
        let expected = values.map { Float($0) }
        for set in ["/contiguous", "/chunked", "/tiles", "/big"] {
            for ranks in [1, 3, 4] {
                let (x, y) = whole(try read(DataSource(path: path, hdf5: HDF5Datasets(features: set, labels: "/y")), ranks: ranks))
                XCTAssertTrue(x == expected, "\(set), np=\(ranks)")
                XCTAssertEqual(y, labels.map { Float($0) }, "\(set), np=\(ranks)")
            }
        }
    }

    /// The same array as a .npy file and as an HDF5 dataset reads the same, bit for bit; and without a labels
    /// dataset the label is a column of the features (--label-column), as for a 2-D .npy array.
    func testAnHDF5DatasetReadsAsTheSameNPYArray() throws {
        let rows = 23, columns = 4
        var random = TestRandom(seed: 3)
        var values = (0..<rows * columns).map { _ in Float.random(in: -5...5, using: &random) }
        for r in 0..<rows { values[r * columns + columns - 1] = Float(r % 2) }   // the last column: a 0/1 label
        let h5 = "\(dir)/xy.h5"
        let file = HDF5TestFile(h5)
        file.write("xy", values, shape: [rows, columns], chunk: [6, columns], gzip: 4)
        file.close()
        let npy = writeNPY("xy.npy", values, shape: [rows, columns])
        var options = ReadOptions()
        options.labelColumn = .last
        for ranks in 1...4 {
            let a = whole(try read(DataSource(path: h5, hdf5: HDF5Datasets(features: "xy")), options: options, ranks: ranks))
            let b = whole(try read(DataSource(path: npy), options: options, ranks: ranks))
            XCTAssertEqual(a.x, b.x, "np=\(ranks)")
            XCTAssertEqual(a.y, b.y, "np=\(ranks)")
            XCTAssertEqual(a.x.count, rows * (columns - 1))
        }
        XCTAssertEqual(try DataLoader.columns(DataSource(path: h5, hdf5: HDF5Datasets(features: "xy")), options: options)?.count, columns)
    }

    /// Each bad input: one message, the same on every rank, naming the file and the dataset (and the element),
    /// with the exit status of its kind.
    func testErrorsNameTheFileAndTheDataset() throws {
        let path = "\(dir)/bad.h5"
        let file = HDF5TestFile(path)
        var x = (0..<40).map { Float($0) }
        file.write("/train/X", x, shape: [10, 4])
        file.write("/train/y", (0..<10).map { Int64($0 % 2) }, shape: [10])
        x[7 * 4 + 2] = .nan
        file.write("/train/nan", x, shape: [10, 4], chunk: [3, 4], gzip: 1)
        file.write("/train/huge", (0..<40).map { $0 == 5 ? 1e300 : Double($0) }, shape: [10, 4])
        file.write("/short", (0..<9).map { Int64($0 % 2) }, shape: [9])
        file.write("/halves", (0..<10).map { Double($0) / 2 }, shape: [10])
        file.write("/wide", (0..<30).map { Int32($0 % 2) }, shape: [10, 3])
        file.write("/flat", (0..<10).map { Float($0) }, shape: [10])
        file.write("/cube", (0..<24).map { Float($0) }, shape: [2, 3, 4])
        file.writeStrings("/names", (0..<10).map { "row\($0)" })
        file.writeRecords("/records", (0..<10).map { (Int32($0), Int32(-$0)) })
        file.writeScalar("/scalar", 1.5)
        file.write("/test/y", (0..<10).map { Int64($0 % 3) }, shape: [10])
        file.group("/empty")
        file.close()
        let text = "\(dir)/text.h5"
        _ = FileManager.default.createFile(atPath: text, contents: Data("label,a\n1,2\n".utf8))

        func fail(_ source: DataSource, options: ReadOptions = ReadOptions(), test: Bool = false) -> (String, FailureKind?) {
            let outcomes = try! LocalCommunicator.run(size: 3) { comm -> (String, FailureKind?) in
                do {
                    if test {
                        let (_, labels) = try DataLoader.read(DataSource(path: path, hdf5: HDF5Datasets(features: "/train/X", labels: "/train/y")),
                                                              options: options, comm: comm)
                        _ = try DataLoader.read(source, options: options, comm: comm, features: 4, labels: labels)
                    } else {
                        _ = try DataLoader.read(source, options: options, comm: comm)
                    }
                    return ("no error", nil)
                } catch let f as AgreedFailure { return (f.message, f.failureKind) } catch { return ("not agreed: \(error)", nil) }
            }
            XCTAssertEqual(Set(outcomes.map(\.0)).count, 1, "all ranks agree: \(outcomes)")
            return outcomes[0]
        }
        func h5(_ features: String, _ labels: String? = "/train/y", at file: String? = nil) -> DataSource {
            DataSource(path: file ?? path, hdf5: HDF5Datasets(features: features, labels: labels))
        }
        let datasets = "/cube, /flat, /halves, /names, /records, /scalar, /short, /test/y, /train/X, /train/huge, /train/nan, /train/y, /wide"
        let cases: [(DataSource, String, FailureKind)] = [
            (h5("/train/X", at: "\(dir)/missing.h5"), "\(dir)/missing.h5: no such file", .noInput),
            (h5("/train/X", at: text), "\(text): not an HDF5 file (file signature not found)", .dataFormat),
            (h5("/train/Z"), "\(path), /train/Z: no such dataset in the file (its datasets: \(datasets))", .dataFormat),
            (h5("/train/X", "/nope/y"), "\(path), /nope/y: no such dataset in the file (its datasets: \(datasets))", .dataFormat),
            (h5("/empty"), "\(path), /empty: not a dataset (a group, or another kind of object)", .dataFormat),
            (h5("/cube"), "\(path), /cube: shape (2, 3, 4) is not supported: the dataset must be 1-D or 2-D", .dataFormat),
            (h5("/scalar"), "\(path), /scalar: a scalar (no rows): the dataset must be 1-D or 2-D", .dataFormat),
            (h5("/flat"), "\(path), /flat: a 1-D dataset: the features must be 2-D (rows × features)", .dataFormat),
            (h5("/flat", nil), "\(path), /flat: a 1-D array holds no features: give a 2-D array with a label column, or features and --h5-labels /path/y", .dataFormat),
            (h5("/train/X", "/wide"), "\(path), /wide: labels must be 1-D (shape (10,)), not 3 columns", .dataFormat),
            (h5("/names"), "\(path), /names: string values are not supported: the dataset must hold numbers (float32, float64 or integers)", .dataFormat),
            (h5("/train/X", "/records"), "\(path), /records: compound (record) values are not supported: the dataset must hold numbers (float32, float64 or integers)", .dataFormat),
            (h5("/train/X", "/short"), "\(path), /short: 9 labels but /train/X has 10 rows", .dataFormat),
            (h5("/train/nan"), "\(path), /train/nan[7, 2]: nan is not a finite number", .dataFormat),
            (h5("/train/huge"), "\(path), /train/huge[1, 1]: 1e+300 is not a finite number in 32-bit float range", .dataFormat),
            (h5("/train/X", "/halves"), "\(path), /halves[1]: class label 0.5 is not an integer (use --task regression for real-valued targets)", .dataFormat),
            (DataSource(path: path), "--data \(path) is HDF5: name its features dataset with --h5-features (a 2-D dataset, e.g. /train/X)", .usage),
            (DataSource(path: path, labelsPath: "\(dir)/y.npy", hdf5: HDF5Datasets(features: "/train/X")),
             "--labels is a .npy file of labels for .npy features; the labels of HDF5 data are a dataset of the file: --h5-labels /path/y", .usage),
            (DataSource(path: text, format: .csv, hdf5: HDF5Datasets(features: "/train/X")),
             "--h5-features applies to HDF5 data (.h5, .hdf5 or --format hdf5), not to --data \(text) (csv)", .usage),
        ]
        for (source, message, kind) in cases {
            let (got, gotKind) = fail(source)
            XCTAssertEqual(got, message)
            XCTAssertEqual(gotKind, kind, message)
        }
        // A test label the training data lacks is named by its element.
        XCTAssertEqual(fail(h5("/train/X", "/test/y"), test: true).0, "\(path), /test/y[2]: class label 2 does not occur in the training data")
    }

    func writeNPY(_ name: String, _ values: [Float], shape: [Int]) -> String {
        let path = "\(dir)/\(name)"
        writeNPYFile(path, descr: "<f4", shape: shape, bytes: values.withUnsafeBytes { Array($0) })
        return path
    }
}
