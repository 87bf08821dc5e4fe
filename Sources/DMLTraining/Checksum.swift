import DMLComm
import DMLStatus
import DMLData
import DMLKernels

/// The data-identity checksum (the digest itself, `Checksum.hash`, lives in DMLComm).
extension Checksum {
    /// A checksum of the whole training set that does not depend on how it is sharded: each row's
    /// features and label are hashed together with the row's global index, and the row hashes are
    /// added up modulo 2^64 over all ranks (addition is order-free, so any number of ranks gives the
    /// same value). CSR rows hash their column indices and values instead (another seed, so a CSR and a
    /// dense reading of one file differ: a resume does not switch `--sparse`). Collective; cost one pass over
    /// this rank's rows (or non-zeros) and one small allreduce.
    public static func dataset(_ data: Dataset, comm: Communicator) throws -> UInt64 {
        var sum: UInt64 = 0
        if let stream = data.stream {
            // Streamed rows: the same row hashes, over chunks of rows read from the cache (a read error is
            // agreed, so no rank waits in the allreduce for one that failed).
            var lo = 0
            var failure: Error?
            while lo < data.rows, failure == nil {
                let hi = Swift.min(data.rows, lo + 4096)
                let y = Array(data.y[lo..<hi])
                let chunk: Dataset
                let rows: ShardStream.Rows
                do { rows = try stream.rows(lo..<hi) } catch { failure = error; break }
                switch rows {
                case let .dense(x): chunk = Dataset(features: data.features, classes: data.classes, globalRows: data.globalRows, firstRow: data.firstRow + lo, x: x, y: y)
                case let .csr(m): chunk = Dataset(features: data.features, classes: data.classes, globalRows: data.globalRows, firstRow: data.firstRow + lo, csr: m, y: y)
                }
                sum &+= localSum(chunk)
                lo = hi
            }
            try comm.agree(error: failure)
        } else {
            sum = localSum(data)
        }
        // Int64 sums of the two 32-bit halves cannot overflow below 2^31 rows; carry them together at the end.
        let totals = try comm.allreduced([Int64(sum >> 32), Int64(sum & 0xFFFF_FFFF)], op: .sum)
        return (UInt64(totals[0]) << 32) &+ UInt64(totals[1])
    }

    /// This shard's row hashes added up (modulo 2^64); rows in memory.
    static func localSum(_ data: Dataset) -> UInt64 {
        var sum: UInt64 = 0
        let d = data.features
        if let csr = data.csr {
            csr.indices.withUnsafeBytes { ix in
                csr.values.withUnsafeBytes { vx in
                    for i in 0..<data.rows {
                        let lo = csr.rowStarts[i], hi = csr.rowStarts[i + 1]
                        var h = hash(UnsafeRawBufferPointer(rebasing: ix[(lo * 4) ..< (hi * 4)]),
                                     seed: CounterRandom.hash(UInt64(data.firstRow + i), 0xC5A))
                        h = hash(UnsafeRawBufferPointer(rebasing: vx[(lo * 4) ..< (hi * 4)]), seed: h)
                        h = CounterRandom.hash(h, UInt64(data.y[i].bitPattern))
                        sum &+= h
                    }
                }
            }
        }
        data.x.withUnsafeBytes { x in
            for i in 0..<(data.isSparse ? 0 : data.rows) {
                let rowBytes = UnsafeRawBufferPointer(rebasing: x[(i * d * 4) ..< ((i + 1) * d * 4)])
                var h = hash(rowBytes, seed: CounterRandom.hash(UInt64(data.firstRow + i), 0xDA7A))
                h = CounterRandom.hash(h, UInt64(data.y[i].bitPattern))
                sum &+= h
            }
        }
        return sum
    }
}

extension Checksum {
    /// The data checksum of a feature-partitioned training set (every row, this rank's columns starting at
    /// `firstColumn`): each value is mixed with its global row and column and the results are added up modulo
    /// 2^64 over all ranks, with each row's label counted once (by rank 0), so it does not depend on how the
    /// columns are cut (a checkpoint may be resumed on another number of ranks). Collective; cost one
    /// mixing per value and one small allreduce.
    public static func datasetColumns(_ data: Dataset, firstColumn: Int, comm: Communicator) throws -> UInt64 {
        var sum: UInt64 = 0
        let d = data.features
        data.x.withUnsafeBufferPointer { x in
            for i in 0..<data.rows {
                for j in 0..<d {
                    sum &+= CounterRandom.hash(UInt64(data.firstRow + i), UInt64(firstColumn + j), UInt64(x[i * d + j].bitPattern))
                }
                if comm.rank == 0 { sum &+= CounterRandom.hash(UInt64(data.firstRow + i), 0xDA7A_1AB1, UInt64(data.y[i].bitPattern)) }
            }
        }
        let totals = try comm.allreduced([Int64(sum >> 32), Int64(sum & 0xFFFF_FFFF)], op: .sum)
        return (UInt64(totals[0]) << 32) &+ UInt64(totals[1])
    }
}

extension Communicator {
    /// Collective: every rank passes a checksum of something that must be the same everywhere; returns
    /// the ranks whose checksum differs from the most common one (ties broken towards rank 0's), empty
    /// when all agree. Cost: one allreduce of `size` Int64.
    public func ranksDiffering(in checksum: UInt64) throws -> (differing: [Int], all: [UInt64]) {
        let all = try allgathered(Int64(bitPattern: checksum)).map { UInt64(bitPattern: $0) }
        var counts: [UInt64: Int] = [:]
        for h in all { counts[h, default: 0] += 1 }
        var reference = all[0]
        for h in all where counts[h]! > counts[reference]! { reference = h }
        return (all.indices.filter { all[$0] != reference }, all)
    }
}

/// A failure that every rank detects identically on its own (from values that are the same on every
/// rank, such as an allreduced loss), so no agreement round is needed: every rank throws it, rank 0
/// prints it, all exit with its kind's status (`JobExit`).
public struct TrainingFailure: ClassifiedError, CustomStringConvertible {
    public let message: String
    /// `.software` (the default: divergence, replicas that differ), or what the failure says about the
    /// job's inputs (`.configuration` for a checkpoint of another configuration, …).
    public let failureKind: FailureKind
    public init(_ message: String, kind: FailureKind = .software) {
        self.message = message
        failureKind = kind
    }
    public var description: String { message }
}


