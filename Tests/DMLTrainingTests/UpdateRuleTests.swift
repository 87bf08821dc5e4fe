import XCTest
import DMLTraining

/// The element-wise rules as parts (`UpdateRule`, `UpdateRules`): the registry, and the three ways a rule can
/// be applied — over every coordinate, over slices (as a sharded update will), over touched coordinates — giving
/// each coordinate the same bits.
final class UpdateRuleTests: XCTestCase {
    let n = 37

    /// A deterministic pseudo-random vector (no Foundation randomness: the same on every run).
    func values(_ seed: UInt64, _ count: Int, scale: Float = 1, nonNegative: Bool = false) -> [Float] {
        var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            let u = Float(x >> 40) / Float(1 << 24)  // [0, 1)
            return scale * (nonNegative ? u : 2 * u - 1)
        }
    }

    /// Every rule's configuration, with a weight decay λ.
    func config(_ kind: OptimizerKind, weightDecay: Float = 0) -> OptimizerConfig {
        var c = OptimizerConfig(kind: kind, momentum: 0.8, beta1: 0.85, beta2: 0.99, epsilon: 1e-7, weightDecay: weightDecay)
        c.nesterov = kind == .momentum
        return c
    }

    /// An optimizer over `n` parameters after two dense steps (so its state is not zero), its parameters, and
    /// a gradient that is +0 outside `touched`.
    func prepared(_ kind: OptimizerKind, weightDecay: Float = 0, decayed: [Range<Int>] = []) -> (Optimizer, [Float], [Float], [Int32]) {
        let opt = Optimizer(config(kind, weightDecay: weightDecay), count: n, decayed: decayed)
        var w = values(1, n)
        for t in 1...2 {
            let g = values(UInt64(10 + t), n)
            w.withUnsafeMutableBufferPointer { wp in g.withUnsafeBufferPointer { opt.step(parameters: wp.baseAddress!, gradient: $0.baseAddress!, t: t, learningRate: 0.05) } }
        }
        let touched: [Int32] = [30, 2, 17, 5, 11, 36, 0]  // unsorted on purpose
        var g = [Float](repeating: 0, count: n)
        let dense = values(99, n)
        for c in touched { g[Int(c)] = dense[Int(c)] }
        return (opt, w, g, touched)
    }

    func testTheRegistryNamesEveryRuleOnceAndTheKindsRoundTrip() {
        let names = UpdateRules.registered.map { $0.name }
        XCTAssertEqual(names, ["sgd", "momentum", "adam", "adamw", "adagrad"])
        XCTAssertEqual(OptimizerKind.allCases.map(\.rawValue), names + ["lbfgs", "newton"])
        for kind in OptimizerKind.allCases {
            XCTAssertEqual(OptimizerKind(rawValue: kind.rawValue), kind)
            XCTAssertEqual("\(kind)", kind.rawValue)
            XCTAssertEqual(kind.isFullBatch, kind.rule == nil, kind.rawValue)
        }
        XCTAssertNil(OptimizerKind(rawValue: "rmsprop"))
        XCTAssertEqual(UpdateRules.registered.map { $0.stateCopies }, [0, 1, 2, 2, 1])
        // The canonical description names every hyper-parameter (a resume compares it).
        XCTAssertEqual(config(.momentum).description, "momentum(momentum=0.8,nesterov)")
        XCTAssertEqual(config(.adamw, weightDecay: 0.5).description, "adamw(beta1=0.85,beta2=0.99,eps=1e-07) weight_decay=0.5")
        XCTAssertEqual(config(.sgd).description, "sgd")
    }

    /// Slices: the update of `0..<n` cut at any points (through the decayed ranges) gives the whole update's
    /// bits; and so does a rank that holds only its slice of parameters and state in buffers of its own (a
    /// sharded update, `UpdateBuffers.stateStride` = the slice's length).
    func testSlicesGiveTheWholeUpdatesBitsForEveryRule() {
        for kind in OptimizerKind.allCases where !kind.isFullBatch {
            let decayed = [3..<20, 25..<33]
            let (whole, w0, _, _) = prepared(kind, weightDecay: 0.01, decayed: decayed)
            let (sliced, _, _, _) = prepared(kind, weightDecay: 0.01, decayed: decayed)
            let (sharded, _, _, _) = prepared(kind, weightDecay: 0.01, decayed: decayed)
            let g = values(7, n)
            var a = w0, b = w0, c = w0
            a.withUnsafeMutableBufferPointer { wp in g.withUnsafeBufferPointer { whole.step(parameters: wp.baseAddress!, gradient: $0.baseAddress!, t: 3, learningRate: 0.05) } }
            b.withUnsafeMutableBufferPointer { wp in
                g.withUnsafeBufferPointer { gp in
                    for r in [0..<5, 5..<22, 22..<22, 22..<37] {
                        sliced.step(parameters: wp.baseAddress!, gradient: gp.baseAddress!, range: r, t: 3, learningRate: 0.05)
                    }
                }
            }
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(kind): sliced parameters")
            XCTAssertEqual(whole.state.map(\.bitPattern), sliced.state.map(\.bitPattern), "\(kind): sliced state")
            // A shard 10..<28 in its own buffers, with λ where the decayed ranges say (3..<20 and 25..<33).
            let lo = 10, hi = 28, m = hi - lo, copies = kind.stateCopies
            var ws = Array(c[lo..<hi]), gs = Array(g[lo..<hi])
            var ss = (0..<copies).flatMap { k in sharded.state[(k * n + lo)..<(k * n + hi)] }
            if ss.isEmpty { ss = [0] }
            ws.withUnsafeMutableBufferPointer { wp in
                gs.withUnsafeMutableBufferPointer { gp in
                    ss.withUnsafeMutableBufferPointer { sp in
                        let buffers = UpdateBuffers(parameters: wp.baseAddress!, gradient: gp.baseAddress!, state: sp.baseAddress!, stateStride: m)
                        let step = UpdateStep(t: 3, learningRate: 0.05)
                        sharded.rule.update(buffers, count: 10, lambda: 0.01, step: step)                      // 10..<20 decayed
                        sharded.rule.update(buffers.advanced(by: 10), count: 5, lambda: 0, step: step)        // 20..<25
                        sharded.rule.update(buffers.advanced(by: 15), count: 3, lambda: 0.01, step: step)     // 25..<28 decayed
                    }
                }
            }
            c.replaceSubrange(lo..<hi, with: ws)
            XCTAssertEqual(Array(a[lo..<hi]).map(\.bitPattern), ws.map(\.bitPattern), "\(kind): sharded parameters")
            for k in 0..<copies {
                XCTAssertEqual(Array(whole.state[(k * n + lo)..<(k * n + hi)]).map(\.bitPattern), Array(ss[(k * m)..<((k + 1) * m)]).map(\.bitPattern),
                               "\(kind): sharded state copy \(k)")
            }
        }
    }

    /// Touched coordinates: every rule gives a touched coordinate the dense update's bits; a rule that leaves
    /// +0 gradients alone (sgd, adagrad) gives the dense update's bits everywhere, while momentum and Adam do
    /// move untouched coordinates (which is why the trainer runs their dense update on sparse steps).
    func testTouchedCoordinatesGetTheDenseBitsAndExactRulesMatchEverywhere() {
        for kind in OptimizerKind.allCases where !kind.isFullBatch {
            let (dense, w0, g, touched) = prepared(kind)
            let (indexed, _, _, _) = prepared(kind)
            var a = w0, b = w0
            a.withUnsafeMutableBufferPointer { wp in g.withUnsafeBufferPointer { dense.step(parameters: wp.baseAddress!, gradient: $0.baseAddress!, t: 3, learningRate: 0.05) } }
            let stateBefore = indexed.state
            b.withUnsafeMutableBufferPointer { wp in
                g.withUnsafeBufferPointer { gp in
                    indexed.state.withUnsafeMutableBufferPointer { sp in
                        let buffers = UpdateBuffers(parameters: wp.baseAddress!, gradient: gp.baseAddress!, state: sp.baseAddress ?? wp.baseAddress!, stateStride: n)
                        touched.withUnsafeBufferPointer { indexed.rule.update(buffers, at: $0, step: UpdateStep(t: 3, learningRate: 0.05)) }
                    }
                }
            }
            let copies = kind.stateCopies
            for c in touched.map(Int.init) {
                XCTAssertEqual(a[c].bitPattern, b[c].bitPattern, "\(kind): touched coordinate \(c)")
                for k in 0..<copies { XCTAssertEqual(dense.state[k * n + c].bitPattern, indexed.state[k * n + c].bitPattern, "\(kind): state \(k) at \(c)") }
            }
            let untouched = (0..<n).filter { !touched.contains(Int32($0)) }
            XCTAssertTrue(untouched.allSatisfy { b[$0].bitPattern == w0[$0].bitPattern }, "\(kind): the indexed update leaves the others alone")
            XCTAssertTrue(untouched.allSatisfy { k in (0..<copies).allSatisfy { indexed.state[$0 * n + k] == stateBefore[$0 * n + k] } })
            if dense.updatesOnlyNonZeroGradients {
                XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(kind): exact on the touched coordinates")
                XCTAssertEqual(dense.state.map(\.bitPattern), indexed.state.map(\.bitPattern), "\(kind): state")
                // And through the optimizer's own indexed step.
                let (third, _, _, _) = prepared(kind)
                var c = w0
                c.withUnsafeMutableBufferPointer { wp in
                    g.withUnsafeBufferPointer { gp in
                        touched.withUnsafeBufferPointer { third.step(parameters: wp.baseAddress!, gradient: gp.baseAddress!, at: $0, t: 3, learningRate: 0.05) }
                    }
                }
                XCTAssertEqual(a.map(\.bitPattern), c.map(\.bitPattern), "\(kind): Optimizer.step(at:)")
            } else {
                XCTAssertTrue(untouched.contains { a[$0] != w0[$0] }, "\(kind) moves coordinates whose gradient is 0")
            }
        }
        XCTAssertEqual(OptimizerKind.allCases.filter { !$0.isFullBatch && Optimizer(config($0), count: 1, decayed: []).updatesOnlyNonZeroGradients },
                       [.sgd, .adagrad])
        XCTAssertFalse(Optimizer(config(.adagrad, weightDecay: 0.1), count: 1, decayed: [0..<1]).updatesOnlyNonZeroGradients, "weight decay moves every weight")
    }
}
