/// Typed forms of the byte-level calls, and small collectives built from them.
extension Communicator {
    public func send<T>(_ buffer: UnsafeBufferPointer<T>, to dest: Int, tag: Int = 0) throws {
        try send(UnsafeRawBufferPointer(buffer), to: dest, tag: tag)
    }

    public func recv<T>(_ buffer: UnsafeMutableBufferPointer<T>, from source: Int, tag: Int = 0) throws {
        try recv(UnsafeMutableRawBufferPointer(buffer), from: source, tag: tag)
    }

    public func broadcast<T>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        try broadcast(UnsafeMutableRawBufferPointer(buffer), root: root)
    }

    /// Broadcasts an array from `root`; the other ranks' arrays are replaced (their lengths need not match).
    public func broadcast<T: ReducibleScalar>(_ array: inout [T], root: Int) throws {
        var count = [Int64(array.count)]
        try count.withUnsafeMutableBufferPointer { try broadcast($0, root: root) }
        if rank != root { array = [T](repeating: .zero, count: Int(count[0])) }
        try array.withUnsafeMutableBufferPointer { try broadcast($0, root: root) }
    }

    /// Broadcasts a string from `root`.
    public func broadcast(_ string: inout String, root: Int) throws {
        var bytes = Array(string.utf8).map { Int64($0) }
        try broadcast(&bytes, root: root)
        if rank != root { string = String(decoding: bytes.map { UInt8(truncatingIfNeeded: $0) }, as: UTF8.self) }
    }

    /// `nativeAllreduce` of a small array, returned.
    public func allreduced<T: ReducibleScalar>(_ values: [T], op: ReduceOp) throws -> [T] {
        var v = values
        try v.withUnsafeMutableBufferPointer { try nativeAllreduce($0, op: op) }
        return v
    }

    /// `nativeAllreduce` of one value, returned.
    public func allreduced<T: ReducibleScalar>(_ value: T, op: ReduceOp) throws -> T {
        try allreduced([value], op: op)[0]
    }

    /// Every rank contributes one value; every rank gets all of them, indexed by rank.
    public func allgathered(_ value: Int64) throws -> [Int64] {
        var slots = [Int64](repeating: 0, count: size)
        slots[rank] = value
        return try allreduced(slots, op: .sum)
    }
}
