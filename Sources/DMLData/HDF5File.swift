import CHDF5
import DMLComm

/// Where a data file's rows are inside an HDF5 file (`--h5-features`, `--h5-labels`).
public struct HDF5Datasets: Sendable, Equatable {
    /// A 2-D dataset, rows × features, of floats or integers: `/train/X`.
    public var features: String
    /// A dataset of one label per row (1-D): `/train/y`. Nil: the label is a column of `features`
    /// (`ReadOptions.labelColumn`, as for a 2-D `.npy` array), or there is none (`ReadOptions.labeled` false).
    public var labels: String?

    public init(features: String, labels: String? = nil) {
        self.features = features
        self.labels = labels
    }
}

/// The flags a command names a data file and its parts with, for messages.
public struct DataFlags: Sendable {
    public var data = "--data", labels = "--labels", h5Features = "--h5-features", h5Labels = "--h5-labels"

    public init(data: String = "--data", labels: String = "--labels", h5Features: String = "--h5-features", h5Labels: String = "--h5-labels") {
        (self.data, self.labels, self.h5Features, self.h5Labels) = (data, labels, h5Features, h5Labels)
    }

    /// `--data`, `--labels`, `--h5-features`, `--h5-labels`.
    public static let training = DataFlags()
    /// `--test-data`, `--test-labels`, `--h5-test-features`, `--h5-test-labels`.
    public static let test = DataFlags(data: "--test-data", labels: "--test-labels", h5Features: "--h5-test-features",
                                       h5Labels: "--h5-test-labels")
}

extension DataSource {
    /// The first way this source's parts do not fit its format, as one message naming `flags`; nil when they
    /// fit. HDF5 data needs its features dataset named and takes no labels file (its labels are a dataset);
    /// other formats take no datasets. A format that cannot be told is left to the reader's own message.
    public func partsConflict(_ flags: DataFlags = .training) -> String? {
        let given = format ?? DataFormat.infer(fromPath: path)
        if given == .hdf5 {
            if labelsPath != nil {
                return "\(flags.labels) is a .npy file of labels for .npy features; the labels of HDF5 data are a dataset of the file: \(flags.h5Labels) /path/y"
            }
            guard let sets = hdf5 else {
                return "\(flags.data) \(path) is HDF5: name its features dataset with \(flags.h5Features) (a 2-D dataset, e.g. /train/X)"
            }
            if sets.features.isEmpty { return "\(flags.h5Features) must name a dataset (e.g. /train/X)" }
            if sets.labels?.isEmpty == true { return "\(flags.h5Labels) must name a dataset (e.g. /train/y)" }
            return nil
        }
        guard let sets = hdf5 else { return nil }
        let flag = sets.labels != nil && sets.features.isEmpty ? flags.h5Labels : flags.h5Features
        return "\(flag) applies to HDF5 data (.h5, .hdf5 or --format hdf5), not to \(flags.data) \(path)\(given.map { " (\($0.rawValue))" } ?? "")"
    }

    /// Whether the labels are apart from the features: a `.npy` labels file or an HDF5 labels dataset.
    var hasSeparateLabels: Bool { labelsPath != nil || hdf5?.labels != nil }

    /// Where row `row`'s label is, for a message about it: `/train/y[5]` (HDF5), `y.npy[5]`, or `label of row 5`
    /// (a label column).
    func labelLocation(row: Int) -> String {
        if let set = hdf5?.labels { return "\(set)[\(row)]" }
        if let file = labelsPath { return "\(file)[\(row)]" }
        return "label of row \(row)"
    }
}

/// An HDF5 file opened read-only through the serial C library (`CHDF5`). Each rank opens the file itself and
/// reads only the hyperslab of its rows: no MPI-IO and no collective open, so the serial library serves any
/// number of ranks (docs/ARCHITECTURE.md has the trade-off against parallel HDF5).
///
/// The library's own error printing is switched off (per thread: Debian's build is thread-safe, with one lock
/// around every call, which also makes ranks run as threads in the tests safe); its innermost message is
/// folded into ours. File locking is kept but not required (`H5Pset_file_locking(…, ignore_when_disabled)`),
/// so files on file systems without `flock` (some NFS and Lustre mounts) open too.
final class HDF5File {
    let path: String
    let id: hid_t

    /// Opens `path`: missing, unreadable and directory paths are the `.noInput` errors every format gives;
    /// a file that is not HDF5 is `.dataFormat`.
    init(_ path: String) throws {
        chdf5_silence()
        let input = try InputFile(path)
        if input.size == 0 { throw DataError(file: path, "the file is empty") }
        let access = H5Pcreate(chdf5_p_file_access())
        defer { H5Pclose(access) }
        _ = H5Pset_file_locking(access, true, true)
        let id = H5Fopen(path, chdf5_acc_rdonly(), access)
        guard id >= 0 else {
            let reason = HDF5File.lastError()
            throw DataError(file: path, reason.contains("signature") ? "not an HDF5 file (\(reason))" : "cannot be opened as HDF5: \(reason)")
        }
        self.path = path
        self.id = id
    }

    deinit { H5Fclose(id) }

    /// The library's innermost message on this thread's error stack, e.g. "file signature not found".
    static func lastError() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        chdf5_last_error(&buffer)
        let s = text(buffer)
        return s.isEmpty ? "the HDF5 library gave no reason" : s
    }

    /// A C string written into `buffer`.
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The file's datasets, "/a, /g/b" (cut short past 1 KB), for messages.
    var datasetList: String {
        var buffer = [CChar](repeating: 0, count: 1024)
        let n = chdf5_list_datasets(id, &buffer, buffer.count)
        return n == 0 ? "" : HDF5File.text(buffer)
    }
}

/// One dataset of an open `HDF5File`: a 1-D or 2-D array of integers or floats (any width, either byte
/// order), contiguous, compact or chunked, with any filter the library has (gzip/deflate, shuffle,
/// Fletcher32). Rows are read as hyperslabs, converted by the library to Double (4-byte floats to Float,
/// widened here, so the library copies them without conversion).
final class HDF5Dataset: RowArray {
    let file: HDF5File
    let name: String
    let id: hid_t
    let rows: Int
    let columns: Int
    let twoDimensional: Bool
    /// Rows per chunk of a chunked dataset: reads are aligned to whole chunks, so no chunk is decompressed
    /// twice by one rank. Nil: contiguous or compact.
    let chunkRows: Int?
    /// 4-byte floats: read as Float (a plain copy); everything else as Double.
    let readsFloat: Bool
    /// Bytes per value in the file (uncompressed).
    let elementSize: Int

    var path: String { file.path }
    var dataset: String? { name }
    var labelsHint: String { "--h5-labels /path/y" }
    var formatName: String { "HDF5 datasets" }

    /// Opens dataset `name` (a path from the file's root, e.g. `/train/X`). A missing one is an error listing
    /// the datasets the file has; a group, a scalar, an array of more than two dimensions and a type other
    /// than integers or floats (strings, compound records, enums (h5py's booleans), …) are errors naming it.
    init(_ file: HDF5File, _ name: String) throws {
        chdf5_silence()
        func fail(_ message: String) -> DataError { DataError(file: file.path, location: name, message) }
        let id = name.isEmpty ? -1 : H5Dopen2(file.id, name, chdf5_p_default())
        guard id >= 0 else {
            if !name.isEmpty, H5Oexists_by_name(file.id, name, chdf5_p_default()) > 0 {
                throw fail("not a dataset (a group, or another kind of object)")
            }
            let list = file.datasetList
            throw fail("no such dataset in the file (\(list.isEmpty ? "it holds no datasets" : "its datasets: \(list)"))")
        }
        do {
            let space = H5Dget_space(id)
            defer { H5Sclose(space) }
            let ndims = Int(H5Sget_simple_extent_ndims(space))
            var dims = [hsize_t](repeating: 0, count: Swift.max(ndims, 1))
            if ndims > 0 { H5Sget_simple_extent_dims(space, &dims, nil) }
            guard ndims == 1 || ndims == 2 else {
                throw fail(ndims <= 0 ? "a scalar (no rows): the dataset must be 1-D or 2-D"
                           : "shape (\(dims.map(String.init).joined(separator: ", "))) is not supported: the dataset must be 1-D or 2-D")
            }
            let type = H5Dget_type(id)
            defer { H5Tclose(type) }
            elementSize = H5Tget_size(type)
            switch H5Tget_class(type) {
            case H5T_FLOAT: readsFloat = H5Tget_size(type) == 4
            case H5T_INTEGER: readsFloat = false
            case let c: throw fail("\(Self.describe(c)) values are not supported: the dataset must hold numbers (float32, float64 or integers)")
            }
            let create = H5Dget_create_plist(id)
            defer { H5Pclose(create) }
            var chunk = [hsize_t](repeating: 0, count: ndims)
            if H5Pget_layout(create) == H5D_CHUNKED, H5Pget_chunk(create, Int32(ndims), &chunk) == ndims, chunk[0] > 0 {
                chunkRows = Int(chunk[0])
            } else {
                chunkRows = nil
            }
            rows = Int(dims[0])
            columns = ndims == 2 ? Int(dims[1]) : 1
            twoDimensional = ndims == 2
        } catch {
            H5Dclose(id)
            throw error
        }
        self.file = file
        self.name = name
        self.id = id
    }

    deinit { H5Dclose(id) }

    static func describe(_ c: H5T_class_t) -> String {
        switch c {
        case H5T_STRING: return "string"
        case H5T_COMPOUND: return "compound (record)"
        case H5T_ENUM: return "enum (h5py stores booleans as one)"
        case H5T_ARRAY: return "array-typed"
        case H5T_VLEN: return "variable-length"
        case H5T_BITFIELD: return "bitfield"
        case H5T_OPAQUE: return "opaque"
        case H5T_REFERENCE: return "reference"
        case H5T_TIME: return "time"
        default: return "non-numeric"
        }
    }

    /// Reads rows `range` as hyperslabs of about 4 MiB (whole chunks when chunked: piece boundaries are
    /// multiples of the chunk's rows) and calls `body(localRow, values)` per row.
    ///
    /// Cost: the rows' bytes read once (plus, when chunked, the parts of the two boundary chunks outside the
    /// range, which a neighbouring rank reads too); one piece buffer.
    func forEachRow(_ range: Range<Int>, _ body: (Int, UnsafeBufferPointer<Double>) throws -> Void) throws {
        guard !range.isEmpty else { return }
        chdf5_silence()
        let rowBytes = Swift.max(columns, 1) * 8
        var pieceRows = Swift.max(1, (4 << 20) / rowBytes)
        if let c = chunkRows, c * rowBytes <= 64 << 20 { pieceRows = (pieceRows + c - 1) / c * c }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: pieceRows * rowBytes, alignment: 64)
        defer { buffer.deallocate() }
        let doubles = buffer.assumingMemoryBound(to: Double.self)
        var widened = [Double](repeating: 0, count: columns)
        let fileSpace = H5Dget_space(id)
        defer { H5Sclose(fileSpace) }
        let memoryType = readsFloat ? chdf5_native_float() : chdf5_native_double()
        var r = range.lowerBound
        while r < range.upperBound {
            let end = Swift.min(range.upperBound, (r / pieceRows + 1) * pieceRows)
            let start: [hsize_t] = twoDimensional ? [hsize_t(r), 0] : [hsize_t(r)]
            let size: [hsize_t] = twoDimensional ? [hsize_t(end - r), hsize_t(columns)] : [hsize_t(end - r)]
            let memorySpace = H5Screate_simple(Int32(size.count), size, nil)
            var status = H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, start, nil, size, nil)
            if status >= 0 { status = H5Dread(id, memoryType, memorySpace, fileSpace, chdf5_p_default(), buffer) }
            H5Sclose(memorySpace)
            guard status >= 0 else {
                throw DataError(file: path, location: name, "reading rows \(r) ..< \(end) failed: \(HDF5File.lastError())")
            }
            if readsFloat {
                let floats = buffer.assumingMemoryBound(to: Float.self)
                for i in 0..<(end - r) {
                    for c in 0..<columns { widened[c] = Double(floats[i * columns + c]) }
                    try widened.withUnsafeBufferPointer { try body(r + i - range.lowerBound, $0) }
                }
            } else {
                for i in 0..<(end - r) {
                    try body(r + i - range.lowerBound, UnsafeBufferPointer(start: doubles + i * columns, count: columns))
                }
            }
            r = end
        }
    }
}

extension DataLoader {
    /// This rank's rows of an HDF5 source (`readArrays`): the features dataset and the labels dataset of
    /// `source.hdf5`, each rank its hyperslab of rows.
    static func readHDF5(_ source: DataSource, options: ReadOptions, classification: Bool,
                         comm: Communicator, sink: DenseRowSink? = nil) throws -> (RawShard, rows: Int, firstRow: Int) {
        guard let sets = source.hdf5 else {
            throw DataError(file: source.path, "an HDF5 file: name its features dataset (--h5-features /path/X)", kind: .usage)
        }
        let started = ReadStatistics.now()
        let file = try HDF5File(source.path)
        let x = try HDF5Dataset(file, sets.features)
        let labels = try sets.labels.map { try HDF5Dataset(file, $0) }
        if labels != nil && !x.twoDimensional {
            throw x.failure("a 1-D dataset: the features must be 2-D (rows × features)")
        }
        let read = try readArrays(x: x, labels: labels, options: options, classification: classification, comm: comm, sink: sink)
        // DML_DATA_STATS=1: the bytes are the rows' values as the datasets store them, uncompressed.
        let bytes = read.0.rows * (x.columns * x.elementSize + (labels?.elementSize ?? 0))
        ReadStatistics.report(file: source.path, rank: comm.rank, bytes: bytes, rows: read.0.rows, spent: ReadStatistics.since(started))
        return read
    }

    /// The columns of an HDF5 source's features dataset; nil for a 1-D one. Not collective.
    static func hdf5Columns(_ source: DataSource) throws -> Int? {
        guard let sets = source.hdf5 else { return nil }
        let x = try HDF5Dataset(try HDF5File(source.path), sets.features)
        return x.twoDimensional ? x.columns : nil
    }
}
