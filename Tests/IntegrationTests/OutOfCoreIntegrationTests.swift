import XCTest
import Foundation
import DMLTraining
import DMLTestSupport

/// `dml-train --cache-dir` / `--max-memory`: the training rows streamed from per-rank shard caches, under a
/// real `mpirun`. The streamed run must give the in-memory run's bits; caches are reused, invalidated and
/// rebuilt as `ShardCache` says.
final class OutOfCoreIntegrationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 600 rows, label 0–3 then 6 features with 4 decimals.
    func csv(seed: UInt64 = 5, rows: Int = 600) -> String {
        var random = TestRandom(seed: seed)
        var text = "label,a,b,c,d,e,f\n"
        for _ in 0..<rows {
            let x = (0..<6).map { _ in Float.random(in: -2...2, using: &random) }
            let label = (x[0] + x[1] > 0 ? 1 : 0) + (x[2] > 0 ? 2 : 0)
            text += "\(label)," + x.map { String(format: "%.4f", $0) }.joined(separator: ",") + "\n"
        }
        let path = "\(dir)/train.csv"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    /// 500 LIBSVM rows, 4 non-zeros each among 300 columns.
    func libsvm() -> String {
        var random = TestRandom(seed: 9)
        var text = ""
        for _ in 0..<500 {
            var columns = Set<Int>()
            while columns.count < 4 { columns.insert(Int.random(in: 1...300, using: &random)) }
            text += (Bool.random(using: &random) ? "+1" : "-1") + columns.sorted().map { " \($0):\(Int.random(in: 1...9, using: &random))" }.joined() + "\n"
        }
        let path = "\(dir)/train.svm"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func tensors(_ path: String) throws -> [String: [Float]] {
        let file = try Safetensors.read(path: path)
        var out: [String: [Float]] = [:]
        for name in file.entries.keys { out[name] = try file.floats(name) }
        return out
    }

    func train(_ np: Int, _ args: [String], output: String, environment: [String: String] = [:]) throws -> MPIRunner.Result {
        try MPIRunner.run(ranks: np, "dml-train", args + ["--output", output], environment: environment)
    }

    func count(_ needle: String, in haystack: String) -> Int { haystack.components(separatedBy: needle).count - 1 }

    func testStreamedRowsGiveTheInMemoryBitsDenseAndCSR() throws {
        let data = csv()
        let common = ["--data", data, "--model", "mlp", "--hidden", "8", "--epochs", "3", "--batch-size", "32", "--lr", "0.1"]
        for np in 1...3 {
            let cache = "\(dir)/cache-\(np)"
            try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
            let memory = try train(np, common, output: "\(dir)/mem-\(np).safetensors")
            XCTAssertEqual(memory.status, 0, memory.stderr)
            // With --max-memory the rows fit in what it leaves over and are held in memory after the cache is
            // written; without it every batch is read from the cache.
            let limit = np == 2 ? ["--max-memory", "256M"] : []
            let streamed = try train(np, common + ["--cache-dir", cache] + limit, output: "\(dir)/streamed-\(np).safetensors")
            if np == 2 { XCTAssertTrue(streamed.stdout.contains("rows in memory (--max-memory)"), streamed.stdout) }
            XCTAssertEqual(streamed.status, 0, streamed.stderr)
            XCTAssertTrue(streamed.stdout.contains("training rows streamed from shard caches"), streamed.stdout)
            XCTAssertEqual(try tensors("\(dir)/streamed-\(np).safetensors"), try tensors("\(dir)/mem-\(np).safetensors"), "np=\(np): the same bits")
            let files = try FileManager.default.contentsOfDirectory(atPath: cache)
            XCTAssertEqual(files.filter { $0.hasSuffix(".dmlshard") }.count, np, "one cache per rank: \(files)")
            XCTAssertEqual(files.count, np, "no temporary left: \(files)")
        }
        // CSR rows (LIBSVM, --sparse on), and the full batch (unshuffled: runs of consecutive rows).
        let svm = libsvm()
        for extra in [["--batch-size", "40"], ["--batch-size", "full", "--epochs", "4"]] {
            try assertStreamedBits(2, ["--data", svm, "--model", "logistic", "--sparse", "on", "--epochs", "2", "--lr", "0.3"] + extra,
                                   name: "svm-\(extra[1])", says: "CSR)")
        }
        // A .npy file (written to the cache a piece of rows at a time as it is read: ChunkedParseTests), at np 3.
        var random = TestRandom(seed: 4)
        let npy = "\(dir)/train.npy"
        let values = (0..<500 * 6).map { i in i % 6 == 0 ? Float(Int.random(in: 0...2, using: &random)) : Float.random(in: -2...2, using: &random) }
        writeNPYFile(npy, descr: "<f4", shape: [500, 6], bytes: values.withUnsafeBytes { Array($0) })
        try assertStreamedBits(3, ["--data", npy, "--label-column", "0", "--model", "softmax", "--epochs", "2", "--batch-size", "30", "--lr", "0.1"],
                               name: "npy", says: "training rows streamed from shard caches")
    }

    /// Trains `args` at `np` ranks in memory and streamed from a fresh cache directory: both succeed, the streamed
    /// run's output says `says`, and the parameters are the same bits.
    func assertStreamedBits(_ np: Int, _ args: [String], name: String, says: String) throws {
        let cache = "\(dir)/\(name)-cache"
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        XCTAssertEqual(try train(np, args, output: "\(dir)/\(name)-mem.safetensors").status, 0, name)
        let s = try train(np, args + ["--cache-dir", cache], output: "\(dir)/\(name)-streamed.safetensors")
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertTrue(s.stdout.contains(says), s.stdout)
        XCTAssertEqual(try tensors("\(dir)/\(name)-streamed.safetensors"), try tensors("\(dir)/\(name)-mem.safetensors"), name)
    }

    /// Everyday CSV through the cache: text labels, a quoted note column (line breaks, commas and quotes inside)
    /// left out with --drop-columns, quoted numbers, missing values, a categorical column. With `--missing mean`,
    /// `--categorical` one-hot and hashed, the streamed run (cache written, then reused) writes the in-memory
    /// run's model file byte for byte — parameters and metadata (`input_columns`, the fill, the categories, the
    /// labels, the description) — at np 1 and 2 under --max-memory.
    func testEverydayCSVStreamsWithTheInMemoryModelFileBytes() throws {
        var random = TestRandom(seed: 21)
        var text = "note,label,colour,a,b\n"
        for i in 0..<300 {
            let note = i % 3 == 0 ? "\"first\nsecond, \"\"third\"\"\"" : "n\(i)"
            let colour = ["red", "green", "\"blue, dark\"", "grey"][Int.random(in: 0...3, using: &random)]
            let a = Float.random(in: -2...2, using: &random), b = Float.random(in: -2...2, using: &random)
            let label = a + b > 0 ? (colour == "red" ? "cat" : "dog") : "\"emu\nbird\""
            let aText = i % 7 == 0 ? "" : i % 11 == 0 ? "NA" : String(format: "%.4f", a)
            text += "\(note),\(label),\(colour),\(aText),\"\(String(format: "%.4f", b))\"\n"
        }
        let data = "\(dir)/everyday.csv"
        _ = FileManager.default.createFile(atPath: data, contents: Data(text.utf8))
        let common = ["--data", data, "--label-column", "label", "--model", "softmax", "--epochs", "2", "--batch-size", "16", "--lr", "0.1"]
        for (name, extra) in [("mean", ["--missing", "mean", "--drop-columns", "note,colour"]),
                              ("onehot", ["--missing", "mean", "--drop-columns", "note", "--categorical", "colour"]),
                              ("hash", ["--missing", "zero", "--drop-columns", "note", "--categorical", "colour", "--categorical-encoding", "hash",
                                        "--hash-bits", "6"])] {
            for np in [1, 2] {
                let args = common + extra
                let memory = "\(dir)/\(name)-\(np)-mem.safetensors"
                let m = try train(np, args, output: memory)
                XCTAssertEqual(m.status, 0, "\(name) np \(np): \(m.stderr)")
                let cache = "\(dir)/\(name)-\(np)-cache"
                try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
                for pass in ["written", "reused"] {
                    let out = "\(dir)/\(name)-\(np)-\(pass).safetensors"
                    let r = try train(np, args + ["--cache-dir", cache, "--max-memory", "200M"], output: out, environment: ["DML_DATA_STATS": "1"])
                    XCTAssertEqual(r.status, 0, "\(name) np \(np) \(pass): \(r.stderr)")
                    XCTAssertTrue(r.stdout.contains("training rows streamed from shard caches"), r.stdout)
                    XCTAssertEqual(count("parsed", in: r.stderr), pass == "written" ? np : 0, r.stderr)
                    let (a, b) = (try Safetensors.read(path: memory), try Safetensors.read(path: out))
                    XCTAssertEqual(b.metadata, a.metadata, "\(name) np \(np) \(pass): the same metadata")
                    XCTAssertEqual(b.metadata["input_columns"], name == "mean" ? "2" : "3")
                    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), try Data(contentsOf: URL(fileURLWithPath: memory)),
                                   "\(name) np \(np) \(pass): the same model file, byte for byte")
                }
            }
        }
    }

    func testCacheIsReusedInvalidatedByAChangedFileAndRebuiltWhenDamaged() throws {
        let data = csv()
        let cache = "\(dir)/cache"
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        let args = ["--data", data, "--model", "softmax", "--epochs", "2", "--batch-size", "50", "--cache-dir", cache]
        let stats = ["DML_DATA_STATS": "1"]   // each rank says when it parses
        let first = try train(2, args, output: "\(dir)/a.safetensors", environment: stats)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(count("parsed", in: first.stderr), 2, first.stderr)
        XCTAssertEqual(count("warning", in: first.stderr), 0, first.stderr)
        let reference = try tensors("\(dir)/a.safetensors")

        // Reused: nothing parsed, the same bits.
        let second = try train(2, args, output: "\(dir)/b.safetensors", environment: stats)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(count("parsed", in: second.stderr), 0, "the caches were reused: \(second.stderr)")
        XCTAssertEqual(count("warning", in: second.stderr), 0, second.stderr)
        XCTAssertEqual(try tensors("\(dir)/b.safetensors"), reference)

        // Damaged (one flipped byte in rank 1's rows; then rank 0's cut short): one warning, rebuilt, the same bits.
        let caches = try FileManager.default.contentsOfDirectory(atPath: cache).sorted().map { "\(cache)/\($0)" }
        XCTAssertEqual(caches.count, 2)
        for (victim, damage) in [(caches[1], "flip"), (caches[0], "truncate")] {
            let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: victim))
            let size = try handle.seekToEnd()
            if damage == "flip" {
                try handle.seek(toOffset: size / 2)
                let byte = try XCTUnwrap(handle.readData(ofLength: 1).first)
                try handle.seek(toOffset: size / 2)
                handle.write(Data([byte ^ 0x10]))
            } else {
                try handle.truncate(atOffset: size - 100)
            }
            try handle.close()
            let r = try train(2, args, output: "\(dir)/c.safetensors", environment: stats)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(count("warning", in: r.stderr), 1, "\(damage): one warning: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("is damaged") || r.stderr.contains("stale or damaged"), r.stderr)
            XCTAssertEqual(count("parsed", in: r.stderr), 2, r.stderr)
            XCTAssertEqual(try tensors("\(dir)/c.safetensors"), reference, damage)
        }

        // The data file changed (other content, the same size; a new modification time): invalidated with one
        // warning, and the run trains on the new rows (the in-memory run's bits on the new file).
        let original = try Data(contentsOf: URL(fileURLWithPath: data))
        _ = csv(seed: 6)
        let changed = try Data(contentsOf: URL(fileURLWithPath: data))
        XCTAssertNotEqual(original, changed)
        let m = try train(2, Array(args.dropLast(2)), output: "\(dir)/new-mem.safetensors")
        XCTAssertEqual(m.status, 0, m.stderr)
        let r = try train(2, args, output: "\(dir)/new.safetensors", environment: stats)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(count("warning", in: r.stderr), 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("another version of"), r.stderr)
        XCTAssertEqual(try tensors("\(dir)/new.safetensors"), try tensors("\(dir)/new-mem.safetensors"))
        XCTAssertNotEqual(try tensors("\(dir)/new.safetensors"), reference)
    }

    func testTwoJobsSharingACacheDirectory() throws {
        let data = csv(rows: 3000)
        let cache = "\(dir)/cache"
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        let args = ["--data", data, "--model", "softmax", "--epochs", "2", "--batch-size", "50", "--cache-dir", cache]
        XCTAssertEqual(try train(2, Array(args.dropLast(2)), output: "\(dir)/mem.safetensors").status, 0)
        // Both write the same caches at the same time: each renames a complete file; both train on the right rows.
        nonisolated(unsafe) let results = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 2)
        defer { results.deallocate() }
        let outputs = (0..<2).map { "\(dir)/job\($0).safetensors" }
        DispatchQueue.concurrentPerform(iterations: 2) { j in
            results[j] = (try? MPIRunner.run(ranks: 2, "dml-train", args + ["--output", outputs[j]]).status) ?? -1
        }
        XCTAssertEqual(Array(results), [0, 0])
        let reference = try tensors("\(dir)/mem.safetensors")
        for j in 0..<2 { XCTAssertEqual(try tensors("\(dir)/job\(j).safetensors"), reference) }
        let after = try train(2, args, output: "\(dir)/after.safetensors", environment: ["DML_DATA_STATS": "1"])
        XCTAssertEqual(count("parsed", in: after.stderr), 0, "the caches left are whole: \(after.stderr)")
        XCTAssertEqual(count("warning", in: after.stderr), 0, after.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache).count, 2, "no temporaries left")
    }

    func testAResumeInTheMiddleOfAStreamedEpochGivesTheSameBits() throws {
        let data = csv()
        let cache = "\(dir)/cache"
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        // 600 rows / 32 = 19 steps an epoch: step 27 is inside the second epoch.
        let args = ["--data", data, "--model", "softmax", "--epochs", "3", "--batch-size", "32", "--optimizer", "adam", "--lr", "0.05",
                    "--cache-dir", cache]
        let reference = "\(dir)/reference.safetensors"
        XCTAssertEqual(try train(2, Array(args.dropLast(2)), output: reference).status, 0)
        let run = args + ["--checkpoint-dir", "\(dir)/ckpt", "--checkpoint-every", "10"]
        let out = "\(dir)/out.safetensors"
        let killed = try train(2, run, output: out, environment: ["DML_FAULT": "crash:rank=0:step=27"])
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let resumed = try train(2, run + ["--resume"], output: out)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resum"), resumed.stdout)
        XCTAssertEqual(try tensors(out), try tensors(reference), "killed at step 27, resumed from step 20: the in-memory run's bits")
    }

    /// A shard cache cut short while the job streams from it (`DML_FAULT=truncate:rank=1:step=S`: rank 1 truncates
    /// its cache to 0 bytes as step S begins, as another process would): every rank stops with one message from
    /// one rank naming rank 1's cache, exit 74 (I/O error), no output, no hang. The read fails in a step window's
    /// load (dense rows: the next epoch's window), in a read a row (CSR rows), in a full-batch L-BFGS pass, and
    /// in the final evaluation (the last step's rows were already in the window).
    func testACacheCutShortMidRunIsOneAgreedError() throws {
        let data = csv(), svm = libsvm()
        let out = "\(dir)/out.safetensors"
        let softmax = ["--data", data, "--model", "softmax"]
        for (name, args, step) in [
            ("window", softmax + ["--epochs", "3", "--batch-size", "32", "--lr", "0.1"], 5),
            ("a read a row", ["--data", svm, "--model", "logistic", "--sparse", "on", "--epochs", "2", "--batch-size", "40"], 3),
            ("lbfgs", softmax + ["--optimizer", "lbfgs", "--steps", "8", "--tol", "0"], 3),
            ("evaluation", softmax + ["--epochs", "1", "--batch-size", "32", "--lr", "0.1"], 19),
        ] {
            let cache = "\(dir)/cache-\(name.replacingOccurrences(of: " ", with: "-"))"
            try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
            let r = try train(2, args + ["--cache-dir", cache], output: out, environment: ["DML_FAULT": "truncate:rank=1:step=\(step)"])
            XCTAssertEqual(r.status, 74, "\(name): \(r.stderr)")
            XCTAssertEqual(count("the shard cache ends early", in: r.stderr), 1, "\(name): one message: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("rank1of2.dmlshard: the shard cache ends early (at byte "), "\(name): names rank 1's cache: \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), name)
        }
    }

    func testBadSettingsAreRefusedWithOneMessage() throws {
        let data = csv()
        let cache = "\(dir)/cache"
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        let out = "\(dir)/out.safetensors"
        // A limit too small for one batch: one message from one rank naming the batch and the limit, exit 64, no
        // output, and refused before anything is read: nothing parsed, no cache written.
        let small = try train(2, ["--data", data, "--model", "mlp", "--hidden", "4096", "--batch-size", "64", "--cache-dir", cache, "--max-memory", "8M"],
                              output: out, environment: ["DML_DATA_STATS": "1"])
        XCTAssertEqual(small.status, 64, small.stderr)
        XCTAssertEqual(count("--max-memory 8M is too small for one batch: a batch of 32 rows a rank", in: small.stderr), 1, small.stderr)
        XCTAssertTrue(small.stderr.contains("need at least about") && small.stderr.contains("over the limit of 8M"), small.stderr)
        XCTAssertEqual(count("parsed", in: small.stderr), 0, "refused before the parse: \(small.stderr)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache), [], "no cache written")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // Rows that would not fit in memory without --cache-dir: refused before reading, with the hint. A 10 TB
        // sparse file (a header of 1000 columns, then zeros) reads as about 300 GB of rows a rank.
        let huge = "\(dir)/huge.csv"
        _ = FileManager.default.createFile(atPath: huge, contents: Data(((0..<1000).map { "c\($0)" }.joined(separator: ",") + "\n").utf8))
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: huge))
        try handle.truncate(atOffset: 10_000_000_000_000)
        try handle.close()
        let big = try train(2, ["--data", huge], output: out)
        XCTAssertEqual(big.status, 64, big.stderr)
        XCTAssertEqual(count("give --cache-dir DIR to stream them from a shard cache", in: big.stderr), 1, big.stderr)
        XCTAssertTrue(big.stderr.contains("huge.csv would take about"), big.stderr)
        // --categorical rows are parsed whole before their cache is written: over --max-memory, refused before the parse.
        let whole = try train(2, ["--data", huge, "--categorical", "c1", "--cache-dir", cache, "--max-memory", "512M"], output: out)
        XCTAssertEqual(whole.status, 64, whole.stderr)
        XCTAssertEqual(count("with --categorical the rows are parsed whole before their shard cache is written", in: whole.stderr), 1, whole.stderr)
        XCTAssertTrue(whole.stderr.contains("over --max-memory 512M"), whole.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache), [], "nothing written")
        for (args, message) in [
            (["--max-memory", "512M"], "--max-memory streams the training rows from a shard cache: give --cache-dir DIR"),
            (["--max-memory", "lots", "--cache-dir", cache], "--max-memory: 'lots' is not a size"),
            (["--cache-dir", cache, "--standardize"], "--standardize rescales the rows in memory"),
            (["--cache-dir", cache, "--validation-fraction", "0.1"], "split the rows in memory"),
            (["--cache-dir", "\(dir)/nowhere"], "--cache-dir \(dir)/nowhere: no such directory"),
        ] {
            let r = try train(2, ["--data", data] + args, output: out)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertEqual(count(message, in: r.stderr), 1, "\(args): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
    }
}
