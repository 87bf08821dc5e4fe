import DMLKernels

extension SyntheticClassification {
    /// The regression variant of the built-in task: the same features, and the target
    /// `y = t·x/√features + 0.1·ε` for a random teacher vector t and standard normal noise ε (so y has variance
    /// about 1.01 and the best possible MSE is 0.01). Like the features, every target is a pure function of
    /// `(seed, global row)`. The returned shard has `classes == 0`.
    public func regressionShard(_ shard: Dataset, testSplit: Bool) -> Dataset {
        let d = features
        let key = CounterRandom.hash(seed, 0x5EC4_E551)
        var t = [Float](repeating: 0, count: d)
        for j in 0..<d { t[j] = CounterRandom.normal(key, UInt64(j)) / Float(d).squareRoot() }
        var y = shard.y
        let first = (testSplit ? Self.testRowOffset : 0) + shard.firstRow
        shard.x.withUnsafeBufferPointer { x in
            for i in 0..<shard.rows {
                let noise = 0.1 * CounterRandom.normal(key, 1 << 32, UInt64(first + i))
                y[i] = Vector.dot(t, x.baseAddress! + i * d, d) + noise
            }
        }
        return Dataset(features: d, classes: 0, globalRows: shard.globalRows, firstRow: shard.firstRow, x: shard.x, y: y)
    }
}
