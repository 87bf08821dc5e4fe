import ArgumentParser
import DMLComm
import DMLData
import DMLStatus
import DMLTraining
import DMLCommandLine

/// Where the training and test rows come from: `--data` files (CSV, LIBSVM, NPY), or without `--data` the
/// built-in synthetic task (`JobConfiguration.Data`, whose `load` reads each rank's share).
struct DataOptions: ParsableArguments {
    @Option(help: "Training data: a CSV, LIBSVM/SVMlight, NumPy .npy or HDF5 (.h5, with --h5-features) file (default: the synthetic task).")
    var data: String?

    @Option(help: "Labels for .npy features, as a 1-D .npy file (otherwise a column of --data holds them).")
    var labels: String?

    @Option(name: .customLong("test-data"), help: "Test data, in the format of --data.")
    var testData: String?

    @Option(name: .customLong("test-labels"), help: "Labels for .npy test features.")
    var testLabels: String?

    @OptionGroup var hdf5: HDF5Options

    @Option(name: .customLong("h5-test-features"),
            help: "HDF5 --test-data: the features dataset (default: the name --h5-features gives, with --h5-labels' for the labels).")
    var h5TestFeatures: String?

    @Option(name: .customLong("h5-test-labels"), help: "HDF5 --test-data: the labels dataset, with --h5-test-features.")
    var h5TestLabels: String?

    @Option(help: "File format: \(DataFormat.allCases.map(\.rawValue).joined(separator: ", ")) (default: from the file extension).")
    var format: DataFormat?

    @Option(help: "classification (integer labels become classes 0…k−1) or regression (labels are real targets; without --data, the synthetic task's noisy linear target, for the linear model).")
    var task: LearningTask = .classification

    @Option(name: .customLong("label-column"),
            help: "Column holding the label (CSV or 2-D .npy): a 0-based index, 'last', or a header name.")
    var labelColumn: LabelColumn = .index(0)

    @OptionGroup var csv: CSVOptions

    @Option(help: "LIBSVM: number of features (default: the largest index in the file).")
    var features: Int?

    @Option(help: ArgumentHelp("LIBSVM rows kept as CSR (on), dense (off), or auto: CSR when fewer than 10% of the values are non-zero (over all ranks).",
                               discussion: "auto reads dense rows with --standardize, --balance and --partition features, which need them; on is refused with those flags and for CSV/.npy input."))
    var sparse: SparseMode = .auto

    @Option(name: .customLong("hash-bits"),
            help: "LIBSVM: hash feature indices into 2^B columns (1…31) with XXH3-64 of the index (8 bytes, little-endian) and seed 0x444D4C5F48415348; values sharing a bucket in a row are added. Stored in --output for dml-predict.")
    var hashBits: Int?

    @Option(help: "CSV missing values (empty, NA, NaN, null, ?): error (refuse the file), zero, or mean (the training rows' column means over all ranks, saved in --output for dml-predict).")
    var missing: MissingPolicy = .error

    @Option(name: .customLong("drop-columns"), help: "CSV columns to leave out, comma-separated: 0-based indices, 'last' or header names (e.g. a row index or an ID column).")
    var dropColumns: String?

    @Option(help: "CSV columns holding categories (text or codes), comma-separated indices or header names: each is one-hot encoded (one 0/1 feature per category of the training data, sorted; saved in --output for dml-predict).")
    var categorical: String?

    @Option(name: .customLong("categorical-encoding"),
            help: "How --categorical columns become features: onehot (one 0/1 feature per category) or hash (with --hash-bits: hashed into 2^B CSR columns, as LIBSVM indices are; no category list).")
    var categoricalEncoding: CategoricalEncoding = .onehot

    /// `--drop-columns` as column references (validated in `validate`).
    var droppedColumns: [LabelColumn] { Self.columns(dropColumns) }
    /// `--categorical` as column references (validated in `validate`).
    var categoricalColumns: [LabelColumn] { Self.columns(categorical) }

    static func columns(_ list: String?) -> [LabelColumn] {
        (list ?? "").split(separator: ",", omittingEmptySubsequences: false).compactMap { LabelColumn(argument: String($0)) }
    }

    @Option(name: .customLong("cache-dir"),
            help: ArgumentHelp("Stream the training rows from a binary shard cache in DIR instead of holding them in memory.",
                               discussion: "The first run parses each rank's part of --data once and writes DIR/<file>.<digest>.rank<r>of<n>.dmlshard (float32 or CSR rows, XXH3-checked); later runs on the same file, size, modification time and read options reuse it, and a stale or damaged cache is rebuilt with a warning. Every epoch reads the rows of each batch from it (in step windows, on the rank's own thread): the same bits as in memory."))
    var cacheDir: String?

    @Option(name: .customLong("max-memory"),
            help: "Memory per rank (e.g. 512M, 4G) for the model, the optimizer state and the streamed batches; needs --cache-dir. A limit too small for one batch is refused before training.")
    var maxMemory: String?

    @Flag(help: "Standardise features to mean 0, std 1 with the training rows' global statistics (saved in --output).")
    var standardize = false

    @Option(name: .customLong("validation-fraction"),
            help: "Hold out this fraction of the training rows (chosen by row index and seed, the same for any rank count).")
    var validationFraction: Double = 0

    @Option(help: "How the data is split across ranks: rows (each rank a share of the rows, all features) or features (each rank every row and a share of the feature columns, with the matching weights; linear, logistic and softmax only).")
    var partition: Partition = .rows

    @Option(name: .customLong("synthetic-rows"), help: "Training rows of the synthetic task.")
    var syntheticRows: Int = 16384

    @Option(name: .customLong("synthetic-test-rows"), help: "Test rows of the synthetic task (0: no test set).")
    var syntheticTestRows: Int = 4096

    @Option(name: .customLong("synthetic-features"), help: "Features per row of the synthetic task.")
    var syntheticFeatures: Int = 784

    @Option(name: .customLong("synthetic-classes"), help: "Classes of the synthetic task.")
    var syntheticClasses: Int = 10

    func validate() throws {
        guard syntheticRows > 0 else { throw ValidationError("--synthetic-rows must be at least 1 (got \(syntheticRows))") }
        guard syntheticTestRows >= 0 else { throw ValidationError("--synthetic-test-rows must not be negative") }
        guard syntheticFeatures > 0 else { throw ValidationError("--synthetic-features must be at least 1") }
        guard syntheticClasses >= 2 else { throw ValidationError("--synthetic-classes must be at least 2") }
        guard validationFraction >= 0 && validationFraction < 1 else {
            throw ValidationError("--validation-fraction must be in [0, 1) (got \(validationFraction))")
        }
        if let f = features, f < 1 { throw ValidationError("--features must be at least 1 (got \(f))") }
        if let b = hashBits, !(1...31).contains(b) { throw ValidationError("--hash-bits must be in 1…31 (got \(b))") }
        if let m = maxMemory, (ByteCount.parse(m) ?? 0) <= 0 { throw ValidationError("--max-memory: '\(m)' is not a size (e.g. 512M, 4G)") }
        if data == nil {
            for (flag, given) in [("--labels", labels != nil), ("--test-data", testData != nil), ("--test-labels", testLabels != nil),
                                  ("--format", format != nil)] where given {
                throw ValidationError("\(flag) needs --data (without it the synthetic task is used)")
            }
        }
        for (flag, list) in [("--drop-columns", dropColumns), ("--categorical", categorical)] {
            guard let list else { continue }
            for item in list.split(separator: ",", omittingEmptySubsequences: false) where LabelColumn(argument: String(item)) == nil {
                throw ValidationError("\(flag): '\(item)' is not a column (a 0-based index, 'last' or a header name)")
            }
            if data == nil { throw ValidationError("\(flag) needs --data (a CSV file)") }
        }
        if missing != .error && data == nil { throw ValidationError("--missing needs --data (a CSV file)") }
        if testLabels != nil && testData == nil { throw ValidationError("--test-labels needs --test-data") }
        if testData != nil && (labels == nil) != (testLabels == nil) {
            throw ValidationError("give --labels and --test-labels together (or neither)")
        }
    }
}

extension Partition: ExpressibleByArgument {}
