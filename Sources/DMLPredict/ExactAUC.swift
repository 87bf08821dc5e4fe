import DMLComm

/// The area under the ROC curve of a binary classifier, exactly, over rows spread across ranks: the
/// probability that a random positive row scores above a random negative one, ties counting ½ — the
/// Mann–Whitney statistic, which is what scikit-learn's trapezoidal `roc_auc_score` equals.
///
/// ```
/// each rank: keys = (score's order-preserving 32 bits) << 1 | label, sorted locally
/// samples: up to `samplesPerRank` evenly spaced score keys per rank, allgathered, sorted
///   ─▶ p − 1 splitters at the sample's quantiles; a row goes to the number of splitters below its score,
///      so equal scores land on one rank and rank r's scores all lie below rank r+1's
/// exchange (all-to-all, on a duplicate communicator) ─▶ each rank sorts what it received
/// exclusive scan of the ranks' negative counts ─▶ negatives scoring below this rank's first score
/// each run of equal scores: 2·Σ = Σ positives_in_run · (2·negatives_below + negatives_in_run)
/// allreduce 2·Σ ─▶ AUC = 2·Σ / (2·P·N)
/// ```
/// Exact: integer counts only (2·Σ ≤ 2·P·N < 2⁶³ for up to 3·10⁹ rows), one division at the end. No rank
/// holds more than its share of the rows, except that one run of equal scores stays on one rank (a data set
/// whose scores are mostly one value lands mostly on one rank). Cost per rank: a sort of its n/p keys
/// (8 bytes each), sending and receiving about n/p keys, and small allreduces.
public enum ExactAUC {
    /// The AUC of `scores` (higher: more likely positive) against `positive`, over every rank's rows; nil
    /// when the rows of all ranks hold only one of the two classes (the AUC is then undefined). Scores must
    /// be finite. Collective; `exchange` carries the all-to-all (give it a communicator of its own).
    public static func compute(scores: [Float], positive: [Bool], comm: Communicator, exchange: Communicator,
                               samplesPerRank: Int = 64) throws -> Double? {
        precondition(scores.count == positive.count)
        var keys = (0..<scores.count).map { UInt64(orderKey(scores[$0])) << 1 | (positive[$0] ? 1 : 0) }
        keys.sort()
        let localPositives = positive.reduce(0) { $0 + ($1 ? 1 : 0) }
        let totals = try comm.allreduced([Int64(localPositives), Int64(positive.count - localPositives)], op: .sum)
        let (p, n) = (totals[0], totals[1])
        guard p > 0 && n > 0 else { return nil }

        // Splitters from a sample of every rank's sorted scores.
        let s = Swift.min(samplesPerRank, keys.count)
        let mine: [UInt32] = (0..<s).map { UInt32(truncatingIfNeeded: keys[($0 * keys.count + keys.count / 2) / s] >> 1) }
        let sample = try comm.allgathered(mine).flatMap { $0 }.sorted()
        let splitters: [UInt32] = sample.isEmpty ? [] : (1..<comm.size).map { sample[$0 * sample.count / comm.size] }
        // Destinations are monotone in the sorted keys: rank q gets one contiguous slice.
        var outgoing = [[UInt64]](repeating: [], count: comm.size)
        var start = 0
        for q in 0..<comm.size {
            var end = keys.count
            if q < splitters.count {
                // The first key whose score is at least splitter q goes to rank q + 1 or later.
                let bound = UInt64(splitters[q]) << 1
                end = lowerBound(keys, bound, from: start)
            }
            outgoing[q] = Array(keys[start..<end])
            start = end
        }
        var received = try exchange.exchanged(outgoing).flatMap { $0 }
        received.sort()

        let negativesHere = received.reduce(Int64(0)) { $0 + ($1 & 1 == 0 ? 1 : 0) }
        let negativesBefore = try comm.allgathered(negativesHere)[..<comm.rank].reduce(0, +)
        var twiceSum: Int64 = 0
        var below = negativesBefore
        var i = 0
        while i < received.count {
            let score = received[i] >> 1
            var negatives: Int64 = 0, positives: Int64 = 0
            while i < received.count && received[i] >> 1 == score {
                if received[i] & 1 == 0 { negatives += 1 } else { positives += 1 }
                i += 1
            }
            twiceSum += positives * (2 * below + negatives)
            below += negatives
        }
        let total = try comm.allreduced(twiceSum, op: .sum)
        return Double(total) / (2 * Double(p) * Double(n))
    }

    /// 32 bits whose unsigned order is the scores' order (−0 and +0 are one value); for finite scores.
    @inline(__always)
    static func orderKey(_ score: Float) -> UInt32 {
        let bits = (score == 0 ? Float(0) : score).bitPattern
        return bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
    }

    /// The first index at or after `from` whose key is not below `bound`.
    private static func lowerBound(_ keys: [UInt64], _ bound: UInt64, from: Int) -> Int {
        var lo = from, hi = keys.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if keys[mid] < bound { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
