import DMLKernels

/// The built-in task: a deterministic classification set. Features are uniform in [−√3, √3] (mean 0,
/// variance 1); the label is the argmax of a random linear "teacher" `W·x` (10 classes by default).
///
/// Every value is a pure function of `(seed, global row, column)`, so a rank generates only its own rows,
/// and the set is identical for any number of ranks. The test set uses row indices far above the
/// training rows, so it never overlaps them.
public struct SyntheticClassification: Sendable {
    public let seed: UInt64
    public let features: Int
    public let classes: Int
    private let teacher: [Float]

    /// Global row indices of the test split start here.
    public static let testRowOffset = 1 << 40

    public init(seed: UInt64, features: Int, classes: Int) {
        precondition(features > 0 && classes > 1)
        self.seed = seed
        self.features = features
        self.classes = classes
        let teacherKey = CounterRandom.hash(seed, 0x7EAC_4E12)
        var t = [Float](repeating: 0, count: classes * features)
        for i in t.indices { t[i] = CounterRandom.normal(teacherKey, UInt64(i)) }
        teacher = t
    }

    /// Writes global row `row`'s features into `x[0..<features]` and returns its label.
    public func generate(row: Int, into x: UnsafeMutablePointer<Float>) -> Int {
        let key = CounterRandom.hash(seed, UInt64(row))
        let spread: Float = 2 * Float(3).squareRoot()
        for j in 0..<features {
            x[j] = (CounterRandom.uniform(key, UInt64(j)) - 0.5) * spread
        }
        var best = 0
        var bestScore = -Float.infinity
        teacher.withUnsafeBufferPointer { t in
            for c in 0..<classes {
                let score = Vector.dot(t.baseAddress! + c * features, x, features)
                if score > bestScore { best = c; bestScore = score }
            }
        }
        return best
    }

    /// The shard of the training split (`rows` global rows) that `rank` of `ranks` holds.
    public func trainingShard(rows: Int, rank: Int, ranks: Int) -> Dataset {
        shard(globalRows: rows, first: 0, range: ShardPlan(rows: rows, ranks: ranks).range(of: rank))
    }

    /// The shard of the test split (`rows` global rows) that `rank` of `ranks` holds.
    public func testShard(rows: Int, rank: Int, ranks: Int) -> Dataset {
        shard(globalRows: rows, first: Self.testRowOffset, range: ShardPlan(rows: rows, ranks: ranks).range(of: rank))
    }

    private func shard(globalRows: Int, first: Int, range: Range<Int>) -> Dataset {
        var x = [Float](repeating: 0, count: range.count * features)
        var y = [Float](repeating: 0, count: range.count)
        x.withUnsafeMutableBufferPointer { xs in
            for (i, row) in range.enumerated() {
                y[i] = Float(generate(row: first + row, into: xs.baseAddress! + i * features))
            }
        }
        return Dataset(features: features, classes: classes, globalRows: globalRows, firstRow: range.lowerBound, x: x, y: y)
    }
}
