import XCTest
import DMLTestSupport

/// A corpus of malformed inputs and flag values generated here: each must give one error message, a
/// non-zero exit within 10 s and no output file. Run as singleton jobs (np 1, no mpirun), two at a time.
final class DataFuzzIntegrationTests: XCTestCase {
    func testMalformedInputsAndFlagsAreEachOneMessage() throws {
        let dir = MPIRunner.temporaryDirectory()
        func write(_ name: String, _ bytes: [UInt8]) -> String {
            let p = "\(dir)/\(name)"
            _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
            return p
        }
        func text(_ name: String, _ s: String) -> String { write(name, Array(s.utf8)) }
        var rng = TestRandom(seed: 3)
        let goodRows = (0..<20).map { "\($0 % 2),\($0).5,\(20 - $0)" }.joined(separator: "\n") + "\n"
        var cases: [[String]] = []
        // CSV
        for (i, s) in ["", "\n\n\n", "label,a,b\n", "0,1,2\n1,2\n", "0,1,2\n1,2,3,4\n", "0,1,x\n1,2,3\n", "0,1,nan\n1,2,3\n",
                       "0,inf,1\n1,2,3\n", "0,1e999,1\n1,2,3\n", "0.5,1,2\n1,2,3\n", "0,1,2\n0,3,4\n", ",,\n,,\n",
                       // Quotes and everyday CSV (issue 18): unterminated, text after a closing quote, a stray quote, a field
                       // count that differs after unquoting, a missing label, a pandas index, a label column of IDs.
                       "0,1,2\n1,\"2,3\n", "0,1,2\n1,\"2\"x,3\n", "0,1,2\n1,2\"2,3\n", "0,1,2\n1,\"2\",3,4\n", "0,1,2\n\"\",2,3\n",
                       "0;1;2\n1;2\n", "\u{FEFF}y,a\n0,1\nNA,2\n",
                       (0..<30).map { "\($0),\($0 % 2),\($0 * 3 % 7)" }.joined(separator: "\n"),
                       (0..<30).map { "\(100 + 3 * $0),\($0 % 4)" }.joined(separator: "\n"), "0,--1,2\n1,2,3\n", "0,1..2,3\n1,2,3\n", "0,1,2" + String(repeating: ",7", count: 200_000) + "\n1,2,3\n",
                       String(repeating: "9", count: 1_000_000) + ",1\n1,2\n", goodRows + "1,2\n"].enumerated() {
            cases.append(["--data", text("c\(i).csv", s)])
        }
        cases.append(["--data", write("utf16.csv", [0xFF, 0xFE] + Array("0,1,2\n1,2,3\n".utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }))])
        cases.append(["--data", write("latin1.csv", Array("0,1,2\n1,".utf8) + [0xE9, 0xE8] + Array(",3\n".utf8))])
        cases.append(["--data", write("badutf8.csv", [0x30, 0x2C, 0xC3, 0x28, 0x2C, 0x31, 0x0A, 0x31, 0x2C, 0x32, 0x2C, 0x33, 0x0A])])
        for i in 0..<6 {
            cases.append(["--data", write("garbage\(i).csv", (0..<(64 << i)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })])
        }
        // LIBSVM
        for (i, s) in ["0 0:1\n1 1:2\n", "0 a:b\n1 1:2\n", "0 1\n1 1:2\n", "0 -3:1\n1 1:2\n", "x 1:1\n1 1:2\n", "0 1:nan\n1 1:2\n",
                       "0 1:1:1\n1 1:2\n", "0 99999999999999999999:1\n1 1:2\n"].enumerated() {
            cases.append(["--data", text("s\(i).svm", s)])
        }
        // NPY: bad magic, header, dtype, order, shape, truncation
        func npy(_ header: String, _ payload: Int, major: UInt8 = 1) -> [UInt8] {
            var h = Array(header.utf8)
            while (10 + h.count + 1) % 64 != 0 { h.append(0x20) }
            h.append(0x0A)
            return [0x93] + Array("NUMPY".utf8) + [major, 0, UInt8(h.count & 0xFF), UInt8(h.count >> 8)] + h + [UInt8](repeating: 0, count: payload)
        }
        let npys: [[UInt8]] = [
            Array("not numpy at all".utf8), [0x93, 0x4E, 0x55],
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", 10),
            npy("{'descr': '<c8', 'fortran_order': False, 'shape': (4, 3), }", 96),
            npy("{'descr': '<f4', 'fortran_order': True, 'shape': (4, 3), }", 48),
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3, 2), }", 96),
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4),
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-4, 3), }", 48),
            npy("{'descr': 'f4' 'shape': (4, 3)", 48),
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", 48, major: 9),
            Array(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", 0).prefix(20)),
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", 48),
        ]
        for (i, b) in npys.enumerated() { cases.append(["--data", write("n\(i).npy", b)]) }
        // HDF5: not HDF5, truncated, a missing dataset, wrong rank, wrong dtype, label count, non-finite values,
        // flags that do not apply.
        let h5 = "\(dir)/d.h5"
        let file = HDF5TestFile(h5)
        file.write("/X", (0..<40).map { Float($0) }, shape: [10, 4], chunk: [3, 4], gzip: 1)
        file.write("/nan", (0..<40).map { $0 == 17 ? Double.nan : Double($0) }, shape: [10, 4])
        file.write("/y", (0..<10).map { Int64($0 % 2) }, shape: [10])
        file.write("/short", (0..<9).map { Int64($0 % 2) }, shape: [9])
        file.write("/cube", (0..<40).map { Int32($0) }, shape: [2, 5, 4])
        file.writeStrings("/s", (0..<10).map { "\($0)" })
        file.writeRecords("/r", (0..<10).map { (Int32($0), Int32($0)) })
        file.close()
        let whole = bytes(h5)
        for (i, b) in [Array("0,1\n1,2\n".utf8), [0x89] + Array("HDF\r\n".utf8) + [0x1A, 0x0A] + (0..<600).map { _ in UInt8(truncatingIfNeeded: rng.next()) },
                       Array(whole.prefix(whole.count / 2)), Array(whole.prefix(1200))].enumerated() {
            cases.append(["--data", write("h\(i).h5", b), "--h5-features", "/X", "--h5-labels", "/y"])
        }
        for (x, y) in [("/Z", "/y"), ("/X", "/Z"), ("/cube", "/y"), ("/y", "/y"), ("/X", "/X"), ("/s", "/y"), ("/X", "/r"), ("/X", "/short"),
                       ("/nan", "/y"), ("", "/y"), ("/", "/y")] {
            cases.append(["--data", h5, "--h5-features", x, "--h5-labels", y])
        }
        cases += [["--data", h5], ["--data", h5, "--h5-labels", "/y"], ["--data", h5, "--h5-features", "/X", "--labels", h5],
                  ["--data", h5, "--h5-features", "/X", "--format", "csv"], ["--data", h5, "--h5-features", "/X", "--h5-labels", "/y", "--h5-test-features", "/X"],
                  ["--data", h5, "--h5-features", "/X", "--h5-labels", "/y", "--delimiter", "semicolon"],
                  ["--data", h5, "--h5-features", "/X", "--h5-labels", "/y", "--header"],
                  ["--data", h5, "--h5-features", "/X", "--h5-labels", "/y", "--label-column", "2"]]
        // Nonsense flag values.
        let good = text("good.csv", goodRows)
        cases.append(["--data", good, "--h5-features", "/X"])
        for flags in [["--epochs", "-1"], ["--lr", "nan"], ["--lr", "abc"], ["--lr", "-1"], ["--batch-size", "0"], ["--batch-size", "lots"],
                      ["--steps", "0"], ["--hidden", "0"], ["--activation", "sine"], ["--optimizer", "magic"], ["--allreduce", "telepathy"],
                      ["--collective-timeout", "-1"], ["--checkpoint-every", "-3"], ["--label-column", "99"], ["--features", "-2"],
                      ["--validation-fraction", "1.5"], ["--delimiter", "pipe"], ["--missing", "guess"],
                      ["--drop-columns", "99"], ["--drop-columns", "nope"], ["--drop-columns", "0"], ["--labels", "\(dir)/y.npy"], ["--features", "3"],
                      ["--categorical", "nope"], ["--categorical", "0"], ["--categorical", "1", "--categorical-encoding", "hash"],
                      ["--hash-bits", "8"], ["--categorical-encoding", "bloom"], ["--categorical", "1", "--drop-columns", "1"], ["--format", "xlsx"], ["--model", "transformer"],
                      ["--lr-search", ""], ["--seed", "-1"], ["--momentum", "2"], ["--warmup", "-5"], ["--output", dir],
                      ["--test-data", "\(dir)/absent.csv"], ["--resume"], ["--no-such-flag"]] {
            cases.append(["--data", good] + flags)
        }
        // Shard cache flags (data larger than memory).
        for flags in [["--max-memory", "lots"], ["--max-memory", "-5M"], ["--max-memory", "512M"], ["--cache-dir", "\(dir)/absent-dir"],
                      ["--cache-dir", dir, "--max-memory", "1K"], ["--cache-dir", dir, "--standardize"]] {
            cases.append(["--data", good] + flags)
        }
        XCTAssertGreaterThanOrEqual(cases.count, 50)
        let all = cases
        let results = MPIRunner.twoAtATime(all.count) { j -> Timed? in
            let start = Date()
            let out = "\(dir)/never-\(j).safetensors"
            let args = all[j].contains("--output") ? all[j] : all[j] + ["--output", out]
            guard let r = try? MPIRunner.runProcess(MPIRunner.executable("dml-train"), args + ["--epochs", "1"].filter { _ in !all[j].contains("--epochs") && !all[j].contains("--steps") }, timeout: 20) else { return nil }
            return Timed(result: r, seconds: Date().timeIntervalSince(start))
        }
        for (j, c) in cases.enumerated() {
            guard let timed = results[j] else { XCTFail("\(c): could not run"); continue }
            let (r, seconds) = (timed.result, timed.seconds)
            let messages = r.stderr.split(separator: "\n").filter { $0.hasPrefix("dml-train: error") || $0.hasPrefix("Error:") }
            XCTAssertNotEqual(r.status, 0, "\(c)")
            XCTAssertEqual(messages.count, 1, "\(c): \(r.stderr)")
            XCTAssertLessThan(seconds, 10, "\(c)")
            XCTAssertFalse(r.stdout.contains("step "), "\(c): nothing trained")
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/never-\(j).safetensors"), "\(c): no output")
        }
        print("data fuzz: \(cases.count) malformed inputs and flags")
    }
}


/// A job's result and how long it took.
struct Timed: Sendable {
    let result: MPIRunner.Result
    let seconds: Double
}
