import XCTest
import DMLComm

/// `allgathered` and `exchanged` with arrays of every length (none included), on 1…6 ranks.
final class ExchangeTests: XCTestCase {
    func testAllgatherAndAllToAllDeliverEveryArrayToItsRank() throws {
        for p in 1...6 {
            let results = try LocalCommunicator.run(size: p) { comm in
                let r = comm.rank
                let mine = (0..<(r * 3 % 5)).map { UInt64(r) << 32 | UInt64($0) }
                let gathered = try comm.allgathered(mine)
                // Rank r sends rank q the values (r, q, i) for i < (r + 2q) % 4: some pairs send nothing.
                let outgoing = (0..<p).map { q in (0..<((r + 2 * q) % 4)).map { Float(r * 100 + q * 10 + $0) } }
                let received = try comm.exchanged(outgoing, tag: 3)
                return (gathered, received)
            }
            for r in 0..<p {
                XCTAssertEqual(results[r].0, (0..<p).map { q in (0..<(q * 3 % 5)).map { UInt64(q) << 32 | UInt64($0) } }, "np=\(p)")
                XCTAssertEqual(results[r].1, (0..<p).map { q in (0..<((q + 2 * r) % 4)).map { Float(q * 100 + r * 10 + $0) } }, "np=\(p) rank \(r)")
            }
        }
    }
}
