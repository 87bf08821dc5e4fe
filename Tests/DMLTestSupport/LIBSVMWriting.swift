import Foundation

/// Writes a LIBSVM file to `path` and returns the path: `rows` rows of `nonZeros` distinct columns each among
/// `columns` (1-based in the file), values k/4 for k in 1…8, labels `positive` or `negative` by the sign of a
/// random linear teacher — all drawn from `TestRandom(seed:)` in that order, so a seed names one file.
public func writeTeacherLIBSVM(_ path: String, rows: Int, nonZeros: Int, columns: Int, seed: UInt64,
                               positive: String = "+1", negative: String = "-1") -> String {
    var random = TestRandom(seed: seed)
    let teacher = (0..<columns).map { _ in Float.random(in: -1...1, using: &random) }
    var text = ""
    for _ in 0..<rows {
        var picked = Set<Int>()
        while picked.count < nonZeros { picked.insert(Int.random(in: 0..<columns, using: &random)) }
        let row = picked.sorted().map { ($0, Float(Int.random(in: 1...8, using: &random)) / 4) }
        let score = row.reduce(Float(0)) { $0 + teacher[$1.0] * $1.1 }
        text += (score > 0 ? positive : negative) + row.map { " \($0.0 + 1):\($0.1)" }.joined() + "\n"
    }
    _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    return path
}
