import XCTest
import DMLComm
import DMLData
import DMLModels
import DMLTraining

/// The identity a checkpoint records is derived from every stored field of `JobConfiguration`: this test
/// walks them, so a field added later cannot be forgotten — it must change the identity (a mutation below
/// shows it does) or be listed in `JobConfiguration.outsideTheMath` with its reason.
final class IdentityTests: XCTestCase {
    /// One change per field that is part of the math.
    let mutations: [String: (inout JobConfiguration) -> Void] = [
        "model.kind": { $0.model.kind = .mlp },
        "model.hidden": { $0.model.hidden = [64, 32] },
        "model.activation": { $0.model.activation = .tanh },
        "data.task": { $0.data.task = .regression },
        "data.labelColumn": { $0.data.labelColumn = .last },
        "data.standardize": { $0.data.standardize = true },
        "data.validationFraction": { $0.data.validationFraction = 0.1 },
        "data.partition": { $0.data.partition = .features },
        "data.sparse": { $0.data.sparse = .on },
        "data.hashBits": { $0.data.hashBits = 18 },
        "data.missing": { $0.data.missing = .mean },
        "data.dropColumns": { $0.data.dropColumns = [.index(2)] },
        "data.categorical": { $0.data.categorical = [.name("colour")] },
        "data.categoricalEncoding": { $0.data.categoricalEncoding = .hash },
        "data.syntheticRows": { $0.data.syntheticRows = 100 },
        "data.syntheticTestRows": { $0.data.syntheticTestRows = 10 },
        "data.syntheticFeatures": { $0.data.syntheticFeatures = 5 },
        "data.syntheticClasses": { $0.data.syntheticClasses = 3 },
        "optimization.batchSize": { $0.optimization.batchSize = nil },
        "optimization.shuffle": { $0.optimization.shuffle = .off },
        "optimization.lr": { $0.optimization.lr = 0.01 },
        "optimization.lrSearch": { $0.optimization.lrSearch = [0.1, 1] },
        "optimization.seed": { $0.optimization.seed = 9 },
        "optimization.optimizer": { $0.optimization.optimizer = .adamw },
        "optimization.momentum": { $0.optimization.momentum = 0.5 },
        "optimization.nesterov": { $0.optimization.nesterov = true },
        "optimization.beta1": { $0.optimization.beta1 = 0.8 },
        "optimization.beta2": { $0.optimization.beta2 = 0.99 },
        "optimization.adamEpsilon": { $0.optimization.adamEpsilon = 1e-6 },
        "optimization.adagradEpsilon": { $0.optimization.adagradEpsilon = 1e-6 },
        "optimization.weightDecay": { $0.optimization.weightDecay = 0.01 },
        "optimization.schedule": { $0.optimization.schedule = .cosine },
        "optimization.lrStepEvery": { $0.optimization.lrStepEvery = 7 },
        "optimization.lrGamma": { $0.optimization.lrGamma = 0.5 },
        "optimization.lrMin": { $0.optimization.lrMin = 0.001 },
        "optimization.warmup": { $0.optimization.warmup = 5 },
        "optimization.earlyStopping": { $0.optimization.earlyStopping = 3 },
        "optimization.lbfgsMemory": { $0.optimization.lbfgsMemory = 5 },
        "optimization.tol": { $0.optimization.tol = 1e-8 },
        "reduction.compress": { $0.reduction.compress = .bf16 },
        "reduction.errorFeedback": { $0.reduction.errorFeedback = true },
        "reduction.balance": { $0.reduction.balance = true },
        "reduction.reproducible": { $0.reduction.reproducible = true },
    ]

    func testEveryFieldEitherChangesTheIdentityOrIsListedWithAReason() {
        let base = JobConfiguration()
        let paths = base.leaves.map(\.path)
        XCTAssertEqual(Set(paths).count, paths.count, "field paths are unique")
        for path in paths {
            if let reason = JobConfiguration.outsideTheMath[path] {
                XCTAssertFalse(reason.isEmpty, "\(path): give the reason it does not change the math")
                XCTAssertNil(base.identity["config." + path], "\(path) is outside the math but in the identity")
                XCTAssertNil(mutations[path], "\(path) is listed both ways")
                continue
            }
            guard let mutate = mutations[path] else {
                XCTFail("\(path) is a new field: add a mutation to IdentityTests (it changes the math) or list it in "
                        + "JobConfiguration.outsideTheMath with the reason it does not")
                continue
            }
            var changed = base
            mutate(&changed)
            XCTAssertNotEqual(changed.identity["config." + path], base.identity["config." + path], "\(path): the mutation must change it")
            XCTAssertNotNil(base.identity["config." + path], path)
            // Only that field moves: the identity names exactly what differs.
            let moved = Set(base.identity.keys).union(changed.identity.keys).filter { base.identity[$0] != changed.identity[$0] }
            XCTAssertEqual(moved, ["config." + path], path)
        }
        for (path, _) in JobConfiguration.outsideTheMath { XCTAssertTrue(paths.contains(path), "a reason for a field that does not exist: \(path)") }
        for (path, _) in mutations { XCTAssertTrue(paths.contains(path), "a mutation for a field that does not exist: \(path)") }
    }

    /// Fields outside the math still take part in the ranks' agreement (a rank with another --output must
    /// not start either), all but the kernel threads, which may differ between ranks, and the configuration
    /// record, which repeats the others.
    func testTheAgreementCoversEveryFieldButThreads() {
        let base = JobConfiguration()
        var other = base
        other.outputs.output = "elsewhere.safetensors"
        XCTAssertEqual(base.identity, other.identity)
        XCTAssertNotEqual(base.agreementText, other.agreementText)
        XCTAssertEqual(base.agreementText.split(separator: "\n").count, base.leaves.count - 2)
        var threaded = base
        threaded.threads = 3
        XCTAssertEqual(base.agreementText, threaded.agreementText)
        // One rank given --threads, another left to its default: written or not, the same agreement.
        threaded.givenFlags = ["threads", "lr"]
        var defaulted = base
        defaulted.givenFlags = ["lr"]
        XCTAssertEqual(defaulted.agreementText, threaded.agreementText)
        defaulted.givenFlags = ["lr", "seed"]
        XCTAssertNotEqual(defaulted.agreementText, threaded.agreementText, "every other written flag still counts")
    }

    /// A checkpoint's identity survives encoding, and a mismatch names every differing field.
    func testACheckpointNamesEveryFieldThatDiffers() throws {
        var job = JobConfiguration()
        let c = Checkpoint(step: 3, epoch: 0, parameters: [1, 2], optimizerState: [], identity: job.identity, runID: "r1")
        let decoded = try Checkpoint.decode(c.encode())
        XCTAssertEqual(decoded, c)
        XCTAssertNil(decoded.mismatch(with: job.identity))
        job.model.activation = .tanh
        job.optimization.weightDecay = 0.5
        XCTAssertEqual(decoded.mismatch(with: job.identity),
                       "'model.activation' differs (the checkpoint has 'relu', this run has 'tanh'); "
                       + "'optimization.weightDecay' differs (the checkpoint has '0.0', this run has '0.5')")
    }
}
