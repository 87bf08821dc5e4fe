import ArgumentParser
import DMLData

// The data readers' options as command-line values, for every command that reads data files (dml-train,
// dml-predict): one spelling of each value everywhere.

extension DataFormat: ExpressibleByArgument {}
extension LearningTask: ExpressibleByArgument {}
extension Delimiter: ExpressibleByArgument {}
extension LabelColumn: ExpressibleByArgument {
    public var defaultValueDescription: String {
        switch self {
        case let .index(i): return String(i)
        case .last: return "last"
        case let .name(n): return n
        }
    }
}
