import XCTest
import Foundation
import DMLComm
import DMLData
import DMLPredict
import DMLStatus
import DMLTraining
import DMLTestSupport

/// `dml-predict` under a real mpirun: its scores against scikit-learn's (the committed fixtures of
/// `Tests/Fixtures/predict/`, written once by its `generate.py`), the same bytes on any number of ranks and the
/// numbers the model computes in process, input with and without labels, every bad input as one message with
/// its status and no file, a failed write that leaves nothing, and the README's numpy-only predictor.
final class PredictTests: XCTestCase {
    var dir = ""
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/predict").path

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func predict(_ ranks: Int, _ arguments: [String], environment: [String: String] = [:]) throws -> MPIRunner.Result {
        try MPIRunner.run(ranks: ranks, "dml-predict", arguments, environment: environment, timeout: 60)
    }

    func fixture(_ name: String) -> String { Self.fixtures + "/" + name }
    func contents(_ path: String) -> [UInt8]? { FileManager.default.contents(atPath: path).map { [UInt8]($0) } }
    func write(_ name: String, _ text: String) -> String {
        let path = dir + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    /// The fixtures' reports at np 1, 2 and 3: within 1e-6 of scikit-learn's numbers on the same predictions,
    /// which dml-predict writes again byte for byte (else the fixture no longer applies and says so).
    func testReportsMatchScikitLearnAtOneTwoAndThreeRanks() throws {
        for name in ["binary", "multiclass", "regression"] {
            let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture("expected_\(name).json"))))
            for np in 1...3 {
                let report = "\(dir)/\(name)-\(np).json", out = "\(dir)/\(name)-\(np).csv"
                let r = try predict(np, ["--model", fixture("model_\(name).safetensors"), "--data", fixture("eval_\(name).csv"), "--evaluate",
                                         "--report", report, "--output", out] + (name == "regression" ? [] : ["--proba"]))
                XCTAssertEqual(r.status, 0, r.stderr)
                XCTAssertEqual(contents(out), contents(fixture("predictions_\(name).csv")),
                               "\(name) np=\(np): dml-predict now writes other predictions than the fixture's scores were computed on: run Tests/Fixtures/predict/generate.py again")
                let got = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report)))
                XCTAssertEqual(JSONComparison.mismatches(got, expected), [], "\(name) np=\(np)")
                XCTAssertTrue(r.stdout.contains(name == "regression" ? "MSE" : "weighted avg"), r.stdout)
            }
        }
    }

    /// One model's predictions at np 1, 2, 3 and 5, in every output form, are the same bytes; the numbers are
    /// the bits `ModelFile.makeModel().predict` gives in this process on the whole file (standardised with the
    /// model's statistics), and the labels its most probable classes. A trained MLP with standardisation,
    /// and the fixtures' logistic and linear models.
    func testPredictionsAreTheSameBytesOnAnyNumberOfRanksAndWhatTheModelComputesInProcess() throws {
        var random = TestRandom(seed: 77)
        var lines = ["label," + (0..<12).map { "x\($0)" }.joined(separator: ",")]
        for i in 0..<1500 {
            let x = random.floats(12, in: -3...3)
            let label = [10, 20, 30, 40][(x[0] > 0 ? 1 : 0) + (x[1] + x[2] > 0 ? 2 : 0)]
            lines.append("\(label)," + x.map { String(format: "%.4f", $0 * 100 + 7) }.joined(separator: ",") + (i % 7 == 0 ? "\r" : ""))
        }
        let data = write("data.csv", lines.joined(separator: "\n") + "\n")
        let model = dir + "/mlp.safetensors"
        let trained = try MPIRunner.run(ranks: 2, "dml-train", ["--data", data, "--model", "mlp", "--hidden", "16,8", "--standardize",
                                                                 "--epochs", "3", "--output", model])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let cases = [(model, data), (fixture("model_binary.safetensors"), fixture("eval_binary.csv")),
                     (fixture("model_regression.safetensors"), fixture("eval_regression.csv"))]
        for (c, (modelPath, dataPath)) in cases.enumerated() {
            let file = try ModelFile.read(path: modelPath)
            let forms = file.task == .regression ? [("values.csv", []), ("values.npy", [])]
                : [("labels.csv", []), ("labels.npy", []), ("proba.csv", ["--proba"]), ("proba.npy", ["--proba"])]
            var first: [String: [UInt8]] = [:]
            for np in [1, 2, 3, 5] {
                for (form, flags) in forms {
                    let out = "\(dir)/\(c)-\(np)-\(form)"
                    let r = try predict(np, ["--model", modelPath, "--data", dataPath, "--output", out] + flags)
                    XCTAssertEqual(r.status, 0, r.stderr)
                    let bytes = try XCTUnwrap(contents(out))
                    if let f = first[form] { XCTAssertEqual(bytes, f, "case \(c) \(form): np=\(np) differs from np=1") } else { first[form] = bytes }
                }
            }
            // In process: the model file's own model on the whole file.
            var options = ReadOptions()
            options.task = .regression
            var (whole, _) = try LocalCommunicator.run(size: 1) { comm in
                try DataLoader.read(DataSource(path: dataPath), options: options, comm: comm, features: file.features)
            }[0]
            file.standardization?.apply(to: &whole)
            let network = file.makeModel()
            var outputs = [Float](repeating: 0, count: whole.rows * network.outputs)
            network.predict(parameters: file.parameters, x: whole.x, rows: whole.rows, into: &outputs)
            let predictions = Predictions(outputs: outputs, rows: whole.rows, width: network.outputs, classes: file.classes)
            let npyForm = file.task == .regression ? "values.npy" : "proba.npy"
            let npy = try XCTUnwrap(first[npyForm])
            let dataStart = 10 + Int(npy[8]) + Int(npy[9]) << 8
            let written = stride(from: dataStart, to: npy.count, by: 4).map { i in
                Float(bitPattern: UInt32(npy[i]) | UInt32(npy[i + 1]) << 8 | UInt32(npy[i + 2]) << 16 | UInt32(npy[i + 3]) << 24)
            }
            let inProcess: [Float] = file.task == .regression ? outputs
                : (0..<whole.rows).flatMap { r in (0..<file.classes).map { Float(predictions.probability(r, $0)) } }
            XCTAssertEqual(written.map(\.bitPattern), inProcess.map(\.bitPattern), "case \(c): the file holds the in-process outputs' bits")
            if file.task == .classification {
                let labels = file.labels!
                let expected = "prediction\n" + (0..<whole.rows).map { labels[predictions.predictedClass($0)] + "\n" }.joined()
                XCTAssertEqual(first["labels.csv"], Array(expected.utf8), "case \(c): labels are the most probable classes")
            }
        }
    }

    /// Input without labels (CSV with and without a header, `.npy`) gives the same predictions as the labelled
    /// file; the label column is found by the model's feature names wherever it is; `--label-column none` on a
    /// labelled file and `--evaluate` on an unlabelled one are refused.
    func testInputWithAndWithoutLabels() throws {
        let model = fixture("model_regression.safetensors")
        let rows = try String(contentsOfFile: fixture("eval_regression.csv"), encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",") }
        let features = rows.map { $0.dropFirst().joined(separator: ",") }.joined(separator: "\n") + "\n"
        let unlabelled = write("x.csv", features)
        let noHeader = write("x-bare.csv", features.split(separator: "\n").dropFirst().joined(separator: "\n") + "\n")
        let labelLast = write("x-last.csv", rows.map { ($0.dropFirst() + [$0[0]]).joined(separator: ",") }.joined(separator: "\n") + "\n")
        var reference: [UInt8]?
        for (data, flags) in [(fixture("eval_regression.csv"), [String]()), (unlabelled, []), (noHeader, []), (labelLast, []),
                              (labelLast, ["--label-column", "last"])] {
            let out = dir + "/out-\(reference == nil ? 0 : 1).npy"
            let r = try predict(2, ["--model", model, "--data", data, "--output", out] + flags)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains(data == unlabelled || data == noHeader ? "no labels" : "labels in"), r.stdout)
            if let reference { XCTAssertEqual(contents(out), reference, "\(data) \(flags)") } else { reference = contents(out) }
        }
        let none = try predict(2, ["--model", model, "--data", fixture("eval_regression.csv"), "--label-column", "none", "--output", dir + "/n.csv"])
        XCTAssertEqual(none.status, FailureKind.dataFormat.exitStatus, none.stderr)
        XCTAssertTrue(none.stderr.contains("6 columns, but the model"), none.stderr)
        let evaluate = try predict(2, ["--model", model, "--data", unlabelled, "--evaluate"])
        XCTAssertEqual(evaluate.status, FailureKind.usage.exitStatus, evaluate.stderr)
        XCTAssertTrue(evaluate.stderr.contains("has none"), evaluate.stderr)
    }

    /// Each bad input of issue 16: one message, from one rank, the status of its `FailureKind`, and no output
    /// file (nor a temporary) left in the output's directory.
    func testEachBadInputIsOneMessageWithItsStatusAndNoFile() throws {
        let good = fixture("model_binary.safetensors"), data = fixture("eval_binary.csv")
        let bytes = try XCTUnwrap(contents(good))
        _ = FileManager.default.createFile(atPath: dir + "/truncated.safetensors", contents: Data(bytes.prefix(bytes.count - 9)))
        var damaged = bytes
        damaged[damaged.count - 3] ^= 0x10
        _ = FileManager.default.createFile(atPath: dir + "/damaged.safetensors", contents: Data(damaged))
        // Format 2: the same bytes with one digit of the header changed (the version is checked before the seal).
        let version = Array("\"format_version\":\"1\"".utf8)
        let at = try XCTUnwrap((0...(bytes.count - version.count)).first { Array(bytes[$0..<($0 + version.count)]) == version })
        var newer = bytes
        newer[at + version.count - 2] = UInt8(ascii: "2")
        _ = FileManager.default.createFile(atPath: dir + "/newer.safetensors", contents: Data(newer))
        let foreignHeader = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
        _ = FileManager.default.createFile(atPath: dir + "/foreign.safetensors",
                                           contents: Data(withUnsafeBytes(of: UInt64(foreignHeader.utf8.count).littleEndian, Array.init)
                                                          + Array(foreignHeader.utf8) + [0, 0, 128, 63]))
        let wide = write("wide.csv", "y,a,b,c,d,e,f\n1,1,2,3,4,5,6\n-1,1,2,3,4,5,6\n")
        let unseen = write("unseen.csv", "y,f0,f1,f2,f3\n1,0,0,0,0\n-1,1,1,1,1\n7,2,2,2,2\n1,3,3,3,3\n")
        let out = dir + "/out/predictions.csv"
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
        let cases: [(args: [String], kind: FailureKind, message: String)] = [
            (["--model", dir + "/missing.safetensors", "--data", data, "--output", out], .noInput, "missing.safetensors: no such model file"),
            (["--model", dir + "/truncated.safetensors", "--data", data, "--output", out], .dataFormat, "truncated.safetensors: is not a usable DML model"),
            (["--model", dir + "/damaged.safetensors", "--data", data, "--output", out], .dataFormat, "the file is damaged"),
            (["--model", dir + "/newer.safetensors", "--data", data, "--output", out], .dataFormat, "written by a newer DML"),
            (["--model", dir + "/foreign.safetensors", "--data", data, "--output", out], .dataFormat, "it is not a DML model file"),
            (["--model", data, "--data", data, "--output", out], .dataFormat, "is not a usable DML model"),
            (["--model", good, "--data", wide, "--output", out], .dataFormat, "wide.csv: 7 columns, but the model"),
            (["--model", good, "--data", unseen, "--evaluate", "--output", out], .dataFormat,
             "unseen.csv, line 4: class label 7 does not occur in the training data"),
            (["--model", good, "--data", data, "--output", data], .usage, "--output \(data) is the same file as --data"),
            (["--model", good, "--data", data, "--output", dir + "/no/such/dir/p.csv"], .cannotCreate, "directory \(dir)/no/such/dir does not exist"),
            (["--model", fixture("model_regression.safetensors"), "--data", fixture("eval_regression.csv"), "--proba", "--output", out], .usage,
             "--proba: \(fixture("model_regression.safetensors")) is a regression model (linear)"),
            (["--model", good, "--data", data], .usage, "nothing to do"),
            (["--model", good, "--data", data, "--output", dir + "/p.parquet"], .usage, "name the predictions file .csv or .npy"),
        ]
        let jobs = cases.map(\.args)
        let results = MPIRunner.twoAtATime(jobs.count) { j -> MPIRunner.Result? in
            try? MPIRunner.run(ranks: 2, "dml-predict", jobs[j], timeout: 60)
        }
        for (j, c) in cases.enumerated() {
            guard let r = results[j] else { XCTFail("\(c.args): could not run"); continue }
            XCTAssertEqual(r.status, c.kind.exitStatus, "\(c.args): \(r.stderr)")
            XCTAssertEqual(r.stderr.components(separatedBy: "dml-predict: error").count - 1 + r.stderr.components(separatedBy: "Error: ").count - 1,
                           1, "\(c.args): one message: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(c.message), "\(c.args): expected \(c.message) in \(r.stderr)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/out"), [], "\(c.args): nothing written")
        }
        XCTAssertEqual(contents(data), contents(fixture("eval_binary.csv")))
    }

    /// A write that fails half-way on one rank (a full disk, `DML_FAULT=writefail:rank=R:step=1`): status 74 on
    /// every rank, the previous file untouched, no temporary left.
    func testAFailedWriteOnOneRankLeavesThePreviousFileAndNoTemporary() throws {
        let out = dir + "/predictions.csv"
        _ = write("predictions.csv", "old\n")
        for rank in [0, 2] {
            let r = try predict(3, ["--model", fixture("model_multiclass.safetensors"), "--data", fixture("eval_multiclass.csv"), "--output", out,
                                    "--proba"], environment: ["DML_FAULT": "writefail:rank=\(rank):step=1"])
            XCTAssertEqual(r.status, FailureKind.ioError.exitStatus, r.stderr)
            XCTAssertTrue(r.stderr.contains("cannot write \(out): write failed (injected fault)"), r.stderr)
            XCTAssertEqual(contents(out), Array("old\n".utf8))
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["predictions.csv"])
        }
    }

    /// The README's numpy-only predictor (the python block after `<!-- numpy-only predictor -->`), run on a
    /// standardised MLP and on the fixtures' logistic and linear models, prints what dml-predict writes with
    /// --proba (values for regression), within 1e-5. Skips, saying why, without python3 and numpy.
    func testTheREADMEScriptPredictsWhatDMLPredictWrites() throws {
        let probe = try? MPIRunner.runProcess("python3", ["-c", "import numpy"])
        try XCTSkipUnless(probe?.status == 0, "python3 with numpy is not importable here: the README's predictor was not run")
        let readme = try String(contentsOf: URL(fileURLWithPath: Self.fixtures + "/../../../README.md"), encoding: .utf8)
        let marker = try XCTUnwrap(readme.range(of: "<!-- numpy-only predictor -->"), "the README marks its predictor")
        let block = try XCTUnwrap(readme[marker.upperBound...].range(of: "```python\n"))
        let end = try XCTUnwrap(readme[block.upperBound...].range(of: "```"))
        let script = write("predict.py", String(readme[block.upperBound..<end.lowerBound]))
        XCTAssertLessThanOrEqual(readme[block.upperBound..<end.lowerBound].split(separator: "\n").count, 30, "about 20 lines")
        for name in ["multiclass", "binary", "regression"] {
            let model = fixture("model_\(name).safetensors")
            // The script reads features only: the evaluation file without its label column.
            let rows = try String(contentsOfFile: fixture("eval_\(name).csv"), encoding: .utf8).split(separator: "\n")
            let features = write("\(name)-x.csv", rows.map { $0.split(separator: ",").dropFirst().joined(separator: ",") }.joined(separator: "\n") + "\n")
            let python = try MPIRunner.runProcess("python3", [script, model, features])
            XCTAssertEqual(python.status, 0, python.stderr)
            let out = dir + "/\(name).csv"
            let r = try predict(2, ["--model", model, "--data", features, "--output", out] + (name == "regression" ? [] : ["--proba"]))
            XCTAssertEqual(r.status, 0, r.stderr)
            let ours = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").dropFirst().map { $0.split(separator: ",").map { Double($0)! } }
            let theirs = python.stdout.split(separator: "\n").map { $0.split(separator: ",").map { Double($0)! } }
            XCTAssertEqual(theirs.count, ours.count, name)
            XCTAssertLessThan(zip(ours, theirs).map { zip($0, $1).map { abs($0 - $1) }.max() ?? 0 }.max() ?? 1, 1e-5, name)
        }
    }

    /// `dml-bench predict` times the real job: its predictions file is dml-predict's, and its CSV row counts
    /// every row.
    func testDMLBenchPredictRunsTheSameJob() throws {
        let model = fixture("model_multiclass.safetensors"), data = fixture("eval_multiclass.csv")
        let r = try MPIRunner.run(ranks: 2, "dml-bench", ["predict", "--model", model, "--data", data, "--output", dir + "/bench.csv",
                                                          "--repeats", "2", "--csv", dir + "/times.csv"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(contents(dir + "/bench.csv"), contents(fixture("labels_multiclass.csv")))
        let lines = try String(contentsOfFile: dir + "/times.csv", encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        XCTAssertEqual(lines.first, ["tool", "np", "rows", "median_s", "rows_per_s", "read_s", "predict_s", "write_s", "oversubscribed"])
        XCTAssertEqual(Array(lines[1].prefix(3)), ["dml", "2", "280"])
        XCTAssertGreaterThan(Double(lines[1][4]) ?? 0, 0)
    }
}
