import XCTest
import DMLComm
import DMLData
import DMLModels
import DMLTraining
import DMLTestSupport

final class TimelineTests: XCTestCase {
    /// A trainer with a timeline records the five phases of every step; rank 0 writes one Chrome trace that
    /// JSON-parses, with one process per rank and non-negative times.
    func testTrainingWritesAChromeTraceOfEveryRank() throws {
        let path = MPIRunner.temporaryDirectory() + "/trace.json"
        let task = SyntheticClassification(seed: 1, features: 8, classes: 3)
        let summaries = try LocalCommunicator.run(size: 3) { comm -> String in
            let trainer = Trainer(comm: comm, model: SoftmaxRegression(features: 8, classes: 3),
                                  train: task.trainingShard(rows: 90, rank: comm.rank, ranks: comm.size),
                                  config: TrainingConfig(steps: 6, batchSize: 30, learningRate: 0.1, seed: 1, logEvery: 100),
                                  allreduce: AllreduceKind.ring.make(for: comm))
            let timeline = Timeline()
            try timeline.synchronize(comm)
            trainer.timeline = timeline
            try trainer.run { _ in }
            _ = try trainer.evaluate(trainer.train)
            XCTAssertEqual(timeline.spans.filter { $0.name == "allreduce" }.map(\.step), Array(1...6))
            let summary = try timeline.balanceSummary(comm: comm, steps: 6)
            try timeline.write(to: path, comm: comm)
            return summary
        }
        XCTAssertTrue(summaries[0].hasPrefix("timeline: compute per step"), summaries[0])
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        let events = json["traceEvents"] as! [[String: Any]]
        let spans = events.filter { $0["ph"] as? String == "X" }
        XCTAssertEqual(Set(spans.map { $0["pid"] as! Int }), [0, 1, 2])
        for rank in 0..<3 {
            let names = spans.filter { $0["pid"] as! Int == rank }.map { $0["name"] as! String }
            for phase in ["data", "compute", "wait", "allreduce", "update"] {
                XCTAssertEqual(names.filter { $0 == phase }.count, 6, "rank \(rank) \(phase)")
            }
            XCTAssertEqual(names.filter { $0 == "evaluate" }.count, 1)
        }
        XCTAssertTrue(spans.allSatisfy { ($0["dur"] as! Double) >= 0 && ($0["ts"] as! Double) >= 0 })
        XCTAssertEqual(events.filter { $0["ph"] as? String == "M" }.count, 3, "a name per rank")
    }
}
