import XCTest
import Foundation
import DMLComm
import DMLStatus
import DMLTraining
import DMLTestSupport

/// `SharedAtomicFile`: every rank's part at its offset, in rank order (empty parts too); on a failed write
/// on any rank every rank gets the same error, the old file stays as it was and no temporary is left; a
/// directory that does not exist is `.cannotCreate` with nothing made.
final class SharedAtomicFileTests: XCTestCase {
    func testThePartsLandInRankOrderAndAFailureLeavesNothing() throws {
        let dir = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/out.bin"
        func part(_ r: Int) -> [UInt8] { (0..<(r == 1 ? 0 : 1000 * r + 507)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ r) } }
        for p in 1...5 {
            let totals = try LocalCommunicator.run(size: p) { comm in
                try part(comm.rank).withUnsafeBytes { try SharedAtomicFile.write($0, to: path, comm: comm) }
            }
            let expected = (0..<p).flatMap(part)
            XCTAssertEqual(totals, Array(repeating: expected.count, count: p))
            XCTAssertEqual(FileManager.default.contents(atPath: path).map { [UInt8]($0) }, expected, "np=\(p)")
        }
        let before = FileManager.default.contents(atPath: path)
        for failing in [0, 2] {
            let outcomes = try LocalCommunicator.run(size: 3) { comm -> String in
                do {
                    _ = try part(comm.rank).withUnsafeBytes {
                        try SharedAtomicFile.write($0, to: path, comm: comm, fault: comm.rank == failing ? .fail(afterBytes: 100) : nil)
                    }
                    return "written"
                } catch {
                    return "\(FailureKind(of: error)): \(error)"
                }
            }
            for o in outcomes {
                XCTAssertEqual(o, "I/O error: cannot write \(path): write failed (injected fault): No space left on device")
            }
            XCTAssertEqual(FileManager.default.contents(atPath: path), before, "the old file is untouched")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.bin"], "no temporary is left")
        }
        let missing = dir + "/no/such/dir/out.bin"
        XCTAssertThrowsError(try LocalCommunicator.run(size: 2) { comm in
            try [UInt8](repeating: 1, count: 10).withUnsafeBytes { try SharedAtomicFile.write($0, to: missing, comm: comm) }
        }) { XCTAssertEqual(FailureKind(of: $0), .cannotCreate, "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/no"))
    }
}
