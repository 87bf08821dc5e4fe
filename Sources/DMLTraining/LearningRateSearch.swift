import Foundation
import DMLComm
import DMLData
import DMLModels

/// Grid search of the learning rate with a validation split, as users are told to do it: each candidate
/// trains a fresh model (same seed, same batches, same number of steps) on the training rows and is scored on
/// the held-out validation rows; the best is the lowest validation loss. A candidate that diverges (the
/// divergence guard stops it) is recorded as such and never chosen.
///
/// Collective: every rank runs every candidate (the same steps, the same allreduces), so every rank reaches
/// the same choice. Cost: one full training run per candidate plus one evaluation of the validation rows.
public struct LearningRateSearch {
    public struct Outcome: Sendable {
        public let learningRate: Float
        /// nil when the candidate diverged.
        public let validation: Evaluation?
        /// Why it stopped early (the divergence guard's message), when it did.
        public let failure: String?
        public let seconds: Double
    }

    public let candidates: [Float]

    public init(candidates: [Float]) {
        precondition(!candidates.isEmpty)
        self.candidates = candidates
    }

    /// Runs every candidate. `makeTrainer(lr)` builds a fresh trainer whose configuration differs from the
    /// final run's only in its learning rate; `progress` is told of each outcome as it is known.
    public func run(validation: Dataset, makeTrainer: (Float) throws -> TrainingStrategy,
                    progress: (Outcome) -> Void = { _ in }) throws -> [Outcome] {
        var outcomes: [Outcome] = []
        for lr in candidates {
            let started = ContinuousClock.now
            let trainer = try makeTrainer(lr)
            var outcome: Outcome
            do {
                try trainer.run(report: { _ in })
                try trainer.checkParametersFinite()
                let e = try trainer.evaluate(validation)
                outcome = Outcome(learningRate: lr, validation: e.loss.isFinite ? e : nil,
                                  failure: e.loss.isFinite ? nil : "the validation loss is not finite",
                                  seconds: Self.seconds(since: started))
            } catch let failure as TrainingFailure {
                // Raised alike on every rank (from allreduced values), so every rank records the same.
                outcome = Outcome(learningRate: lr, validation: nil, failure: failure.message, seconds: Self.seconds(since: started))
            }
            outcomes.append(outcome)
            progress(outcome)
        }
        return outcomes
    }

    /// The candidate with the lowest validation loss (ties: the first given); nil when every one diverged.
    public static func best(of outcomes: [Outcome]) -> Outcome? {
        outcomes.filter { $0.validation != nil }.min { $0.validation!.loss < $1.validation!.loss }
    }

    /// Parses `0.01,0.03,0.1`: positive finite rates, no repeats.
    public static func parse(_ text: String) -> [Float]? {
        guard let rates = CommaList.parse(text, { Float($0).flatMap { $0.isFinite && $0 > 0 ? $0 : nil } }) else { return nil }
        guard Set(rates).count == rates.count else { return nil }
        return rates
    }

    private static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}
