import XCTest
import DMLComm
import DMLData
import DMLModels
import DMLTraining
import DMLTestSupport

/// Every combination of the step's variations — `--overlap`, `--compress`, `--balance`, `--reproducible`, `--partition`,
/// `--shard-update`, `--timeline`, `DML_FAULT` (none, nan, perturb) and `--verify-every` (0, 1) — is either refused before
/// training with one message (`JobConfiguration.conflict`) or has its effect when the job runs (through the
/// library's `TrainingJob`, 3 in-process ranks): a timeline records every phase of every step, a NaN stops the
/// job at its step, a perturbed rank is caught by the replica check or (check disabled) leaves the replicas
/// different. None is silently ignored.
final class CombinationTests: XCTestCase {
    struct Outcome { let refused: String?; let error: Error?; let spans: Set<String>; let replicasDiffer: Bool; let steps: Int }

    func configuration(overlap: Bool, compress: WireFormat?, balance: Bool, features: Bool, timeline: String?, verify: Int,
                       shard: Bool = false, reproducible: Bool = false) -> JobConfiguration {
        var c = JobConfiguration()
        c.model.kind = features ? .softmax : .mlp
        if !features { c.model.hidden = [8] }
        c.data.syntheticRows = 120
        c.data.syntheticTestRows = 0
        c.data.syntheticFeatures = 9
        c.data.syntheticClasses = 3
        c.data.partition = features ? .features : .rows
        c.optimization.steps = 6
        c.optimization.batchSize = 24
        c.optimization.lr = 0.1
        c.reduction.overlap = overlap
        c.reduction.compress = compress
        c.reduction.balance = balance
        c.reduction.shardUpdate = shard
        c.reduction.bucketBytes = 64
        c.outputs.timeline = timeline
        c.outputs.verifyEvery = verify
        c.outputs.collectiveTimeout = 30
        if reproducible {
            // Whole blocks of 64 rows on every rank (7 blocks for 3 ranks), each step every row, so the nan fault's rank has a block.
            c.reduction.reproducible = true
            c.data.syntheticRows = 400
            c.optimization.batchSize = nil
        }
        return c
    }

    func run(_ c: JobConfiguration, fault: String?) throws -> Outcome {
        if let message = c.conflict() { return Outcome(refused: message, error: nil, spans: [], replicasDiffer: false, steps: 0) }
        let faults = try fault.map { try FaultPlan(parsing: $0) } ?? FaultPlan()
        let results = try LocalCommunicator.run(size: 3, timeout: 60) { comm -> (Error?, Set<String>, UInt64, Int) in
            let job = TrainingJob(configuration: c, comm: comm, faults: faults, output: .silent)
            var failure: Error?
            do { _ = try job.run() } catch { failure = error }
            var replicated: UInt64 = 0
            job.strategy?.withReplicatedParameters { replicated = Checksum.hash(UnsafeRawBufferPointer($0)) }
            let spans = Set(job.strategy?.hooks.timeline?.spans.map(\.name) ?? [])
            return (failure, spans, replicated, job.strategy?.step ?? 0)
        }
        let errors = results.compactMap(\.0)
        XCTAssertTrue(errors.isEmpty || errors.count == 3, "every rank fails alike or none: \(errors)")
        return Outcome(refused: nil, error: errors.first, spans: results[0].1,
                       replicasDiffer: Set(results.map(\.2)).count > 1, steps: results[0].3)
    }

    func testEveryCombinationIsHonouredOrRefused() throws {
        let dir = MPIRunner.temporaryDirectory()
        var refused = 0, ran = 0
        for overlap in [false, true] {
            for compress in [nil, WireFormat.bf16] {
                for (balance, reproducible) in [(false, false), (true, false), (false, true), (true, true)] {
                  for shard in [false, true] {
                    for features in [false, true] {
                        for withTimeline in [false, true] {
                            for fault in [nil, "nan:rank=1:step=3", "perturb:rank=2:step=3"] {
                                for verify in [0, 1] {
                                    let name = "overlap \(overlap) compress \(compress?.rawValue ?? "none") balance \(balance) reproducible \(reproducible) shard \(shard) "
                                        + "features \(features) timeline \(withTimeline) fault \(fault ?? "none") verify \(verify)"
                                    let trace = withTimeline ? dir + "/trace-\(ran + refused).json" : nil
                                    let c = configuration(overlap: overlap, compress: compress, balance: balance, features: features,
                                                          timeline: trace, verify: verify, shard: shard, reproducible: reproducible)
                                    let o = try run(c, fault: fault)
                                    if let message = o.refused {
                                        refused += 1
                                        XCTAssertTrue(message.hasPrefix("--"), "\(name): one message naming the flag: \(message)")
                                        XCTAssertFalse(message.contains("\n"), name)
                                        continue
                                    }
                                    ran += 1
                                    switch fault {
                                    case nil:
                                        XCTAssertNil(o.error, name)
                                        XCTAssertEqual(o.steps, 6, name)
                                        XCTAssertFalse(o.replicasDiffer, name)
                                    case let f? where f.hasPrefix("nan"):
                                        XCTAssertTrue("\(o.error.map { "\($0)" } ?? "none")".contains("training diverged at step 3"), "\(name): \(String(describing: o.error))")
                                    default:
                                        if verify > 0 {
                                            XCTAssertTrue("\(o.error.map { "\($0)" } ?? "none")".contains("replica check failed after step 3"),
                                                          "\(name): \(String(describing: o.error))")
                                        } else if shard {
                                            // The allgather of the next step overwrites every rank's copy from the
                                            // coordinate's owner: the flipped bit flows into (or out of) every replica.
                                            XCTAssertNil(o.error, name)
                                            XCTAssertFalse(o.replicasDiffer, "\(name): the allgather re-replicates")
                                        } else {
                                            XCTAssertNil(o.error, name)
                                            XCTAssertTrue(o.replicasDiffer, "\(name): the fault had its effect (the check is off)")
                                        }
                                    }
                                    if withTimeline {
                                        for phase in ["data", "compute", "wait", "allreduce", "update"] {
                                            XCTAssertTrue(o.spans.contains(phase), "\(name): the timeline has no \(phase) span: \(o.spans)")
                                        }
                                        if fault == nil { XCTAssertTrue(FileManager.default.fileExists(atPath: trace!), "\(name): no trace file") }
                                    } else {
                                        XCTAssertTrue(o.spans.isEmpty, name)
                                    }
                                }
                            }
                        }
                    }
                  }
                }
            }
        }
        print("combinations: \(ran) ran with their effect, \(refused) refused with one message")
        XCTAssertGreaterThan(ran, 60)
        XCTAssertGreaterThan(refused, 250)
    }
}
