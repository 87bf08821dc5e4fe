import Foundation
import DMLComm
import DMLData
import DMLModels
import DMLStatus

/// A trained model as a file that describes itself (`--output`, `NAME.best.safetensors`; read by `dml-predict`,
/// `--init`, and any safetensors reader): one tensor per named parameter (`layers.0.weight` [outputs ×
/// inputs], `layers.0.bias`, … `layers.L.bias`) and metadata holding everything prediction needs.
///
/// Metadata (strings; lists as JSON arrays): `format` = `dml-model`, `format_version`, `dml_version`,
/// `model` (linear, logistic, softmax, mlp), `activation` and `hidden` (MLP), `features`, `outputs`, `classes`
/// (0 for regression), `task`, `labels` (the training file's class values, class i first), `feature_names`
/// (from a CSV header), `standardize_mean`/`standardize_std` (predict with `(x − mean) / std`), CSV treatment
/// (`missing`, `missing_fill`, `drop_columns`, `categorical`, `categories`, `categorical_encoding`,
/// `input_columns`: see the properties), the training
/// data's identity (`data_checksum`, `data_rows`, `data`), and how it was trained (`step`, `seed`, `ranks`,
/// `partition`). Sealed (`Safetensors.sealed`): a damaged file is refused.
///
/// Files of DML before format 1 (format `dml`: tensors `weight`/`bias` or `fcN.…`, no seal) still load for the
/// linear models; an MLP of that format is refused, since it does not record its activation.
public struct ModelFile: Equatable {
    public static let format = "dml-model", formatVersion = 1

    public var kind: ModelKind
    public var features: Int
    /// Scores per row: the number of classes for softmax and MLP, 1 for linear and logistic.
    public var outputs: Int
    /// Classes (2 for logistic); 0 for a regression target.
    public var classes: Int
    public var hidden: [Int] = []
    public var activation: MLP.ActivationKind = .relu
    /// The class values as the training file wrote them, class i first; nil when classes are 0…k−1.
    public var labels: [String]?
    public var featureNames: [String]?
    public var standardization: Standardization?
    /// The feature-hashing map the model was trained with (`feature_hash`, e.g. `xxh3-64 seed=0x444d4c5f48415348
    /// bits=18`): `dml-predict` hashes LIBSVM indices with it. Nil: indices are columns.
    public var featureHash: FeatureHash?
    /// CSV input's missing values (`missing`: `zero` or `mean`; nil: refused) and, for `mean`, the fill value of
    /// each feature (`missing_fill`, the training rows' means): `dml-predict` fills its input's missing values alike.
    public var missing: MissingPolicy?
    public var missingFill: [Float]?
    /// CSV columns the training run left out (`drop_columns`, as given: indices or header names); a prediction
    /// input of the same layout leaves them out too.
    public var dropColumns: [String]?
    /// CSV `--categorical` columns (`categorical`, as given) and each one's categories (`categories`, a JSON array
    /// of arrays, in file order): feature block j of such a column is 1 for category j. `dml-predict` encodes its
    /// input alike (an unseen value: all zero, or an error with `--categorical-unseen error`).
    public var categorical: [String]?
    public var categories: [[String]]?
    /// `categorical_encoding`: `hash` when the categorical columns were hashed into `feature_hash`'s columns (then
    /// there is no `categories` list); one-hot otherwise.
    public var categoricalEncoding: CategoricalEncoding = .onehot
    /// CSV input: the file's feature columns before encoding (`input_columns`), which a prediction input must have.
    public var inputColumns: Int?
    /// The parameters, laid out by the model's `layout`.
    public var parameters: [Float]
    /// Where it came from: `data_checksum`, `data_rows`, `data`, `step`, `seed`, `ranks`, `partition`, ….
    public var provenance: [String: String] = [:]

    public init(kind: ModelKind, features: Int, outputs: Int, classes: Int, parameters: [Float]) {
        self.kind = kind
        self.features = features
        self.outputs = outputs
        self.classes = classes
        self.parameters = parameters
    }

    /// The file of `model` trained on data described by `loaded`.
    public init(model: Model, parameters: [Float], hidden: [Int], activation: MLP.ActivationKind, labels: LabelMapping?,
                standardization: Standardization?, featureNames: [String]?, provenance: [String: String]) {
        kind = ModelKind(rawValue: model.kind)!
        features = model.inputs
        outputs = model.outputs
        classes = model.isClassifier ? Swift.max(2, model.outputs) : 0
        self.hidden = kind == .mlp ? hidden : []
        self.activation = activation
        self.labels = labels?.names
        self.featureNames = featureNames
        self.standardization = standardization
        self.parameters = parameters
        self.provenance = provenance
    }

    public var task: LearningTask { classes == 0 ? .regression : .classification }

    /// A model of this kind and shape (its `layout` names the tensors).
    public func makeModel() -> Model {
        switch kind {
        case .linear: return LinearRegression(features: features)
        case .logistic: return LogisticRegression(features: features)
        case .softmax: return SoftmaxRegression(features: features, classes: outputs)
        case .mlp: return MLP(features: features, hidden: hidden, classes: outputs, activation: activation)
        }
    }

    public func encode() throws -> [UInt8] {
        let model = makeModel()
        precondition(parameters.count == model.layout.count, "the parameters must fill the model's layout")
        let tensors = parameters.withUnsafeBufferPointer { w in
            model.layout.views.map { Safetensors.Tensor(name: $0.name, shape: $0.shape, floats: UnsafeBufferPointer(rebasing: w[$0.range])) }
        }
        var m = provenance
        m["format"] = Self.format
        m["format_version"] = String(Self.formatVersion)
        m["dml_version"] = DMLVersion.string
        m["model"] = kind.rawValue
        m["features"] = String(features)
        m["outputs"] = String(outputs)
        m["classes"] = String(classes)
        m["task"] = task.rawValue
        if kind == .mlp {
            m["hidden"] = Self.json(hidden.map(String.init), quoted: false)
            m["activation"] = activation.rawValue
        }
        if let labels { m["labels"] = Self.json(labels, quoted: true) }
        if let featureHash { m["feature_hash"] = featureHash.description }
        if let missing { m["missing"] = missing.rawValue }
        if let missingFill { m["missing_fill"] = Self.json(missingFill.map { "\($0)" }, quoted: false) }
        if let dropColumns { m["drop_columns"] = Self.json(dropColumns, quoted: true) }
        if let categorical { m["categorical"] = Self.json(categorical, quoted: true) }
        if let categories {
            m["categories"] = String(decoding: (try? JSONSerialization.data(withJSONObject: categories, options: [.withoutEscapingSlashes])) ?? Data("[]".utf8), as: UTF8.self)
        }
        if categorical != nil { m["categorical_encoding"] = categoricalEncoding.rawValue }
        if let inputColumns { m["input_columns"] = String(inputColumns) }
        if let featureNames { m["feature_names"] = Self.json(featureNames, quoted: true) }
        if let s = standardization {
            m["standardize_mean"] = Self.json(s.mean.map { "\($0)" }, quoted: false)
            m["standardize_std"] = Self.json(s.std.map { "\($0)" }, quoted: false)
        }
        return try Safetensors.sealed(tensors, metadata: m)
    }

    /// Reads `path` (`.dataFormat` for a file that is damaged, truncated, not a model or of a newer format;
    /// `.noInput` when it cannot be read).
    public static func read(path: String) throws -> ModelFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
            throw DataError(file: path, exists ? (isDirectory.boolValue ? "is a directory, not a model file" : "cannot be read") : "no such model file",
                            kind: .noInput)
        }
        do { return try decode([UInt8](data)) } catch let e as Safetensors.FormatError {
            throw DataError(file: path, "is not a usable DML model: \(e.reason)", kind: .dataFormat)
        }
    }

    public static func decode(_ bytes: [UInt8]) throws -> ModelFile {
        let file = try Safetensors.decode(bytes)
        let m = file.metadata
        if m["format"] == "dml" { return try legacy(file) }
        guard m["format"] == format else {
            throw Safetensors.FormatError(reason: m["format"] == Checkpoint.format ? "it is a checkpoint, not a model (use --resume, or the run's --output)"
                                                                                  : "it is not a DML model file (no 'format: dml-model' in its metadata)")
        }
        guard let v = m["format_version"].flatMap({ Int($0) }), v <= formatVersion else {
            throw Safetensors.FormatError(reason: "it is of model format \(m["format_version"] ?? "?"), written by a newer DML (\(m["dml_version"] ?? "?")); "
                                          + "this DML (\(DMLVersion.string)) reads format \(formatVersion)")
        }
        try Safetensors.verifySeal(file)
        guard let kind = m["model"].flatMap(ModelKind.init(rawValue:)), let features = m["features"].flatMap({ Int($0) }), features > 0,
              let outputs = m["outputs"].flatMap({ Int($0) }), outputs > 0, let classes = m["classes"].flatMap({ Int($0) }) else {
            throw Safetensors.FormatError(reason: "its metadata lacks the model's kind or shape")
        }
        var f = ModelFile(kind: kind, features: features, outputs: outputs, classes: classes, parameters: [])
        if kind == .mlp {
            guard let h = m["hidden"].flatMap({ Self.array($0)?.compactMap { Int($0) } }), !h.isEmpty,
                  let a = m["activation"].flatMap(MLP.ActivationKind.init(rawValue:)) else {
                throw Safetensors.FormatError(reason: "an MLP without its hidden widths or activation")
            }
            f.hidden = h
            f.activation = a
        }
        f.labels = m["labels"].flatMap(Self.array)
        if let h = m["feature_hash"] {
            guard let map = FeatureHash(description: h), map.buckets == features else {
                throw Safetensors.FormatError(reason: "its feature_hash '\(h)' is not a map this DML knows (xxh3-64 seed=0x… bits=B with 2^B features)")
            }
            f.featureHash = map
        }
        f.featureNames = m["feature_names"].flatMap(Self.array)
        if let text = m["missing"] {
            guard let policy = MissingPolicy(rawValue: text) else { throw Safetensors.FormatError(reason: "its missing '\(text)' is not zero, mean or error") }
            f.missing = policy
        }
        if let text = m["missing_fill"] {
            guard let fill = Self.array(text)?.compactMap(Float.init), fill.count == features else {
                throw Safetensors.FormatError(reason: "its missing_fill is not \(features) numbers")
            }
            f.missingFill = fill
        }
        f.dropColumns = m["drop_columns"].flatMap(Self.array)
        f.inputColumns = m["input_columns"].flatMap { Int($0) }
        if let columns = m["categorical"] {
            guard let c = Self.array(columns), let encoding = m["categorical_encoding"].flatMap(CategoricalEncoding.init(rawValue:)) else {
                throw Safetensors.FormatError(reason: "its categorical columns come without their encoding")
            }
            f.categorical = c
            f.categoricalEncoding = encoding
            if encoding == .onehot {
                guard let text = m["categories"], let cats = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String]], cats.count == c.count else {
                    throw Safetensors.FormatError(reason: "its one-hot categorical columns come without their categories")
                }
                f.categories = cats
            } else if f.featureHash == nil {
                throw Safetensors.FormatError(reason: "its categorical columns are hashed, but it has no feature_hash")
            }
        }
        if let mean = m["standardize_mean"].flatMap(Self.array)?.compactMap(Float.init),
           let std = m["standardize_std"].flatMap(Self.array)?.compactMap(Float.init), mean.count == features, std.count == features {
            f.standardization = Standardization(mean: mean, std: std)
        }
        let known: Set<String> = ["format", "format_version", "dml_version", "model", "features", "outputs", "classes", "task", "hidden",
                                  "activation", "labels", "feature_names", "standardize_mean", "standardize_std", "checksum", "checksum_algorithm",
                                  "feature_hash", "missing", "missing_fill", "drop_columns", "categorical", "categories", "categorical_encoding", "input_columns"]
        f.provenance = m.filter { !known.contains($0.key) }
        f.parameters = try f.readTensors(file, names: { $0 })
        return f
    }

    /// The parameters from `file`'s tensors, in the model's layout order (`names` maps a layout name to the
    /// file's), checking every shape.
    private func readTensors(_ file: Safetensors.File, names: (String) -> String) throws -> [Float] {
        var out: [Float] = []
        for v in makeModel().layout.views {
            let name = names(v.name)
            guard let e = file.entries[name] else { throw Safetensors.FormatError(reason: "no tensor '\(name)'") }
            guard e.shape == v.shape else {
                throw Safetensors.FormatError(reason: "tensor '\(name)' has shape \(e.shape); this model needs \(v.shape)")
            }
            out += try file.floats(name)
        }
        return out
    }

    /// Format `dml` (before format 1): tensors `weight`, `bias`; metadata `model`, `features`, `classes`.
    private static func legacy(_ file: Safetensors.File) throws -> ModelFile {
        let m = file.metadata
        guard let kind = m["model"].flatMap(ModelKind.init(rawValue:)), let features = m["features"].flatMap({ Int($0) }),
              let outputs = m["classes"].flatMap({ Int($0) }) else {
            throw Safetensors.FormatError(reason: "an old DML model file without its kind or shape")
        }
        guard kind != .mlp else {
            throw Safetensors.FormatError(reason: "an MLP written by DML before model format 1 does not record its activation; "
                                          + "train it again with this DML")
        }
        let regression = kind == .linear
        var f = ModelFile(kind: kind, features: features, outputs: outputs, classes: regression ? 0 : Swift.max(2, outputs), parameters: [])
        f.labels = m["labels"].flatMap(Self.array)
        f.provenance = m.filter { ["step", "seed", "ranks", "partition"].contains($0.key) }
        f.parameters = try f.readTensors(file) { $0.replacingOccurrences(of: "layers.0.", with: "") }
        return f
    }

    /// Checks that this model fits data with `features` features (and, for a classifier, the classes the
    /// data has): `JobError(.usage)` naming both.
    public func check(features given: Int, flag: String) throws {
        guard given == features else {
            throw JobError(.usage, "\(flag): the model takes \(features) features, the data has \(given)")
        }
    }

    /// A JSON array of strings (`quoted`) or numbers.
    static func json(_ items: [String], quoted: Bool) -> String {
        guard quoted else { return "[" + items.joined(separator: ",") + "]" }
        let data = (try? JSONSerialization.data(withJSONObject: items, options: [.withoutEscapingSlashes])) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// The items of a JSON array as strings (numbers as written).
    static func array(_ text: String) -> [String]? {
        guard let items = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [Any] else { return nil }
        return items.map { item in
            if let s = item as? String { return s }
            if let n = item as? NSNumber { return n.stringValue }
            return "\(item)"
        }
    }

    /// Writes the file atomically (rank 0's job).
    public func write(to path: String) throws {
        try AtomicFile.write(encode(), to: path)
    }
}
