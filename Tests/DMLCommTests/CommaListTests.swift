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

    func testANegativeNumberAfterAnOptionIsItsValue() {
        XCTAssertEqual(CommandLineValues.joiningNegativeNumbers(["--lr", "-1", "--steps", "5"]), ["--lr=-1", "--steps", "5"])
        XCTAssertEqual(CommandLineValues.joiningNegativeNumbers(["--lr", "-.5e-3"]), ["--lr=-.5e-3"])
        // Not numbers, already joined, short flags, and anything after `--` stay as they are.
        XCTAssertEqual(CommandLineValues.joiningNegativeNumbers(["--lr", "-x"]), ["--lr", "-x"])
        XCTAssertEqual(CommandLineValues.joiningNegativeNumbers(["--lr=-1", "-2"]), ["--lr=-1", "-2"])
        XCTAssertEqual(CommandLineValues.joiningNegativeNumbers(["-n", "-1"]), ["-n", "-1"])
        XCTAssertEqual(CommandLineValues.joiningNegativeNumbers(["--", "--lr", "-1"]), ["--", "--lr", "-1"])
        XCTAssertEqual(CommandLineValues.joiningNegativeNumbers(["--lr", "-"]), ["--lr", "-"])
    }
}
