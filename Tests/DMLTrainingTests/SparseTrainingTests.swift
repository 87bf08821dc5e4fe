import XCTest
import Foundation
import DMLComm
import DMLData
import DMLTraining
import DMLTestSupport

/// Training on LIBSVM rows kept as CSR (`--sparse on`) against the same rows dense (`--sparse off`): the final
/// parameters and losses agree within 1e-6 relative for linear, logistic, softmax and the MLP on 1–4 ranks; the
/// CSR data checksum does not depend on the number of ranks; the flags that need dense rows refuse `on`.
final class SparseTrainingTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = MPIRunner.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// `rows` LIBSVM lines over `features` columns, about 6 % non-zero, labels from a sparse linear teacher:
    /// `classes` classes, or real targets for 0.
    func libsvm(_ name: String, rows: Int, features: Int, classes: Int) -> String {
        var random = TestRandom(seed: 21)
        let teacher = (0..<(max(classes, 1) * features)).map { _ in Float.random(in: -1...1, using: &random) }
        var text = ""
        for _ in 0..<rows {
            var row: [(Int, Float)] = []
            for j in 0..<features where Int.random(in: 0..<16, using: &random) == 0 { row.append((j, Float(Int.random(in: -40...40, using: &random)) / 8)) }
            let scores = (0..<max(classes, 1)).map { c in row.reduce(Float(0)) { $0 + teacher[c * features + $1.0] * $1.1 } }
            let label = classes == 0 ? String(scores[0] + Float.random(in: -0.1...0.1, using: &random))
                : classes == 2 ? (scores[0] > 0 ? "+1" : "-1") : String(scores.indices.max { scores[$0] < scores[$1] }!)
            text += label + row.map { " \($0.0 + 1):\($0.1)" }.joined() + "\n"
        }
        let path = "\(dir)/\(name)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func configuration(_ path: String, model: ModelKind, sparse: SparseMode) -> JobConfiguration {
        var c = JobConfiguration()
        c.model.kind = model
        if model == .mlp {
            c.model.hidden = [12]
            c.model.activation = .tanh
        }
        c.data.path = path
        c.data.task = model == .linear ? .regression : .classification
        c.data.features = 80
        c.data.sparse = sparse
        c.optimization.epochs = 3
        c.optimization.batchSize = 40
        c.optimization.lr = model == .linear ? 0.05 : 0.3
        c.optimization.weightDecay = 1e-3
        c.optimization.optimizer = .momentum
        c.outputs.evalEvery = 0
        c.outputs.collectiveTimeout = 30
        return c
    }

    func train(_ c: JobConfiguration, ranks: Int) throws -> (parameters: [Float], loss: Double, sparse: Bool) {
        let results = try LocalCommunicator.run(size: ranks, timeout: 120) { comm -> ([Float], Double, Bool) in
            let job = TrainingJob(configuration: c, comm: comm, output: .silent)
            let result = try job.run()
            return (result.parameters, result.train.loss, (job.strategy as? Trainer)?.train.isSparse ?? false)
        }
        return results[0]
    }

    func relative(_ a: [Float], _ b: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for (u, v) in zip(a, b) { num += Double(u - v) * Double(u - v); den += Double(v) * Double(v) }
        return (num / max(den, 1e-300)).squareRoot()
    }

    func testCSRAndDenseTrainingAgreeForEveryModelOnOneToFourRanks() throws {
        let files: [ModelKind: String] = [.linear: libsvm("r.svm", rows: 240, features: 80, classes: 0),
                                          .logistic: libsvm("b.svm", rows: 240, features: 80, classes: 2),
                                          .softmax: libsvm("m.svm", rows: 240, features: 80, classes: 4)]
        for model in [ModelKind.linear, .logistic, .softmax, .mlp] {
            let path = files[model == .mlp ? .softmax : model]!
            for np in 1...4 {
                let sparse = try train(configuration(path, model: model, sparse: .on), ranks: np)
                let dense = try train(configuration(path, model: model, sparse: .off), ranks: np)
                XCTAssertTrue(sparse.sparse, "\(model) np=\(np): --sparse on trains on CSR rows")
                XCTAssertFalse(dense.sparse)
                let what = "\(model), np=\(np)"
                XCTAssertLessThan(relative(sparse.parameters, dense.parameters), 1e-6, what)
                XCTAssertEqual(sparse.loss, dense.loss, accuracy: 1e-6 * abs(dense.loss), what)
                XCTAssertGreaterThan(relative(sparse.parameters, [Float](repeating: 0, count: sparse.parameters.count)), 0, "it trained: \(what)")
            }
        }
    }

    func testTheCSRDataChecksumDoesNotDependOnTheRanks() throws {
        let path = libsvm("c.svm", rows: 90, features: 80, classes: 3)
        var sums: [UInt64] = []
        for np in 1...4 {
            sums.append(try LocalCommunicator.run(size: np) { comm -> UInt64 in
                var options = ReadOptions()
                options.sparse = .on
                let (data, _) = try DataLoader.read(DataSource(path: path), options: options, comm: comm)
                XCTAssertTrue(data.isSparse)
                return try Checksum.dataset(data, comm: comm)
            }[0])
        }
        XCTAssertEqual(Set(sums).count, 1, "\(sums)")
    }

    /// rcv1's shape (47,236 features, 700k rows) full batch on one rank: refused as dense rows (the batch's
    /// input alone would be 130 GB), 30 MB or so as CSR (the rows themselves are already in memory).
    func testTheMemoryBudgetCountsCSRRowsNotDenseOnes() {
        var c = JobConfiguration()
        c.model.kind = .logistic
        let (parameters, widths) = c.model.size(features: 47_236, outputs: 1)
        let dense = MemoryBudget.estimate(parameters: parameters, optimizerCopies: 0, rows: 700_000, widths: widths)
        let sparse = MemoryBudget.estimate(parameters: parameters, optimizerCopies: 0, rows: 700_000, widths: Array(widths.dropFirst()),
                                           sparseInputColumns: 47_236, nonZerosPerRow: 75)
        XCTAssertGreaterThan(dense, 100e9)
        // A batch's CSR counted at 424 MB (700k rows × 75 non-zeros), plus scratch and the one-output passes.
        XCTAssertGreaterThan(sparse, 424e6)
        XCTAssertLessThan(sparse, 500e6)
    }

    func testFlagsThatNeedDenseRowsRefuseSparseOn() {
        var c = configuration("x.svm", model: .logistic, sparse: .on)
        c.data.standardize = true
        XCTAssertEqual(c.conflict(), "--standardize centres every feature, which would make CSR rows dense: give --sparse off or auto, or leave out --standardize")
        c.data.sparse = .auto
        XCTAssertNil(c.conflict())
        XCTAssertEqual(c.data.effectiveSparse, .off, "auto reads dense rows for --standardize")
        c = configuration("x.svm", model: .logistic, sparse: .on)
        c.reduction.balance = true
        XCTAssertEqual(c.conflict(), "--balance moves dense rows between ranks: give --sparse off or auto with it")
        c = configuration("x.svm", model: .logistic, sparse: .on)
        c.data.partition = .features
        XCTAssertEqual(c.conflict(), "--partition features cuts dense columns: give --sparse off or auto with it")
        c.data.path = nil
        c.data.partition = .rows
        XCTAssertEqual(c.conflict(), "--sparse on keeps LIBSVM rows as CSR; the synthetic task is dense (give --data FILE.svm)")
        for bits in [0, 32, -1] {
            c = configuration("x.svm", model: .logistic, sparse: .auto)
            c.data.hashBits = bits
            XCTAssertEqual(c.conflict(), "--hash-bits must be in 1…31 (got \(bits))")
        }
        c.data.hashBits = 31
        XCTAssertEqual(c.conflict(), "--features fixes a LIBSVM file's width, which --hash-bits replaces with 2^B columns: give one of them")
        c.data.features = nil
        XCTAssertNil(c.conflict())
    }
}
