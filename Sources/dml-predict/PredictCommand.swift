import ArgumentParser
import DMLData
import DMLComm
import DMLCommandLine
import DMLData
import DMLPredict
import DMLStatus
import DMLTraining
import Foundation

/// `dml-predict`: predictions and scores of a trained model on new data, under `mpirun`, every rank its share
/// of the rows. Only flags and printing: the library's `PredictionJob` does the work.
@main
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dml-predict",
        abstract: "Predict with a model file of dml-train on new data, in parallel; optionally score the predictions.",
        discussion: """
            Every rank runs it (mpirun -np N), e.g.:
              mpirun -np 8 dml-predict --model model.safetensors --data new.csv --output predictions.csv
              mpirun -np 8 dml-predict --model model.safetensors --data test.csv --evaluate --report report.json
            Each rank reads only its share of --data; the predictions come out in the input's row order, in one file \
            that every rank writes its part of. The model's standardisation is applied and class labels are written \
            as the training file wrote them. The data's columns are the model's features, optionally with one label \
            column (needed by --evaluate and --report). Errors are printed once, by rank 0; the exit status \
            (sysexits.h) says what failed:
            \(FailureKind.exitStatusHelp.replacingOccurrences(of: "0 trained to the end", with: "0 predicted (outputs written)"))
            """,
        version: DMLVersion.string)

    @Option(help: "The model: a file written by dml-train --output.")
    var model: String

    @Option(help: "The rows to predict: a CSV, LIBSVM/SVMlight, NumPy .npy or HDF5 (.h5, with --h5-features) file (read as dml-train --data reads it).")
    var data: String

    @Option(help: "Labels for .npy features, as a 1-D .npy file.")
    var labels: String?

    @Option(help: "File format of --data: \(DataFormat.allCases.map(\.rawValue).joined(separator: ", ")) (default: from the file extension).")
    var format: DataFormat?

    @Option(name: .customLong("label-column"),
            help: ArgumentHelp("The label's column (CSV, 2-D .npy): a 0-based index, 'last', a header name, or 'none' (every column is a feature).",
                               discussion: "Default: by the column count — the model's feature count means no labels; one more means a label column: the one whose header name is not among the model's feature names, else column 0."))
    var labelColumn: LabelChoice?

    @OptionGroup var csv: CSVOptions

    @OptionGroup var hdf5: HDF5Options

    @Option(help: "Write the predictions here: .csv (with a header line) or .npy, by the name. Class labels as the training file wrote them, or values for regression.")
    var output: String?

    @Flag(name: .customLong("proba"), help: "Write one probability per class instead of the label (classifiers; the CSV header names the classes).")
    var probabilities = false

    @Flag(help: "Score the predictions against the data's labels and print the scores (classification: accuracy, log-loss, per-class precision/recall/F1, confusion matrix, ROC AUC for two classes; regression: MSE, MAE, R²).")
    var evaluate = false

    @Option(help: "Write the scores as JSON to this file (computes them, as --evaluate does).")
    var report: String?

    @Option(name: .customLong("collective-timeout"),
            help: "Seconds any collective may wait without progress before the job ends naming the rank that did not answer (0: forever); reading gets five times this.")
    var collectiveTimeout: Double = 60

    @Option(help: ArgumentHelp("LIBSVM rows as CSR (on), dense (off) or auto, by dml-train's rule: CSR below 10% non-zeros.",
                               discussion: "A model trained with --hash-bits hashes the indices with its own map (its feature_hash metadata) whatever this says."))
    var sparse: SparseMode = .auto

    @Option(name: .customLong("categorical-unseen"),
            help: "A model with --categorical columns, given a value its training data did not have: zero (an all-zero block, counted in the log) or error (one message with its line and column).")
    var categoricalUnseen: UnseenCategory = .zero

    /// What the command line asked for, as the library's plain values.
    var job: PredictionConfiguration {
        var c = PredictionConfiguration(model: model, data: data, labels: labels, format: format, header: csv.header, delimiter: csv.delimiter,
                                        labelColumn: labelColumn ?? .detect, output: output, probabilities: probabilities, evaluate: evaluate,
                                        report: report, collectiveTimeout: collectiveTimeout, h5Features: hdf5.features, h5Labels: hdf5.labels)
        c.sparse = sparse
        c.unseenCategory = categoricalUnseen
        return c
    }

    func validate() throws {
        if let conflict = job.conflict() { throw ValidationError(conflict) }
    }

    static func main() {
        Foundation.exit(parsedOnEveryRank().predict())
    }

    /// Runs the job on this rank; returns the process exit status. No stop-signal handlers: a stopped
    /// prediction has nothing to save, so SIGTERM ends it at once (its output is never half-written).
    func predict() -> Int32 {
        RankProcess.run(program: "dml-predict", collectiveTimeout: collectiveTimeout) { comm in
            let faults = try comm.agreeing { try FaultPlan.fromEnvironment() }
            _ = try PredictionJob(configuration: job, comm: comm, faults: faults).run()
        }
    }
}

extension LabelChoice: ExpressibleByArgument {}
