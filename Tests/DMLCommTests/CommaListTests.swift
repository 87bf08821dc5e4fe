import XCTest
import DMLComm

/// The one parser of command-line lists.
final class CommaListTests: XCTestCase {
    func testItemsAreTrimmedAndEmptyItemsRefused() {
        XCTAssertEqual(CommaList.items("256, 128 ,\t64"), ["256", "128", "64"])
        XCTAssertNil(CommaList.items(""))
        XCTAssertNil(CommaList.items("256,,128"))
        XCTAssertNil(CommaList.items("256,"))
        XCTAssertEqual(CommaList.positiveIntegers("256,128"), [256, 128])
        XCTAssertNil(CommaList.positiveIntegers("256,0"))
        XCTAssertNil(CommaList.positiveIntegers("256,x"))
        XCTAssertEqual(CommaList.parse("1,2.5") { Double($0) }, [1, 2.5])
    }
}
