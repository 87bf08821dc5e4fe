import XCTest
import DMLData
import DMLPredict

/// dml-predict's HDF5 flags: honoured with an HDF5 --data, refused otherwise, before anything is read.
final class HDF5PredictionConfigurationTests: XCTestCase {
    func testHDF5FlagsAreHonouredOrRefused() {
        let base = PredictionConfiguration(model: "m.safetensors", data: "d.h5", output: "p.csv", h5Features: "/X", h5Labels: "/y")
        XCTAssertNil(base.conflict())
        XCTAssertEqual(base.source.hdf5, HDF5Datasets(features: "/X", labels: "/y"))
        func with(_ change: (inout PredictionConfiguration) -> Void) -> PredictionConfiguration { var c = base; change(&c); return c }
        XCTAssertNil(with { $0.h5Labels = nil; $0.labelColumn = .column(.last) }.conflict(), "the label a column of the features")
        XCTAssertNil(with { $0.h5Labels = nil; $0.labelColumn = .none }.conflict())
        XCTAssertNil(with { $0.data = "d.bin"; $0.format = .hdf5 }.conflict())
        let refused: [(PredictionConfiguration, String)] = [
            (with { $0.h5Features = nil; $0.h5Labels = nil }, "--data d.h5 is HDF5: name its features dataset with --h5-features"),
            (with { $0.h5Features = nil }, "--h5-labels needs --h5-features"),
            (with { $0.data = "d.csv" }, "--h5-features applies to HDF5 data"),
            (with { $0.data = "d.npy"; $0.h5Labels = nil }, "--h5-features applies to HDF5 data"),
            (with { $0.labels = "y.npy" }, "--labels is a .npy file of labels for .npy features"),
            (with { $0.labelColumn = .column(.index(0)) }, "with --h5-labels the labels are a dataset of their own"),
            (with { $0.header = true }, "--header applies to CSV files only"),
        ]
        for (c, message) in refused {
            XCTAssertEqual(c.conflict()?.contains(message), true, "expected \(message), got \(c.conflict() ?? "accepted")")
        }
    }
}
