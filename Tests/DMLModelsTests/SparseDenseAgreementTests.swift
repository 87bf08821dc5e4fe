import XCTest
import DMLKernels
import DMLModels
import DMLTestSupport

/// Every model written once over `RowBlock`: on the same rows given dense and as CSR, the losses, gradients,
/// evaluations and predictions agree within 1e-6 relative (the CSR products sum in Double; the dense ones in
/// Float32), the CSR gradient writes only the weights of the touched columns (the others are not even read),
/// and `touchedColumns` is the sorted union of the batch's columns.
final class SparseDenseAgreementTests: XCTestCase {
    /// `rows × features` values about 8 % non-zero (a few rows empty), labels for `classes` (0: regression).
    func data(rows: Int, features: Int, classes: Int, seed: UInt64) -> (x: [Float], y: [Float]) {
        var random = TestRandom(seed: seed)
        var x = [Float](repeating: 0, count: rows * features), y = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            for j in 0..<features where Int.random(in: 0..<12, using: &random) == 0 { x[r * features + j] = Float.random(in: -2...2, using: &random) }
            y[r] = classes == 0 ? Float.random(in: -3...3, using: &random) : Float(Int.random(in: 0..<classes, using: &random))
        }
        return (x, y)
    }

    func relative(_ a: [Float], _ b: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for (u, v) in zip(a, b) { num += Double(u - v) * Double(u - v); den += Double(v) * Double(v) }
        return (num / Swift.max(den, 1e-300)).squareRoot()
    }

    func models(_ features: Int) -> [(Model, Int)] {
        [(LinearRegression(features: features, weightDecay: 0.01), 0),
         (LogisticRegression(features: features, weightDecay: 0.01), 2),
         (SoftmaxRegression(features: features, classes: 5, weightDecay: 0.01), 5),
         (MLP(features: features, hidden: [16, 8], classes: 4, activation: .tanh, weightDecay: 0.01), 4)]
    }

    func testDenseAndCSRBatchesAgree() {
        let features = 300
        for (model, classes) in models(features) {
            for rows in [1, 37, 300, 700] {
                let (x, y) = data(rows: rows, features: features, classes: classes, seed: UInt64(rows))
                let csr = CSRMatrix(dense: x, rows: rows, columns: features)
                var w = [Float](repeating: 0, count: model.layout.count)
                w.withUnsafeMutableBufferPointer { model.initialize($0, seed: 4) }
                var random = TestRandom(seed: 77)
                for i in w.indices { w[i] += Float.random(in: -0.1...0.1, using: &random) }
                var gd = [Float](repeating: 0, count: w.count), gs = gd
                let (ld, ed, pd): (Double, EvaluationSums, [Float]) = x.withUnsafeBufferPointer { xb in
                    y.withUnsafeBufferPointer { yb in
                        let batch = Batch(x: xb.baseAddress!, y: yb.baseAddress!, rows: rows, features: features)
                        var p = [Float](repeating: 0, count: rows * model.outputs)
                        model.predict(parameters: w, x: xb.baseAddress!, rows: rows, into: &p)
                        return (model.accumulateGradient(parameters: w, batch: batch, into: &gd), model.evaluate(parameters: w, batch: batch), p)
                    }
                }
                let (ls, es, ps): (Double, EvaluationSums, [Float]) = csr.withView(rows: 0..<rows) { v in
                    y.withUnsafeBufferPointer { yb in
                        let batch = Batch(block: RowBlock(v), y: yb.baseAddress!)
                        var p = [Float](repeating: 0, count: rows * model.outputs)
                        model.predict(parameters: w, block: batch.block, into: &p)
                        return (model.accumulateGradient(parameters: w, batch: batch, into: &gs), model.evaluate(parameters: w, batch: batch), p)
                    }
                }
                let what = "\(model.kind), \(rows) rows"
                XCTAssertTrue(model.acceptsSparseRows, what)
                XCTAssertEqual(ls, ld, accuracy: 1e-6 * abs(ld), "loss: \(what)")
                XCTAssertLessThan(relative(gs, gd), 1e-6, "gradient: \(what)")
                XCTAssertEqual(es.loss, ed.loss, accuracy: 1e-6 * abs(ed.loss), "evaluation: \(what)")
                XCTAssertEqual(es.correct, ed.correct, "correct rows: \(what)")
                XCTAssertLessThan(relative(ps, pd), 1e-6, "predictions: \(what)")
            }
        }
    }

    /// The CSR gradient of the first layer touches only the batch's columns: NaN in every other weight's
    /// gradient stays NaN and reaches nothing else.
    func testCSRGradientTouchesOnlyTheBatchsColumns() {
        let features = 500, rows = 20
        var (x, y) = data(rows: rows, features: features, classes: 3, seed: 5)
        for r in 0..<rows { for j in 250..<features { x[r * features + j] = 0 } }     // columns 250… untouched
        let csr = CSRMatrix(dense: x, rows: rows, columns: features)
        let model = SoftmaxRegression(features: features, classes: 3)
        let w = [Float](repeating: 0.01, count: model.layout.count)
        var g = [Float](repeating: 0, count: w.count)
        for c in 0..<3 { for j in 250..<features { g[c * features + j] = .nan } }
        let touched: [Int32]? = csr.withView(rows: 0..<rows) { v in
            y.withUnsafeBufferPointer { yb in
                let batch = Batch(block: RowBlock(v), y: yb.baseAddress!)
                _ = model.accumulateGradient(parameters: w, batch: batch, into: &g)
                return batch.touchedColumns()
            }
        }
        let expected = (0..<features).filter { j in (0..<rows).contains { x[$0 * features + j] != 0 } }.map(Int32.init)
        XCTAssertEqual(touched, expected)
        csr.withView(rows: 0..<rows) { XCTAssertEqual(SparseRows().touchedColumns($0), expected, "with marks") }
        csr.withView(rows: 3..<9) { v in
            XCTAssertEqual(v.touchedColumns(), (0..<features).filter { j in (3..<9).contains { x[$0 * features + j] != 0 } }.map(Int32.init))
        }
        XCTAssertTrue(expected.allSatisfy { $0 < 250 })
        for c in 0..<3 {
            for j in 0..<features {
                if j >= 250 { XCTAssertTrue(g[c * features + j].isNaN) } else { XCTAssertTrue(g[c * features + j].isFinite) }
            }
        }
        XCTAssertTrue(g[(3 * features)...].allSatisfy { $0.isFinite }, "biases")
        x.withUnsafeBufferPointer { XCTAssertNil(Batch(x: $0.baseAddress!, y: $0.baseAddress!, rows: 1, features: 1).touchedColumns()) }
    }

    /// Both ways of each CSR product (by column when the non-zeros outnumber the columns, else gathered /
    /// slotted) give the same bits, so a row's scores do not depend on the block it is predicted in.
    func testBothWaysOfTheCSRProductsGiveTheSameBits() {
        let rows = 60, features = 40, k = 11   // one 8-wide block of the C kernels and a tail
        let (x, _) = data(rows: rows, features: features, classes: 2, seed: 12)
        let csr = CSRMatrix(dense: x, rows: rows, columns: features)
        XCTAssertGreaterThan(csr.nonZeros, features, "the whole matrix takes the by-column way")
        var random = TestRandom(seed: 3)
        let w = (0..<(k * features)).map { _ in Float.random(in: -1...1, using: &random) }
        let g = (0..<(k * rows)).map { _ in Float.random(in: -1...1, using: &random) }
        var whole = [Float](repeating: 0, count: rows * k), single = whole
        csr.withView(rows: 0..<rows) { v in
            SparseRows.forward(v, weights: w, ldw: features, outputs: k, into: &whole, ldo: k)
            for r in 0..<rows {
                let one = v.rows(r, 1)
                XCTAssertLessThan(one.nonZeros, features)
                single.withUnsafeMutableBufferPointer { SparseRows.forward(one, weights: w, ldw: features, outputs: k, into: $0.baseAddress! + r * k, ldo: k) }
            }
        }
        XCTAssertEqual(whole.map(\.bitPattern), single.map(\.bitPattern))
        var byColumn = [Float](repeating: 0.5, count: k * features), slotted = byColumn
        let sparse = SparseRows()
        csr.withView(rows: 0..<rows) { v in
            sparse.accumulateTransposed(v, deltas: g, ldd: k, outputs: k, into: &byColumn, ldg: features)
            // The same rows declared wider than their non-zeros: the slotted way.
            let wide = CSRView(rowStarts: v.rowStarts, indices: v.indices, values: v.values, rows: rows, columns: v.nonZeros + 1)
            sparse.accumulateTransposed(wide, deltas: g, ldd: k, outputs: k, into: &slotted, ldg: features)
        }
        XCTAssertEqual(byColumn.map(\.bitPattern), slotted.map(\.bitPattern))
        XCTAssertNotEqual(byColumn, [Float](repeating: 0.5, count: k * features))
        // With the touched columns handed over (`CSRView.touched`, as the trainer does): the same bits, twice
        // in a row (the slots are reset), and the found list is the copying `touchedColumns()`'s.
        var known = [Float](repeating: 0.5, count: k * features)
        csr.withView(rows: 0..<rows) { v in
            let wide = CSRView(rowStarts: v.rowStarts, indices: v.indices, values: v.values, rows: rows, columns: v.nonZeros + 1)
            let columns = sparse.touchedColumns(wide)
            XCTAssertEqual(columns, wide.touchedColumns())
            columns.withUnsafeBufferPointer { sparse.accumulateTransposed(wide.withTouched($0), deltas: g, ldd: k, outputs: k, into: &known, ldg: features) }
            XCTAssertEqual(known.map(\.bitPattern), slotted.map(\.bitPattern))
            XCTAssertNil(wide.withTouched(UnsafeBufferPointer(start: nil, count: 0)).rows(0, 1).touched, "a sub-view does not inherit the list")
            var again = [Float](repeating: 0.5, count: k * features)
            sparse.accumulateTransposed(wide, deltas: g, ldd: k, outputs: k, into: &again, ldg: features)
            XCTAssertEqual(again.map(\.bitPattern), slotted.map(\.bitPattern))
        }
        // The C kernels of the by-column way give the same bits on every ISA this CPU runs.
        for isa in KernelDispatch.supported {
            var out = [Float](repeating: 0, count: rows * k), grad = [Float](repeating: 0.5, count: k * features)
            KernelDispatch.with(isa) {
                csr.withView(rows: 0..<rows) { v in
                    SparseRows.forward(v, weights: w, ldw: features, outputs: k, into: &out, ldo: k)
                    sparse.accumulateTransposed(v, deltas: g, ldd: k, outputs: k, into: &grad, ldg: features)
                }
            }
            XCTAssertEqual(out.map(\.bitPattern), whole.map(\.bitPattern), "\(isa)")
            XCTAssertEqual(grad.map(\.bitPattern), byColumn.map(\.bitPattern), "\(isa)")
        }
    }

    /// A model that does not implement CSR rows predicts them through the default: dense blocks.
    func testTheDefaultPredictionDensifiesCSRRows() {
        final class Dense: Model {
            let kind = "dense", isClassifier = false, inputs = 3, outputs = 1
            let layout = ParameterLayout([("w", [3])])
            func initialize(_ p: UnsafeMutableBufferPointer<Float>, seed: UInt64) {}
            func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch, into g: UnsafeMutablePointer<Float>) -> Double { 0 }
            func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums { EvaluationSums(loss: 0, correct: 0) }
            func predict(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
                for r in 0..<rows { out[r] = x[3 * r] * parameters[0] + x[3 * r + 1] * parameters[1] + x[3 * r + 2] * parameters[2] }
            }
        }
        let model = Dense()
        XCTAssertFalse(model.acceptsSparseRows)
        let csr = CSRMatrix(dense: [1, 0, 2, 0, 0, 0, 0, 3, 0], rows: 3, columns: 3)
        var out = [Float](repeating: -1, count: 3)
        csr.withView(rows: 0..<3) { model.predict(parameters: [1, 10, 100], block: RowBlock($0), into: &out) }
        XCTAssertEqual(out, [201, 0, 30])
    }
}
