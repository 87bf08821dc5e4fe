/// One named tensor inside a flat parameter buffer.
public struct TensorView: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    /// Offset of the first element in the flat buffer.
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset ..< offset + count }
    /// A bias: named `bias`, or ending in `.bias` (`layers.0.bias`). Weight decay spares biases.
    public var isBias: Bool { name == "bias" || name.hasSuffix(".bias") }
}

/// The layout of a model's parameters: named views packed one after another into one contiguous Float
/// buffer. Parameters, gradients and optimizer state share the layout, so allreduce, broadcast, checksum
/// and checkpoint are each one call over one buffer.
public struct ParameterLayout: Equatable, Sendable {
    public private(set) var views: [TensorView] = []
    public private(set) var count = 0

    public init(_ tensors: [(String, [Int])]) {
        for (name, shape) in tensors { append(name, shape) }
    }

    public mutating func append(_ name: String, _ shape: [Int]) {
        let view = TensorView(name: name, shape: shape, offset: count)
        views.append(view)
        count += view.count
    }

    public func view(named name: String) -> TensorView? { views.first { $0.name == name } }

    /// The ranges of every tensor that is not a bias, in layout order: what weight decay applies to.
    public var weightRanges: [Range<Int>] { views.filter { !$0.isBias }.map(\.range) }
}
