import DMLComm
import DMLData
import DMLKernels
import Foundation

extension Kernels {
    /// The sparse rows' products on the CSR rows of a LIBSVM file (`--sparse-data`), one thread, as scipy.sparse
    /// measures them (benchmarks/sparse_kernels.sh runs benchmarks/peers/sparse_scipy.py on the same file in the
    /// same run): for each `outputs` k, the forward `X·Wᵀ` (`SparseRows.forward`; scipy `X @ W`, W features × k)
    /// and the gradient `Dᵀ·X` accumulated into the touched columns (`SparseRows.accumulateTransposed`; scipy
    /// `X.T @ G`, G rows × k). Reported as non-zeros of X per second (and, for k > 1, multiply-adds per second
    /// in the CSV's gflops column as 2·nnz·k flops).
    func sparseRows(_ path: String, outputs: [Int], report: (Row) -> Void) throws {
        var options = ReadOptions()
        options.sparse = .on
        options.task = .regression
        let data = try LocalCommunicator.run(size: 1) { comm in try DataLoader.read(DataSource(path: path), options: options, comm: comm).0 }[0]
        let csr = data.csr!
        let n = csr.rows, d = csr.columns, nnz = csr.nonZeros
        print("sparse rows: \(path): \(n) rows × \(d) features, \(nnz) non-zeros (\(String(format: "%.4f", 100 * Double(nnz) / Double(n) / Double(d))) %)")
        let scratch = SparseRows()
        for k in outputs {
            let w = (0..<(k * d)).map { CounterRandom.uniform(11, UInt64($0)) * 2 - 1 }
            let g = (0..<(k * n)).map { CounterRandom.uniform(12, UInt64($0)) * 2 - 1 }
            var out = [Float](repeating: 0, count: n * k), grad = [Float](repeating: 0, count: k * d)
            csr.withView(rows: 0..<n) { x in
                let forward = time { SparseRows.forward(x, weights: w, ldw: d, outputs: k, into: &out, ldo: k) }
                report(Row(kernel: "csr_forward_XW_k\(k)", n: nnz, gflops: 2 * Double(nnz) * Double(k) / forward / 1e9, gbps: nil))
                print(String(format: "    %.1f M non-zeros/s", Double(nnz) / forward / 1e6))
                let transposed = time { scratch.accumulateTransposed(x, deltas: g, ldd: k, outputs: k, into: &grad, ldg: d) }
                report(Row(kernel: "csr_transposed_XtG_k\(k)", n: nnz, gflops: 2 * Double(nnz) * Double(k) / transposed / 1e9, gbps: nil))
                print(String(format: "    %.1f M non-zeros/s", Double(nnz) / transposed / 1e6))
            }
        }
    }
}
