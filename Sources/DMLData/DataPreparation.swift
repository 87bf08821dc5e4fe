import DMLComm
import DMLStatus
import DMLKernels

/// Per-feature standardisation `(x − mean) / std`, computed over the training rows of all ranks.
public struct Standardization: Sendable, Equatable {
    public let mean: [Float]
    /// The population standard deviation; 1 for a constant feature (so it maps to 0, not to NaN).
    public let std: [Float]

    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }

    /// The global mean and standard deviation of `data`'s features. Collective: two allreduces of
    /// `features` Doubles (sum, then the sum of squared deviations from the global mean, which avoids the
    /// cancellation of `Σx² − n·mean²`).
    public static func compute(_ data: Dataset, comm: Communicator) throws -> Standardization {
        let d = data.features
        var sums = [Double](repeating: 0, count: d)
        data.x.withUnsafeBufferPointer { x in
            for r in 0..<data.rows { for j in 0..<d { sums[j] += Double(x[r * d + j]) } }
        }
        let n = Double(data.globalRows)
        let mean = try comm.allreduced(sums, op: .sum).map { $0 / n }
        var squares = [Double](repeating: 0, count: d)
        data.x.withUnsafeBufferPointer { x in
            for r in 0..<data.rows { for j in 0..<d { let t = Double(x[r * d + j]) - mean[j]; squares[j] += t * t } }
        }
        let variance = try comm.allreduced(squares, op: .sum).map { $0 / n }
        let std = variance.map { v -> Float in
            let s = Float(v.squareRoot())
            return s > 0 && s.isFinite ? s : 1
        }
        return Standardization(mean: mean.map { Float($0) }, std: std)
    }

    /// Standardises `data`'s features in place. Dense rows only: centring would fill every zero of CSR rows
    /// (`LoadedData.prepare` refuses `--standardize` with them).
    public func apply(to data: inout Dataset) {
        precondition(!data.isSparse, "standardising CSR rows would make them dense")
        let d = data.features
        precondition(d == mean.count)
        let inverse = std.map { 1 / $0 }
        let rows = data.rows
        data.x.withUnsafeMutableBufferPointer { x in
            for r in 0..<rows { for j in 0..<d { x[r * d + j] = (x[r * d + j] - mean[j]) * inverse[j] } }
        }
    }
}

extension Dataset {
    /// Whether global row `row` goes to the validation split: a hash of (seed, row) below `fraction`, so
    /// the choice depends on neither the number of ranks nor which rank holds the row.
    public static func isValidationRow(_ row: Int, fraction: Double, seed: UInt64) -> Bool {
        Double(CounterRandom.hash(seed, 0x7A11_DA7E, UInt64(row)) >> 11) * 0x1p-53 < fraction
    }

    /// Splits off a validation set (rows chosen by `isValidationRow`). Both parts are re-indexed globally
    /// (each rank's first row is the prefix sum of the counts of the ranks before it), so the training
    /// part's global row order is the file's order without the validation rows, for any number of ranks.
    /// Collective: one small allreduce.
    public func splitValidation(fraction: Double, seed: UInt64, comm: Communicator) throws -> (train: Dataset, validation: Dataset) {
        if let csr { return try splitValidationCSR(csr, fraction: fraction, seed: seed, comm: comm) }
        return try splitDense(fraction: fraction, seed: seed, comm: comm)
    }

    /// `splitValidation`, giving up this shard's rows: CSR rows are moved out first, so when nothing else holds
    /// them the training rows are compacted in place (the peak is the shard plus its validation rows, not
    /// twice the shard). This dataset is left without rows. Collective.
    public mutating func splitValidationReleasingRows(fraction: Double, seed: UInt64, comm: Communicator) throws -> (train: Dataset, validation: Dataset) {
        guard let csr = self.csr else { return try splitDense(fraction: fraction, seed: seed, comm: comm) }
        let labels = y
        self.csr = CSRMatrix(columns: features)
        y = []
        return try splitValidationCSR(csr, fraction: fraction, seed: seed, comm: comm, labels: labels)
    }

    private func splitDense(fraction: Double, seed: UInt64, comm: Communicator) throws -> (train: Dataset, validation: Dataset) {
        var tx: [Float] = [], ty: [Float] = [], vx: [Float] = [], vy: [Float] = []
        let expected = Int(Double(rows) * fraction * 1.1) + 8
        vx.reserveCapacity(expected * features); vy.reserveCapacity(expected)
        tx.reserveCapacity((rows - Swift.min(rows, expected / 2)) * features); ty.reserveCapacity(rows)
        x.withUnsafeBufferPointer { x in
            for i in 0..<rows {
                let row = UnsafeBufferPointer(rebasing: x[i * features ..< (i + 1) * features])
                if Self.isValidationRow(firstRow + i, fraction: fraction, seed: seed) {
                    vx.append(contentsOf: row); vy.append(y[i])
                } else {
                    tx.append(contentsOf: row); ty.append(y[i])
                }
            }
        }
        let (train, validation) = try splitCounts(training: ty.count, validation: vy.count, fraction: fraction, comm: comm)
        return (Dataset(features: features, classes: classes, globalRows: train.total, firstRow: train.first, x: tx, y: ty),
                Dataset(features: features, classes: classes, globalRows: validation.total, firstRow: validation.first, x: vx, y: vy))
    }

    /// `splitValidation` of CSR rows: the validation rows copied out, the training rows kept by
    /// `CSRMatrix.retainRows` (in place when `csr` is the only reference to its arrays; `labels`: this shard's
    /// labels, nil for `y`).
    private func splitValidationCSR(_ csr: consuming CSRMatrix, fraction: Double, seed: UInt64, comm: Communicator,
                                    labels: [Float]? = nil) throws -> (train: Dataset, validation: Dataset) {
        let y = labels ?? self.y
        let rows = csr.rows
        let held = (0..<rows).map { Self.isValidationRow(firstRow + $0, fraction: fraction, seed: seed) }
        var vcsr = CSRMatrix(columns: features), vy: [Float] = [], ty: [Float] = []
        ty.reserveCapacity(rows)
        for i in 0..<rows {
            if held[i] { vcsr.append(row: i, of: csr); vy.append(y[i]) } else { ty.append(y[i]) }
        }
        var tcsr = consume csr
        tcsr.retainRows { !held[$0] }
        let (train, validation) = try splitCounts(training: ty.count, validation: vy.count, fraction: fraction, comm: comm)
        return (Dataset(features: features, classes: classes, globalRows: train.total, firstRow: train.first, csr: tcsr, y: ty),
                Dataset(features: features, classes: classes, globalRows: validation.total, firstRow: validation.first, csr: vcsr, y: vy))
    }

    /// Each part's global row count and this rank's first row in it, from every rank's counts. Collective:
    /// one small allreduce; refuses a split that leaves no validation rows or fewer training rows than ranks.
    private func splitCounts(training: Int, validation: Int, fraction: Double, comm: Communicator) throws
        -> (train: (total: Int, first: Int), validation: (total: Int, first: Int)) {
        var slots = [Int64](repeating: 0, count: 2 * comm.size)
        slots[2 * comm.rank] = Int64(training)
        slots[2 * comm.rank + 1] = Int64(validation)
        let counts = try comm.allreduced(slots, op: .sum)
        let before = (0..<comm.rank).reduce((0, 0)) { ($0.0 + Int(counts[2 * $1]), $0.1 + Int(counts[2 * $1 + 1])) }
        let total = (0..<comm.size).reduce((0, 0)) { ($0.0 + Int(counts[2 * $1]), $0.1 + Int(counts[2 * $1 + 1])) }
        try comm.agree(total.1 == 0 ? "--validation-fraction \(fraction) leaves no validation rows out of \(globalRows)" : nil, kind: .usage)
        try comm.agree(total.0 < comm.size
            ? "--validation-fraction \(fraction) leaves \(total.0) training rows for \(comm.size) ranks" : nil, kind: .usage)
        return ((total.0, before.0), (total.1, before.1))
    }
}

/// What a training run gets from its data: this rank's shards, and the facts the output file must record
/// so that prediction reproduces the preprocessing.
public struct LoadedData {
    public var train: Dataset
    /// Rows held out by `--validation-fraction`.
    public var validation: Dataset?
    public var test: Dataset?
    /// Class i is `labels.values[i]` in the training file (nil for regression and the synthetic task).
    public var labels: LabelMapping?
    /// Applied to train, validation and test when `--standardize` is given.
    public var standardization: Standardization?
    /// One line for the log.
    public var description: String
    /// CSV input: how missing values were treated, and with `.mean` the fill value of each feature (the
    /// training means), which prediction must use too.
    public var missing: MissingPolicy = .error
    public var missingFill: [Float]?
    /// CSV columns left out (`--drop-columns`), which a prediction input leaves out too.
    public var dropColumns: [LabelColumn] = []
    /// CSV `--categorical` columns (as given) and the categories of each, in file order.
    public var categorical: (columns: [String], categories: [[String]]?)?
    /// CSV: the feature columns of the file (the label and dropped ones left out), before any encoding.
    public var inputColumns: Int?
    /// The features' names when the reader knows them (a CSV header; `name=value` for one-hot features).
    public var featureNames: [String]?

    public init(train: Dataset, validation: Dataset? = nil, test: Dataset? = nil, labels: LabelMapping? = nil,
                standardization: Standardization? = nil, description: String) {
        self.train = train
        self.validation = validation
        self.test = test
        self.labels = labels
        self.standardization = standardization
        self.description = description
    }

    /// Entries for the output file's metadata: `labels` (JSON array of the original label names, class i
    /// first), `standardize_mean` and `standardize_std` (JSON arrays, per feature; predict with
    /// `(x − mean) / std`).
    public var metadata: [String: String] {
        var m: [String: String] = [:]
        if let l = labels { m["labels"] = "[" + l.names.map { "\"\($0)\"" }.joined(separator: ",") + "]" }
        if let s = standardization {
            m["standardize_mean"] = "[" + s.mean.map { "\($0)" }.joined(separator: ",") + "]"
            m["standardize_std"] = "[" + s.std.map { "\($0)" }.joined(separator: ",") + "]"
        }
        return m
    }

    /// Splits off the validation rows (when `validationFraction > 0`) and standardises every split with the
    /// training rows' statistics (when `standardize`), or with `given` statistics (a warm start keeps its
    /// model's). `exactStatistics` (`--reproducible`): the statistics with the same bits for any number of ranks
    /// (`Standardization.computeExactly`). Collective.
    public mutating func prepare(validationFraction: Double, standardize: Bool, seed: UInt64, comm: Communicator,
                                 given: Standardization? = nil, exactStatistics: Bool = false) throws {
        if validationFraction > 0 {
            // The shard's rows are handed over, so CSR rows are compacted in place, not copied.
            let (t, v) = try train.splitValidationReleasingRows(fraction: validationFraction, seed: seed, comm: comm)
            train = t
            validation = v
        }
        if standardize || given != nil {
            try comm.agree(train.isSparse
                ? "--standardize centres every feature, which would make the CSR rows dense (--sparse): leave out --standardize, or read the rows dense with --sparse off"
                  + (given != nil && !standardize ? " (the --init model was trained on standardised features)" : "") : nil, kind: .usage)
            let s = try given ?? (exactStatistics ? Standardization.computeExactly(train, comm: comm) : Standardization.compute(train, comm: comm))
            s.apply(to: &train)
            if validation != nil { s.apply(to: &validation!) }
            if test != nil { s.apply(to: &test!) }
            standardization = s
        }
    }
}
