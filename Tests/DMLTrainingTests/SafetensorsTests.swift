import XCTest
import DMLTraining
import DMLTestSupport

final class SafetensorsTests: XCTestCase {
    func sample() throws -> [UInt8] {
        let w: [Float] = [1, -2, 3.5, 4, 5, 6]
        return try w.withUnsafeBufferPointer { wp in
            try Safetensors.encode([
                Safetensors.Tensor(name: "weight", shape: [2, 3], floats: wp),
                Safetensors.Tensor(name: "step", shape: [1], int64s: [42]),
                Safetensors.Tensor(name: "stats", shape: [2], doubles: [0.5, -1]),
            ], metadata: ["model": "softmax"])
        }
    }

    func testRoundTrip() throws {
        let bytes = try sample()
        let headerLength = bytes.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        XCTAssertEqual(headerLength % 8, 0, "data starts 8-byte aligned")
        let file = try Safetensors.decode(bytes)
        XCTAssertEqual(file.metadata, ["model": "softmax"])
        XCTAssertEqual(try file.floats("weight"), [1, -2, 3.5, 4, 5, 6])
        XCTAssertEqual(file.entries["weight"]?.shape, [2, 3])
        XCTAssertEqual(try file.int64s("step"), [42])
        XCTAssertEqual(try file.doubles("stats"), [0.5, -1])
        XCTAssertThrowsError(try file.floats("step"), "wrong dtype is an error")
        XCTAssertThrowsError(try file.floats("missing"))
        XCTAssertEqual(try sample(), bytes, "encoding is deterministic")
    }

    func testEveryTruncationIsRejected() throws {
        let bytes = try sample()
        for n in 0..<bytes.count {
            XCTAssertThrowsError(try Safetensors.decode(Array(bytes.prefix(n))), "truncated to \(n) bytes")
        }
    }

    func testHostileHeadersAreRejected() throws {
        func file(_ json: String, data: Int) -> [UInt8] {
            var out = [UInt8]()
            withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { out += $0 }
            return out + Array(json.utf8) + [UInt8](repeating: 0, count: data)
        }
        let cases = [
            "not json",
            "[1,2]",
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,400]}}"#,
            #"{"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,4]}}"#,
            #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
            #"{"__metadata__":{"k":1}}"#,
        ]
        for json in cases {
            XCTAssertThrowsError(try Safetensors.decode(file(json, data: 8)), json)
        }
        var huge = [UInt8](repeating: 0xFF, count: 8)
        huge += [UInt8](repeating: 0, count: 8)
        XCTAssertThrowsError(try Safetensors.decode(huge), "header length larger than the file")
    }

    func testAtomicWriteReplacesTheFileAndLeavesNoTemporary() throws {
        let dir = MPIRunner.temporaryDirectory()
        let path = dir + "/model.safetensors"
        try AtomicFile.write([1, 2, 3], to: path)
        try AtomicFile.write([4, 5], to: path)
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data([4, 5]))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])
        XCTAssertThrowsError(try AtomicFile.write([1], to: dir + "/no/such/dir/file"))
        XCTAssertThrowsError(try AtomicFile.checkWritable(dir + "/no/such/dir/file"))
        XCTAssertThrowsError(try AtomicFile.checkWritable(dir))
        XCTAssertNoThrow(try AtomicFile.checkWritable(path))
    }
}
