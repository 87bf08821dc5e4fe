import DMLStatus

/// A problem with an input file, found on one rank. Its description is the one line the user reads:
/// the file, and where known the (global, 1-based) line and column, then what is wrong.
public struct DataError: ClassifiedError, CustomStringConvertible, Equatable {
    public let file: String
    /// 1-based line of a text file (global: counted from the file's start whatever rank found it).
    public var line: Int?
    /// 1-based field on the line (CSV: the column; LIBSVM: the token).
    public var column: Int?
    /// Where, for files that have no lines (`.npy`): e.g. `X[16, 2]`.
    public var location: String?
    public let message: String
    /// `.dataFormat` (the file is there but its content is wrong: the default), `.noInput` (it does not
    /// exist, is a directory or cannot be opened) or `.ioError` (reading it failed part-way).
    public let failureKind: FailureKind

    public init(file: String, line: Int? = nil, column: Int? = nil, location: String? = nil, _ message: String,
                kind: FailureKind = .dataFormat) {
        self.failureKind = kind
        self.file = file
        self.line = line
        self.column = column
        self.location = location
        self.message = message
    }

    public var description: String {
        var s = file
        if let l = line { s += ", line \(l)" }
        if let c = column { s += ", column \(c)" }
        if let w = location { s += ", \(w)" }
        return s + ": " + message
    }
}

/// A problem found while parsing one line of a rank's byte range, before the rank knows the global number
/// of that line (it learns it from the other ranks' line counts).
struct LocalLineError: Error {
    /// 0-based index of the line among the lines this rank read.
    let localLine: Int
    let column: Int?
    let message: String
}
