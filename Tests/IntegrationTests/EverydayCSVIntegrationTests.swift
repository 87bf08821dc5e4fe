import XCTest
import Foundation
import DMLStatus
import DMLTraining
import DMLTestSupport

/// Everyday CSV files end to end under mpirun (issue 18): text class labels written back by `dml-predict`,
/// `--missing mean` stored in the model and applied at prediction, a pandas file refused and then fixed with
/// `--drop-columns`, and flags that do not apply refused.
final class EverydayCSVIntegrationTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) -> String {
        let path = dir + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    /// `dml-predict --model model --data x --output FILE.csv` at each rank count: the files' contents.
    func predictions(_ model: String, _ x: String, ranks: [Int]) throws -> [String] {
        try ranks.map { np in
            let out = dir + "/predicted-\(np).csv"
            let p = try MPIRunner.run(ranks: np, "dml-predict", ["--model", model, "--data", x, "--output", out])
            XCTAssertEqual(p.status, 0, p.stderr)
            return try String(contentsOfFile: out, encoding: .utf8)
        }
    }

    func errors(_ r: MPIRunner.Result, _ program: String) -> [Substring] {
        r.stderr.split(separator: "\n").filter { $0.hasPrefix("\(program): error") || $0.hasPrefix("Error:") }
    }

    /// A separable 3-class problem with text labels (one with a comma and a quote, so it is written quoted),
    /// semicolon-separated with a BOM and decimal commas, quoted fields and holes: trained at np 2 with
    /// `--missing mean`, predicted at np 1 and 3 on the features alone; the predictions are the original
    /// strings, the same bytes at any np, and score ≥ 90 % against the truth.
    func testTextLabelsAndMissingValuesRoundTripThroughTheModel() throws {
        let names = ["Iris setosa", "versicolor, \"big\"", "virginica"]
        var random = TestRandom(seed: 11)
        var train = "\u{FEFF}species;a;b\n", features = "a;b\n", truth: [String] = []
        func row(_ k: Int, _ i: Int) -> (String, String) {
            let a = Double(k) * 3 + Double(Int.random(in: -50...50, using: &random)) / 100
            let b = Double(2 - k) * 2 + Double(Int.random(in: -50...50, using: &random)) / 100
            let fa = i % 17 == 4 ? "NA" : String(format: "%.2f", a).replacingOccurrences(of: ".", with: ",")
            let fb = i % 13 == 6 ? "" : "\"\(String(format: "%.2f", b).replacingOccurrences(of: ".", with: ","))\""
            return (fa, fb)
        }
        for i in 0..<300 {
            let k = i % 3
            let (a, b) = row(k, i)
            train += "\"\(names[k].replacingOccurrences(of: "\"", with: "\"\""))\";\(a);\(b)\r\n"
        }
        for i in 0..<60 {
            let k = (i * 7) % 3
            let (a, b) = row(k, i)
            features += "\(a);\(b)\n"
            truth.append(names[k])
        }
        let data = write("train.csv", train), x = write("x.csv", features), model = dir + "/m.safetensors"
        let t = try MPIRunner.run(ranks: 2, "dml-train", ["--data", data, "--missing", "mean", "--epochs", "30", "--batch-size", "32",
                                                        "--lr", "0.1", "--output", model])
        XCTAssertEqual(t.status, 0, t.stderr)
        let file = try ModelFile.read(path: model)
        XCTAssertEqual(file.labels, names.sorted())
        XCTAssertEqual(file.missing, .mean)
        XCTAssertEqual(file.missingFill?.count, 2)
        let outputs = try predictions(model, x, ranks: [1, 3])
        XCTAssertEqual(outputs[0], outputs[1], "the same bytes at np 1 and 3")
        // Read the predictions back as CSV (the comma-and-quote label is quoted).
        let predicted = outputs[0].split(separator: "\n").dropFirst().map { line -> String in
            line.hasPrefix("\"") ? String(line.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"") : String(line)
        }
        XCTAssertEqual(predicted.count, 60)
        XCTAssertTrue(Set(predicted).isSubset(of: Set(names)), "\(Set(predicted))")
        let right = zip(predicted, truth).filter { $0 == $1 }.count
        XCTAssertGreaterThanOrEqual(right, 54, "accuracy \(right)/60")
        // Scored against text labels.
        let e = try MPIRunner.run(ranks: 2, "dml-predict", ["--model", model, "--data", data, "--evaluate"])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertTrue(e.stdout.contains("accuracy"), e.stdout)
        // .npy cannot hold text labels: refused before anything is read.
        let npy = try MPIRunner.run(ranks: 1, "dml-predict", ["--model", model, "--data", x, "--output", dir + "/p.npy"])
        XCTAssertEqual(npy.status, FailureKind.usage.exitStatus, npy.stderr)
        XCTAssertEqual(errors(npy, "dml-predict").count, 1, npy.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/p.npy"))
    }

    /// A default pandas `to_csv()` file: refused with one message naming `--drop-columns`; with it, trained; the
    /// model's `drop_columns` makes `dml-predict` leave the index out of a file of the same layout.
    func testPandasIndexIsRefusedThenDroppedForTrainingAndPrediction() throws {
        let rows = (0..<200).map { i in "\(i),\(i % 2),\(Double(i % 2) * 2 - 1 + Double(i % 7) / 10),\(Double(i % 5) / 10)" }
        let data = write("pandas.csv", ",y,a,b\n" + rows.joined(separator: "\n") + "\n"), model = dir + "/m.safetensors"
        let refused = try MPIRunner.run(ranks: 2, "dml-train", ["--data", data, "--label-column", "y", "--output", model])
        XCTAssertEqual(refused.status, FailureKind.dataFormat.exitStatus, refused.stderr)
        XCTAssertEqual(errors(refused, "dml-train").count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--drop-columns 0"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: model))
        let t = try MPIRunner.run(ranks: 2, "dml-train", ["--data", data, "--label-column", "y", "--drop-columns", "0", "--epochs", "5", "--output", model])
        XCTAssertEqual(t.status, 0, t.stderr)
        let file = try ModelFile.read(path: model)
        XCTAssertEqual(file.features, 2)
        XCTAssertEqual(file.dropColumns, ["0"])
        XCTAssertEqual(file.featureNames, ["a", "b"])
        let p = try MPIRunner.run(ranks: 2, "dml-predict", ["--model", model, "--data", data, "--evaluate"])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(p.stdout.contains("labels in column 'y'") || p.stdout.contains("labels in column"), p.stdout)
    }

    /// `--categorical` through the model: dml-predict one-hot encodes with the model's categories; an unseen value
    /// is an all-zero block by default and, with `--categorical-unseen error`, one message with its line and column
    /// (65) and no output.
    func testCategoricalThroughTrainAndPredict() throws {
        let rows = (0..<120).map { i in "\(["small", "large"][i % 2]),\(["a", "b", "c"][i % 3]),\(Double(i % 2) * 4 - 2 + Double(i % 5) / 10)" }
        let data = write("c.csv", "size,letter,v\n" + rows.joined(separator: "\n") + "\n"), model = dir + "/m.safetensors"
        let t = try MPIRunner.run(ranks: 2, "dml-train", ["--data", data, "--categorical", "letter", "--epochs", "10", "--output", model])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stdout.contains("--categorical: letter 3 categories"), t.stdout)
        let file = try ModelFile.read(path: model)
        XCTAssertEqual(file.features, 4)
        XCTAssertEqual(file.categorical, ["letter"])
        XCTAssertEqual(file.categories, [["a", "b", "c"]])
        XCTAssertEqual(file.featureNames, ["letter=a", "letter=b", "letter=c", "v"])
        let x = write("x.csv", "letter,v\nb,2.1\nzzz,-2\n")
        let out = dir + "/p.csv"
        let p = try MPIRunner.run(ranks: 2, "dml-predict", ["--model", model, "--data", x, "--output", out])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "prediction\nlarge\nsmall\n")
        XCTAssertTrue(p.stdout.contains("not seen in training"), p.stdout)
        let strict = try MPIRunner.run(ranks: 2, "dml-predict", ["--model", model, "--data", x, "--output", dir + "/q.csv", "--categorical-unseen", "error"])
        XCTAssertEqual(strict.status, FailureKind.dataFormat.exitStatus, strict.stderr)
        XCTAssertEqual(errors(strict, "dml-predict").count, 1, strict.stderr)
        XCTAssertTrue(strict.stderr.contains("\(x), line 3, column 1: category \"zzz\""), strict.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/q.csv"))
    }

    /// `--categorical-encoding hash --hash-bits`: trained CSR at np 2, the model records the map and its input
    /// columns, dml-predict hashes alike (the same bytes at np 1 and 2) and scores the training file.
    func testHashedCategoricalThroughTrainAndPredict() throws {
        let rows = (0..<120).map { i in "\(["small", "large"][i % 2]),\(["a", "b", "c"][i % 3]),\(Double(i % 2) * 4 - 2 + Double(i % 5) / 10)" }
        let data = write("h.csv", "size,letter,v\n" + rows.joined(separator: "\n") + "\n"), model = dir + "/h.safetensors"
        let t = try MPIRunner.run(ranks: 2, "dml-train", ["--data", data, "--categorical", "letter", "--categorical-encoding", "hash", "--hash-bits", "8",
                                                        "--model", "logistic", "--epochs", "10", "--output", model])
        XCTAssertEqual(t.status, 0, t.stderr)
        let file = try ModelFile.read(path: model)
        XCTAssertEqual(file.features, 256)
        XCTAssertEqual(file.categoricalEncoding, .hash)
        XCTAssertEqual(file.inputColumns, 2)
        let x = write("hx.csv", "letter,v\nb,2.1\nzzz,-2\n")
        let outputs = try predictions(model, x, ranks: [1, 2])
        XCTAssertEqual(outputs[0], outputs[1])
        XCTAssertEqual(outputs[0], "prediction\nlarge\nsmall\n")
        let e = try MPIRunner.run(ranks: 2, "dml-predict", ["--model", model, "--data", data, "--evaluate"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let unseen = try MPIRunner.run(ranks: 1, "dml-predict", ["--model", model, "--data", x, "--categorical-unseen", "error", "--output", dir + "/u.csv"])
        XCTAssertEqual(unseen.status, FailureKind.usage.exitStatus, unseen.stderr)
        // A missing value in those CSR rows: --missing mean cannot fill it (it was a NaN trained on, or under
        // --reproducible a crash): one message from one rank, no model.
        let gap = write("hm.csv", "size,letter,v\n" + rows.enumerated().map { $0 == 7 ? "small,a," : $1 }.joined(separator: "\n") + "\n")
        for extra in [[], ["--reproducible", "--batch-size", "64"]] {
            let m = try MPIRunner.run(ranks: 2, "dml-train", ["--data", gap, "--categorical", "letter", "--categorical-encoding", "hash", "--hash-bits", "8",
                                                            "--missing", "mean", "--model", "logistic", "--epochs", "1", "--output", dir + "/never.safetensors"] + extra)
            XCTAssertEqual(m.status, FailureKind.usage.exitStatus, m.stderr)
            XCTAssertEqual(errors(m, "dml-train").count, 1, m.stderr)
            XCTAssertTrue(m.stderr.contains("--missing mean fills dense rows, but these rows are kept as CSR"), m.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/never.safetensors"))
        }
    }

    /// `--labels` with a CSV file and `--features` with a dense file are refused (64), one message, no output.
    func testFlagsThatDoNotApplyAreRefused() throws {
        let data = write("d.csv", (0..<20).map { "\($0 % 2),\($0),\(20 - $0)" }.joined(separator: "\n") + "\n")
        for flags in [["--labels", dir + "/y.npy"], ["--features", "10"], ["--missing", "mean", "--data", dir + "/x.svm"]] {
            if flags.contains(dir + "/x.svm") { _ = write("x.svm", "0 1:1\n1 2:1\n") }
            let out = dir + "/never.safetensors"
            let r = try MPIRunner.run(ranks: 2, "dml-train", (flags.contains("--data") ? [] : ["--data", data]) + flags + ["--output", out])
            XCTAssertEqual(r.status, FailureKind.usage.exitStatus, "\(flags): \(r.stderr)")
            XCTAssertEqual(errors(r, "dml-train").count, 1, r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
    }
}
