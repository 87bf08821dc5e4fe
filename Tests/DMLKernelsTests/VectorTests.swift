import XCTest
import DMLKernels
import DMLTestSupport

final class VectorTests: XCTestCase {
    let sizes = [0, 1, 7, 8, 17, 31, 32, 33, 63, 129, 1000]

    func testDotAndSumMatchADoubleReference() {
        forEachISA(self) { _ in
            var rng = TestRandom(seed: 1)
            for n in sizes {
                let x = rng.floats(n), y = rng.floats(n)
                let ref = zip(x, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                let got = Vector.dot(x, y, n)
                XCTAssertEqual(Double(got), ref, accuracy: 1e-5 * Double(max(n, 1)), "dot n=\(n)")
                XCTAssertEqual(Double(Vector.sum(x, n)), x.reduce(0.0) { $0 + Double($1) }, accuracy: 1e-5 * Double(max(n, 1)), "sum n=\(n)")
            }
        }
    }

    /// `Vector.sum` over several blocks of `Vector.sumBlock` (block counts that are not powers of two, a short
    /// last block): on integer values every partial sum is exact, so the result must be the exact total.
    func testSumOverManyBlocksIsExactOnIntegers() {
        forEachISA(self) { _ in
            var rng = TestRandom(seed: 3)
            let block = Vector.sumBlock
            for n in [block + 1, 3 * block, 5 * block + 17, 7 * block + block / 2] {
                let x = rng.integerFloats(n)
                XCTAssertEqual(Double(Vector.sum(x, n)), x.reduce(0.0) { $0 + Double($1) }, "sum n=\(n)")
            }
        }
    }

    func testAxpyAndScaleMatchADoubleReference() {
        forEachISA(self) { _ in
            var rng = TestRandom(seed: 2)
            for n in sizes {
                let x = rng.floats(n)
                var y = rng.floats(n)
                let ref = zip(x, y).map { Double($0.1) + 0.75 * Double($0.0) }
                Vector.axpy(0.75, x, &y, n)
                XCTAssertLessThan(maxRelativeDifference(y, ref), 1e-6, "axpy n=\(n)")
                var z = x
                Vector.scale(-3, &z, n)
                XCTAssertEqual(z, x.map { $0 * -3 }, "scale n=\(n)")
            }
        }
    }

    func testSoftmaxIsStableForHugeInputs() {
        forEachISA(self) { _ in
            var x: [Float] = [1000, 1001, 1002]
            let lse = Softmax.inPlace(&x, 3)
            XCTAssertEqual(Double(lse), 1002 + log(1 + exp(-1.0) + exp(-2.0)), accuracy: 1e-3)
            XCTAssertEqual(Double(x.reduce(0, +)), 1, accuracy: 1e-6)
            XCTAssertTrue(x.allSatisfy { $0.isFinite && $0 > 0 })
        }
    }

    func testCounterRandomIsAPureFunctionOfItsKey() {
        XCTAssertEqual(CounterRandom.uniform(1, 2, 3), CounterRandom.uniform(1, 2, 3))
        XCTAssertNotEqual(CounterRandom.uniform(1, 2, 3), CounterRandom.uniform(1, 2, 4))
        let u = (0..<10_000).map { CounterRandom.uniform(9, UInt64($0)) }
        XCTAssertTrue(u.allSatisfy { $0 >= 0 && $0 < 1 })
        XCTAssertEqual(Double(u.reduce(0, +)) / 10_000, 0.5, accuracy: 0.02)
        let g = (0..<10_000).map { Double(CounterRandom.normal(9, UInt64($0))) }
        let mean = g.reduce(0, +) / 10_000
        XCTAssertEqual(mean, 0, accuracy: 0.05)
        XCTAssertEqual(g.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 10_000, 1, accuracy: 0.05)
    }
}
