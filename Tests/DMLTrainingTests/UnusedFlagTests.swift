import XCTest
import DMLData
import DMLModels
@testable import DMLTraining

/// A flag that means something only beside another setting is refused without it (`unusedFlagConflict`),
/// whether written at its default value (`givenFlags`) or set to another value (a config file), and accepted
/// beside the setting that reads it.
final class UnusedFlagTests: XCTestCase {
    typealias Case = (flag: String, set: (inout JobConfiguration) -> Void, message: String, honoured: (inout JobConfiguration) -> Void)

    let cases: [Case] = [
        ("hidden", { $0.model.hidden = [5] }, "--hidden shapes the MLP's hidden layers; --model softmax has none", { $0.model.kind = .mlp }),
        ("activation", { $0.model.activation = .tanh }, "--activation shapes the MLP's hidden layers", { $0.model.kind = .mlp }),
        ("momentum", { $0.optimization.momentum = 0.5 }, "--momentum needs --optimizer momentum", { $0.optimization.optimizer = .momentum }),
        ("beta1", { $0.optimization.beta1 = 0.5 }, "--beta1 needs --optimizer adam or adamw", { $0.optimization.optimizer = .adam }),
        ("beta2", { $0.optimization.beta2 = 0.9 }, "--beta2 needs --optimizer adam or adamw", { $0.optimization.optimizer = .adamw }),
        ("adam-eps", { $0.optimization.adamEpsilon = 1e-3 }, "--adam-eps needs --optimizer adam or adamw", { $0.optimization.optimizer = .adam }),
        ("lr-step-every", { $0.optimization.lrStepEvery = 3 }, "--lr-step-every sets the step decay: it needs --lr-schedule step", { $0.optimization.schedule = .step }),
        ("lr-gamma", { $0.optimization.lrGamma = 0.5 }, "--lr-gamma sets the step decay", { $0.optimization.schedule = .step }),
        ("lr-min", { $0.optimization.lrMin = 0.01 }, "--lr-min is the cosine decay's floor", { $0.optimization.schedule = .cosine }),
        ("keep-checkpoints", { $0.outputs.keepCheckpoints = 2 }, "--keep-checkpoints needs --checkpoint-dir", { $0.outputs.checkpointDir = "/tmp/x" }),
        ("tune-cache", { $0.reduction.tuneCache = "/tmp/t.json" }, "--tune-cache holds the policy of --allreduce auto", { $0.reduction.allreduce = .auto }),
        ("label-column", { $0.data.labelColumn = .index(2) }, "--label-column describes a --data file; the synthetic task has none", { $0.data.path = "x.csv" }),
        ("header", { $0.data.header = true }, "--header describes a --data file", { $0.data.path = "x.csv" }),
        ("features", { $0.data.features = 10 }, "--features describes a --data file", { $0.data.path = "x.svm" }),
        ("synthetic-rows", { $0.data.path = "x.csv"; $0.data.syntheticRows = 5 }, "--synthetic-rows shapes the synthetic task, which --data x.csv replaces", { $0.data.path = nil }),
        ("synthetic-classes", { $0.data.path = "x.csv"; $0.data.syntheticClasses = 3 }, "--synthetic-classes shapes the synthetic task", { $0.data.path = nil }),
        ("allreduce", { $0.reduction.balance = true; $0.reduction.allreduce = .shm }, "--balance sums the gradient along its own chain of ranks",
         { $0.reduction.balance = false }),
        ("features", { $0.data.path = "x.svm"; $0.data.hashBits = 8; $0.data.features = 300 }, "--features fixes a LIBSVM file's width, which --hash-bits replaces",
         { $0.data.hashBits = nil }),
    ]

    func testEachFlagIsRefusedWithoutWhatReadsItAndHonouredBesideIt() {
        for c in cases {
            var job = JobConfiguration()
            c.set(&job)
            XCTAssertTrue(job.conflict()?.contains(c.message) == true, "\(c.flag): \(job.conflict() ?? "accepted")")
            c.honoured(&job)
            XCTAssertNil(job.conflict(), c.flag)
            // Written at its default value, it is refused all the same.
            var written = JobConfiguration()
            written.givenFlags = [c.flag]
            if c.flag.hasPrefix("synthetic") { written.data.path = "x.csv" }
            if c.flag == "tune-cache" { written.reduction.tuneCache = JobConfiguration().reduction.tuneCache ?? "/tmp/t.json" }
            if c.flag == "allreduce" { written.reduction.balance = true }
            XCTAssertNotNil(written.conflict(), "\(c.flag) written at its default")
        }
    }

    /// `--lr` beside `--lr-search` would be replaced by the search's choice; `--categorical-encoding` needs columns.
    func testLrWithTheSearchAndAnEncodingWithoutColumnsAreRefused() {
        var job = JobConfiguration()
        job.optimization.lrSearch = [0.1, 0.2]
        XCTAssertNil(job.conflict())
        job.givenFlags = ["lr", "lr-search"]
        XCTAssertEqual(job.conflict(), "--lr-search chooses the learning rate among its candidates: leave out --lr")
        var csv = JobConfiguration()
        csv.data.path = "x.csv"
        csv.data.categoricalEncoding = .hash
        XCTAssertTrue(csv.conflict()?.contains("--categorical-encoding says how --categorical columns are encoded") == true, csv.conflict() ?? "accepted")
    }
}
