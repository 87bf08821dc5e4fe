import XCTest
import Foundation
import DMLData
import DMLTestSupport

final class DecimalParserTests: XCTestCase {
    func strtodValue(_ s: String) -> Double { s.withCString { strtod($0, nil) } }

    /// The parser gives strtod's bits, on random values printed in many styles, including the ones that
    /// leave the fast path (long mantissas, large exponents, subnormals).
    func testAgreesWithStrtodOnRandomValues() {
        var random = TestRandom(seed: 77)
        let formats = ["%.17g", "%.9g", "%.6f", "%.3e", "%g", "%.20e", "%.0f", "%.25f"]
        var checked = 0
        for i in 0..<60_000 {
            let magnitude = Double.random(in: -30...30, using: &random)
            var v = Double.random(in: -1...1, using: &random) * pow(10, magnitude)
            if i % 1000 == 0 { v = [Double.leastNonzeroMagnitude, 2.2250738585072014e-308, 1.7976931348623157e308, 0x1p53 + 2, 0.1, -0.0][i / 1000 % 6] }
            let text = String(format: formats[i % formats.count], v)
            guard let parsed = DecimalParser.parse(text) else { XCTFail("not parsed: \(text)"); continue }
            XCTAssertEqual(parsed.bitPattern, strtodValue(text).bitPattern, text)
            checked += 1
        }
        for text in ["0", "-0", "+7", ".5", "5.", "1E5", "1e-5", "00012.50", "123456789012345678901234567890",
                     "0.000000000000000000000000000001", "1e-400", "4.9e-324", "1e308", "18446744073709551615",
                     "9007199254740993", "0.30000000000000004", "1234567890123456789e-10", "1e+22", "1e23"] {
            XCTAssertEqual(DecimalParser.parse(text)?.bitPattern, strtodValue(text).bitPattern, text)
        }
        XCTAssertEqual(checked, 60_000)
    }

    func testRejectsWhatIsNotADecimalNumber() {
        for text in ["", "-", ".", "e5", "abc", "0x10", "nan", "inf", "1e", "1,5", "1 2", "--1", "1.2.3"] {
            XCTAssertNil(DecimalParser.parse(text), text)
        }
    }
}
