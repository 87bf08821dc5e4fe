import XCTest
import DMLData
import DMLTraining

/// dml-train's HDF5 flags as the library sees them: which datasets each file is read from, and every misuse
/// refused before anything is read (`JobConfiguration.conflict`).
final class HDF5ConfigurationTests: XCTestCase {
    func base() -> JobConfiguration {
        var c = JobConfiguration()
        c.data.path = "train.h5"
        c.data.h5Features = "/train/X"
        c.data.h5Labels = "/train/y"
        return c
    }

    func testTheTestFileTakesItsOwnDatasetsOrTheTrainingNames() {
        var c = base()
        XCTAssertNil(c.conflict())
        XCTAssertEqual(c.data.trainingSource?.hdf5, HDF5Datasets(features: "/train/X", labels: "/train/y"))
        c.data.testPath = "test.h5"
        XCTAssertEqual(c.data.testSource?.hdf5, HDF5Datasets(features: "/train/X", labels: "/train/y"), "laid out as the training file")
        c.data.h5TestFeatures = "/test/X"
        XCTAssertEqual(c.data.testSource?.hdf5, HDF5Datasets(features: "/test/X", labels: nil), "named together: no labels dataset")
        c.data.h5TestLabels = "/test/y"
        XCTAssertEqual(c.data.testSource?.hdf5, HDF5Datasets(features: "/test/X", labels: "/test/y"))
        XCTAssertNil(c.conflict())
        c.data.testPath = "test.csv"
        c.data.h5TestFeatures = nil
        c.data.h5TestLabels = nil
        XCTAssertNil(c.data.testSource?.hdf5, "a CSV test file takes no datasets")
        XCTAssertNil(c.conflict())
    }

    func testEveryMisuseIsRefused() {
        func with(_ change: (inout JobConfiguration) -> Void) -> JobConfiguration { var c = base(); change(&c); return c }
        let refused: [(JobConfiguration, String)] = [
            (with { $0.data.h5Features = nil; $0.data.h5Labels = nil }, "--data train.h5 is HDF5: name its features dataset with --h5-features"),
            (with { $0.data.h5Features = nil }, "--h5-labels needs --h5-features"),
            (with { $0.data.labels = "y.npy" }, "--labels is a .npy file of labels for .npy features"),
            (with { $0.data.path = "train.csv" }, "--h5-features applies to HDF5 data (.h5, .hdf5 or --format hdf5), not to --data train.csv (csv)"),
            (with { $0.data.path = "train.npy"; $0.data.h5Features = nil }, "--h5-labels needs --h5-features"),
            (with { $0.data.path = nil; $0.data.h5Labels = nil }, "--h5-features needs --data"),
            (with { $0.data.h5TestFeatures = "/test/X" }, "--h5-test-features needs --test-data"),
            (with { $0.data.testPath = "t.h5"; $0.data.h5TestLabels = "/test/y" }, "--h5-test-labels needs --h5-test-features"),
            (with { $0.data.testPath = "t.csv"; $0.data.h5TestFeatures = "/test/X" },
             "--h5-test-features applies to HDF5 data (.h5, .hdf5 or --format hdf5), not to --test-data t.csv (csv)"),
            (with { $0.data.testPath = "t.h5"; $0.data.testLabels = "ty.npy" }, "--test-labels is a .npy file of labels"),
            (with { $0.data.h5Features = "" }, "--h5-features must name a dataset"),
        ]
        for (c, message) in refused {
            XCTAssertEqual(c.conflict()?.contains(message), true, "expected \(message), got \(c.conflict() ?? "accepted")")
        }
        // --format hdf5 makes any name HDF5.
        XCTAssertNil(with { $0.data.path = "train.bin"; $0.data.format = .hdf5 }.conflict())
    }
}
