import XCTest
import Foundation
import DMLComm
import DMLData
import DMLKernels
import DMLModels
import DMLTraining
import DMLTestSupport

/// The full-batch passes over a shard streamed from a cache file (`--cache-dir` with `--optimizer lbfgs|newton`):
/// read a chunk at a time (`SecondOrderTrainer.blocks(of:chunkBytes:)`), never the whole shard, and the same
/// bits as the shard in memory — the losses, gradients, Hessian-vector products and the segment losses, for
/// dense and CSR rows, chunks of one and of several blocks, and a whole training run.
final class SecondOrderStreamingTests: XCTestCase {
    let rows = 2 * SecondOrderTrainer.blockRows + 377, features = 40

    /// The same rows in memory and streamed from a file written here in the cache's layout.
    func shards(sparse: Bool, classes: Int, directory: String) throws -> (memory: Dataset, streamed: Dataset) {
        var random = TestRandom(seed: 21)
        let y = (0..<rows).map { _ in Float(Int.random(in: 0..<classes, using: &random)) }
        let path = directory + (sparse ? "/csr.bin" : "/dense.bin")
        if sparse {
            var starts = [0], indices: [Int32] = [], values: [Float] = []
            for _ in 0..<rows {
                let columns = Set((0..<Int.random(in: 0...9, using: &random)).map { _ in Int32.random(in: 0..<Int32(features), using: &random) })
                for j in columns.sorted() { indices.append(j); values.append(Float.random(in: -2...2, using: &random)) }
                starts.append(indices.count)
            }
            var bytes = Data()
            indices.withUnsafeBytes { bytes.append(contentsOf: $0) }
            values.withUnsafeBytes { bytes.append(contentsOf: $0) }
            try bytes.write(to: URL(fileURLWithPath: path))
            let stream = try ShardStream(path: path, rows: rows, features: features, layout: .csr(rowStarts: starts, indices: 0, values: 4 * indices.count))
            let csr = CSRMatrix(columns: features, rowStarts: starts, indices: indices, values: values)
            return (Dataset(features: features, classes: classes, globalRows: rows, firstRow: 0, csr: csr, y: y),
                    Dataset(features: features, classes: classes, globalRows: rows, firstRow: 0, stream: stream, y: y))
        }
        let x = random.floats(rows * features, in: -2...2)
        try x.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
        let stream = try ShardStream(path: path, rows: rows, features: features, layout: .dense(offset: 0))
        return (Dataset(features: features, classes: classes, globalRows: rows, firstRow: 0, x: x, y: y),
                Dataset(features: features, classes: classes, globalRows: rows, firstRow: 0, stream: stream, y: y))
    }

    func models() -> [(TwiceDifferentiable, Int)] {
        [(LinearRegression(features: features, weightDecay: 0.01), 2), (LogisticRegression(features: features, weightDecay: 0.01), 2),
         (SoftmaxRegression(features: features, classes: 3, weightDecay: 0.01), 3)]
    }

    func testPassesOverAStreamedShardGiveTheInMemoryBits() throws {
        let directory = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for sparse in [false, true] {
            for (model, classes) in models() {
                let (memory, streamed) = try shards(sparse: sparse, classes: classes, directory: directory)
                var random = TestRandom(seed: 4)
                let theta = random.floats(model.layout.count, in: -0.3...0.3), other = random.floats(model.layout.count, in: -0.3...0.3)
                let v = random.floats(model.layout.count)
                func passes(_ blocks: ShardBlocks) throws -> [Double] {
                    let at = CurvatureWorkspace(), to = CurvatureWorkspace()
                    let p = model.layout.count
                    var g = [Double](repeating: 0, count: p), g2 = g, hv = g
                    let loss = try model.dataLossAndGradient(parameters: theta, blocks: blocks, into: &g, workspace: at)
                    let loss2 = try model.dataLossAndGradient(parameters: other, blocks: blocks, into: &g2, workspace: to)
                    try model.dataHessianVector(v, blocks: blocks, workspace: at, into: &hv)
                    let segment = memory.y.withUnsafeBufferPointer {
                        model.segmentLoss(from: at.keptMargins, to: to.keptMargins, t: 0.37, labels: $0.baseAddress!, rows: rows)
                    }
                    return [loss, loss2, segment.loss, segment.slope] + g + g2 + hv
                }
                let inMemory = try passes(SecondOrderTrainer.blocks(of: memory))
                let name = "\(type(of: model)) \(sparse ? "CSR" : "dense")"
                XCTAssertTrue(inMemory.contains { $0 != 0 } && inMemory.allSatisfy(\.isFinite), name)
                // One block a chunk, two blocks a chunk, and the whole shard in one chunk.
                let rowBytes = sparse ? 8 * Swift.max(1, streamed.stream!.nonZeros / rows) : 4 * features
                for chunk in [1, 2 * SecondOrderTrainer.blockRows * rowBytes, 1 << 30] {
                    let got = try passes(SecondOrderTrainer.blocks(of: streamed, chunkBytes: chunk))
                    XCTAssertEqual(got.map(\.bitPattern), inMemory.map(\.bitPattern), "\(name), chunks of \(chunk) bytes")
                }
            }
        }
    }

    /// A whole L-BFGS and Newton run on the streamed shard ends with the in-memory run's bits.
    func testTrainingOnAStreamedShardEndsWithTheInMemoryBits() throws {
        let directory = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for kind in [FullBatchMethodKind.lbfgs, .newton] {
            let (memory, streamed) = try shards(sparse: true, classes: 3, directory: directory)
            let results = try LocalCommunicator.run(size: 1) { comm -> [[Float]] in
                try [memory, streamed].map { data in
                    let trainer = SecondOrderTrainer(comm: comm, model: SoftmaxRegression(features: self.features, classes: 3, weightDecay: 0.01), train: data,
                                                     config: TrainingConfig(steps: 15, batchSize: nil, learningRate: 0, seed: 3, logEvery: 100),
                                                     settings: FullBatchSettings(kind: kind, memory: 4, tolerance: 0), allreduce: RingAllreduce(comm: comm))
                    try trainer.run { _ in }
                    return trainer.parameters
                }
            }
            XCTAssertEqual(results[0][1].map(\.bitPattern), results[0][0].map(\.bitPattern), "\(kind)")
        }
    }
}
