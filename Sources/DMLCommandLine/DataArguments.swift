import ArgumentParser
import DMLData

// The data readers' options as command-line values, for every command that reads data files (dml-train,
// dml-predict): one spelling of each value everywhere.

extension DataFormat: ExpressibleByArgument {}
extension LearningTask: ExpressibleByArgument {}
extension Delimiter: ExpressibleByArgument {}
extension SparseMode: ExpressibleByArgument {}
extension MissingPolicy: ExpressibleByArgument {}
extension UnseenCategory: ExpressibleByArgument {}
extension CategoricalEncoding: ExpressibleByArgument {}
extension LabelColumn: ExpressibleByArgument {
    public var defaultValueDescription: String {
        switch self {
        case let .index(i): return String(i)
        case .last: return "last"
        case let .name(n): return n
        }
    }
}

/// How CSV lines are split, for every command that reads CSV files (`--header`/`--no-header`, `--delimiter`).
public struct CSVOptions: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "Whether line 1 of a CSV file is a header (default: detected — a header when none of its fields is a number).")
    public var header: Bool?

    @Option(help: ArgumentHelp("CSV field separator: auto, comma, semicolon, tab or whitespace.",
                               discussion: "auto: from the first line (outside quotes): semicolon when it has one, else comma, else tab, else whitespace."))
    public var delimiter: Delimiter = .auto

    public init() {}
}
