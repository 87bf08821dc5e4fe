import DMLComm
import DMLData
import DMLKernels
import DMLTraining
import Foundation

// Trains `QuadraticRegression` on a synthetic task with DML's data-parallel trainer: run it under mpirun,
//     mpirun -np 2 .build/release/CustomModel
// Each rank makes only its shard of the rows (every value a function of the seed and the row's global index, so
// the data set is the same for any number of ranks); the trainer averages gradients with the ring allreduce and
// every rank applies the same update. Prints the loss as it falls and, per rank, a checksum of the parameters
// (the same on every rank: the replicas are identical).

let features = 8, rows = 4096, seed: UInt64 = 7

/// The rows `range` of the task: x uniform in [−1, 1), y = Σ_j (a_j·x_j² + b_j·x_j) + 0.5 + noise, with
/// a_j = 1 − j/d and b_j = (−1)^j·0.5.
func shard(_ range: Range<Int>) -> Dataset {
    var x = [Float](), y = [Float]()
    for row in range {
        let key = CounterRandom.hash(seed, UInt64(row))
        var target: Float = 0.5 + 0.01 * (CounterRandom.uniform(key, 1 << 20) - 0.5)
        for j in 0..<features {
            let v = CounterRandom.uniform(key, UInt64(j)) * 2 - 1
            x.append(v)
            target += (1 - Float(j) / Float(features)) * v * v + (j % 2 == 0 ? 0.5 : -0.5) * v
        }
        y.append(target)
    }
    return Dataset(features: features, classes: 0, globalRows: rows, firstRow: range.lowerBound, x: x, y: y)
}

do {
    let comm = try MPICommunicator.initializeWorld()
    defer { MPICommunicator.finalize() }
    let mine = ShardPlan(rows: rows, ranks: comm.size).range(of: comm.rank)
    let train = shard(mine)
    let model = QuadraticRegression(features: features)
    let config = TrainingConfig(steps: 300, batchSize: 128, learningRate: 0.1, seed: seed, logEvery: 50)
    let trainer = Trainer(comm: comm, model: model, train: train, config: config, allreduce: RingAllreduce(comm: comm))
    if comm.rank == 0 {
        print("custom model: \(model.kind), \(model.layout.count) parameters, \(comm.size) ranks, kernels \(KernelDispatch.isa.rawValue)")
        print("initial mse \(try trainer.evaluate(train).loss)")
    } else {
        _ = try trainer.evaluate(train)  // a collective: every rank takes part
    }
    try trainer.run(report: { r in
        if comm.rank == 0 { print("step \(r.step)/\(r.totalSteps) loss \(r.loss)") }
    })
    let final = try trainer.evaluate(train)
    try trainer.verifyReplicas()  // throws unless every rank holds the same parameter bits
    if comm.rank == 0 { print("final mse \(final.loss)") }
    print("rank \(comm.rank) parameters checksum \(String(trainer.stateChecksum, radix: 16))")
} catch {
    FileHandle.standardError.write("CustomModel: \(error)\n".data(using: .utf8)!)
    exit(1)
}
