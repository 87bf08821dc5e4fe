import XCTest
import Foundation
import DMLComm
import DMLData
import DMLPredict
import DMLStatus
import DMLTraining
import DMLTestSupport

/// Feature hashing from training to prediction: the model file records the map (`feature_hash`), and
/// `PredictionJob` on the training file, hashing with it, scores what the training run's own evaluation of
/// that file scored; CSR and dense readings predict the same; a hashed model refuses input it cannot hash.
final class HashedPredictionTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = MPIRunner.temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Binary or 3-class LIBSVM rows with indices up to 100,000 (so only hashing makes them a small model).
    func write(_ name: String, classes: Int) -> String {
        var random = TestRandom(seed: 8)
        var text = ""
        for i in 0..<150 {
            var indices = Set<Int>()
            while indices.count < 6 { indices.insert(Int.random(in: 1...100_000, using: &random) % (i % 2 == 0 ? 300 : 100_000) + 1) }
            let label = classes == 2 ? (i % 3 == 0 ? "-1" : "+1") : String(i % classes)
            text += label + indices.sorted().map { " \($0):\(Float(Int.random(in: 1...16, using: &random)) / 4)" }.joined() + "\n"
        }
        let path = "\(dir)/\(name)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func trainHashed(_ path: String, model: ModelKind, bits: Int, ranks: Int) throws -> (JobResult, String) {
        var c = JobConfiguration()
        c.model.kind = model
        c.data.path = path
        c.data.testPath = path
        c.data.hashBits = bits
        c.optimization.epochs = 2
        c.optimization.batchSize = 25
        c.outputs.output = "\(dir)/\(model.rawValue).safetensors"
        c.outputs.evalEvery = 0
        c.outputs.collectiveTimeout = 30
        let results = try LocalCommunicator.run(size: ranks, timeout: 120) { comm in
            try TrainingJob(configuration: c, comm: comm, output: .silent).run()
        }
        return (results[0], c.outputs.output!)
    }

    func predict(_ model: String, _ data: String, ranks: Int, sparse: SparseMode = .auto) throws -> [PredictionResult] {
        var job = PredictionConfiguration(model: model, data: data, evaluate: true, collectiveTimeout: 30)
        job.sparse = sparse
        return try LocalCommunicator.run(size: ranks, timeout: 60) { comm in
            try PredictionJob(configuration: job, comm: comm, output: .silent).run()
        }
    }

    func testHashedModelPredictsWhatTrainingEvaluated() throws {
        for (model, classes) in [(ModelKind.logistic, 2), (.softmax, 3)] {
            let path = write("\(model.rawValue).svm", classes: classes)
            let (trained, file) = try trainHashed(path, model: model, bits: 7, ranks: 2)
            let saved = try ModelFile.read(path: file)
            XCTAssertEqual(saved.featureHash, FeatureHash(bits: 7))
            XCTAssertEqual(saved.features, 128)
            for np in [1, 3] {
                for sparse in [SparseMode.auto, .on, .off] {
                    let results = try predict(file, path, ranks: np, sparse: sparse)
                    guard case let .classification(report)? = results[0].evaluation else { return XCTFail("no classification report") }
                    let what = "\(model) np=\(np) --sparse \(sparse)"
                    XCTAssertEqual(report.rows, 150, what)
                    XCTAssertEqual(report.logLoss, trained.test!.loss, accuracy: 1e-6 * trained.test!.loss, what)
                    XCTAssertEqual(report.accuracy, trained.test!.accuracy!, accuracy: 1e-12, what)
                }
            }
        }
    }

    func testSparseOnIsRefusedForDenseInput() {
        var c = PredictionConfiguration(model: "m.safetensors", data: "x.csv", evaluate: true)
        c.sparse = .on
        XCTAssertEqual(c.conflict(), "--sparse on keeps LIBSVM rows as CSR; --data x.csv is csv input, which stays dense")
        c.data = "x.svm"
        XCTAssertNil(c.conflict())
        var model = ModelFile(kind: .logistic, features: 2, outputs: 1, classes: 2, parameters: [0, 0, 0])
        model.standardization = Standardization(mean: [0, 0], std: [1, 1])
        XCTAssertEqual(c.conflict(with: model), "--sparse on: m.safetensors standardises its features, which would make CSR rows dense: give --sparse auto or off")
    }

    func testAHashedModelRefusesInputItCannotHash() throws {
        let path = write("h.svm", classes: 2)
        let (_, file) = try trainHashed(path, model: .logistic, bits: 5, ranks: 1)
        let csv = "\(dir)/x.csv"
        _ = FileManager.default.createFile(atPath: csv, contents: Data((0..<4).map { _ in (0..<32).map { _ in "1" }.joined(separator: ",") }.joined(separator: "\n").utf8))
        let messages = try LocalCommunicator.run(size: 2) { comm -> String in
            do { _ = try PredictionJob(configuration: PredictionConfiguration(model: file, data: csv, output: "\(self.dir)/p.csv"), comm: comm, output: .silent).run(); return "no error" }
            catch let f as AgreedFailure { return f.message }
        }
        XCTAssertEqual(Set(messages), ["feature hashing (--hash-bits) maps LIBSVM feature indices, but \(csv) is csv input"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/p.csv"), "nothing written")
        // A file whose map does not fit its width is refused as damaged.
        var model = try ModelFile.read(path: file)
        model.featureHash = FeatureHash(bits: 6)
        XCTAssertThrowsError(try ModelFile.decode(model.encode())) { error in
            XCTAssertTrue("\(error)".contains("feature_hash"), "\(error)")
        }
    }
}
