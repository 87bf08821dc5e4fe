import XCTest
import DMLData
import DMLModels
import DMLTraining
import DMLStatus
import DMLTestSupport

/// Model files describe themselves (`ModelFile`): named tensors and everything prediction needs; damaged,
/// foreign, newer and old files are each refused with their reason, or (old linear models) still load.
final class ModelFileTests: XCTestCase {
    func sample() -> ModelFile {
        let mlp = MLP(features: 3, hidden: [4], classes: 2, activation: .tanh)
        var rng = TestRandom(seed: 3)
        return ModelFile(model: mlp, parameters: rng.floats(mlp.layout.count), hidden: [4], activation: .tanh,
                         labels: LabelMapping(values: [-1, 1]), standardization: Standardization(mean: [1, 2, 3], std: [0.5, 1, 2]),
                         featureNames: ["a", "b, with comma", "c \"quoted\""], provenance: ["step": "7", "data_checksum": "00ff"])
    }

    func testEverythingPredictionNeedsRoundTrips() throws {
        let f = sample()
        let bytes = try f.encode()
        let back = try ModelFile.decode(bytes)
        XCTAssertEqual(back, f)
        let file = try Safetensors.decode(bytes)
        XCTAssertEqual(Set(file.entries.keys), ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"])
        XCTAssertEqual(file.entries["layers.0.weight"]?.shape, [4, 3])
        XCTAssertEqual(file.metadata["activation"], "tanh")
        XCTAssertEqual(file.metadata["hidden"], "[4]")
        XCTAssertEqual(file.metadata["labels"], #"["-1","1"]"#)
        XCTAssertEqual(file.metadata["classes"], "2")
        XCTAssertEqual(file.metadata["task"], "classification")
        XCTAssertEqual(file.metadata["format"], "dml-model")
        XCTAssertEqual(file.metadata["dml_version"], DMLVersion.string)
        XCTAssertEqual(back.makeModel().kind, "mlp")
    }

    func testBadFilesAreRefusedWithTheirReason() throws {
        var bytes = try sample().encode()
        bytes[bytes.count - 3] ^= 0x01
        XCTAssertThrowsError(try ModelFile.decode(bytes)) { XCTAssertTrue("\($0)".contains("checksum mismatch"), "\($0)") }
        // A newer format.
        let newer = try Safetensors.sealed([], metadata: ["format": "dml-model", "format_version": "9", "dml_version": "9.0"])
        XCTAssertThrowsError(try ModelFile.decode(newer)) { XCTAssertTrue("\($0)".contains("written by a newer DML (9.0)"), "\($0)") }
        // A checkpoint is not a model.
        let ckpt = try Checkpoint(step: 1, epoch: 0, parameters: [1], optimizerState: [], identity: [:]).encode()
        XCTAssertThrowsError(try ModelFile.decode(ckpt)) { XCTAssertTrue("\($0)".contains("it is a checkpoint, not a model"), "\($0)") }
        XCTAssertThrowsError(try ModelFile.decode(try Safetensors.encode([], metadata: [:]))) {
            XCTAssertTrue("\($0)".contains("not a DML model file"), "\($0)")
        }
        XCTAssertThrowsError(try ModelFile.read(path: "/nonexistent/model.safetensors")) { XCTAssertTrue("\($0)".contains("no such model file"), "\($0)") }
    }

    func testFilesOfTheOldFlatLayoutLoadOrAreRefused() throws {
        let w: [Float] = [1, 2, 3], b: [Float] = [0.5]
        let old = try w.withUnsafeBufferPointer { wp in try b.withUnsafeBufferPointer { bp in
            try Safetensors.encode([Safetensors.Tensor(name: "weight", shape: [1, 3], floats: wp), Safetensors.Tensor(name: "bias", shape: [1], floats: bp)],
                                   metadata: ["format": "dml", "model": "logistic", "features": "3", "classes": "1", "labels": #"["0","1"]"#])
        } }
        let f = try ModelFile.decode(old)
        XCTAssertEqual(f.kind, .logistic)
        XCTAssertEqual(f.parameters, [1, 2, 3, 0.5])
        XCTAssertEqual(f.classes, 2, "an old logistic file said classes 1 next to two labels")
        let oldMLP = try Safetensors.encode([], metadata: ["format": "dml", "model": "mlp", "features": "3", "classes": "2"])
        XCTAssertThrowsError(try ModelFile.decode(oldMLP)) { XCTAssertTrue("\($0)".contains("does not record its activation"), "\($0)") }
    }
}
