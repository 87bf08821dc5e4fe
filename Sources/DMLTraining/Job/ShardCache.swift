#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLComm
import DMLData
import DMLKernels
import DMLStatus

/// One rank's parsed shard in a binary file (`--cache-dir`), as VW's `--cache`: written once from the parsed
/// rows, then read by every epoch (`ShardStream`) and by later runs on the same file, which skip parsing.
///
/// File layout (little-endian); the rows come first so that a chunked parse can write them as it goes:
/// ```
/// "DMLSHARD"  UInt32 version  UInt32 0
/// rows:   dense: rows × features Float32, row-major | CSR: (rows + 1) × Int64 row starts,
///                                                   |      nnz × Int32 column indices, nnz × Float32 values
/// labels: rows × Float32 (class index or target)
/// header: UTF-8 "key=value" lines
/// UInt64 header offset  UInt64 header bytes  UInt64 checksum: XXH3-64 of every byte before it, chained
/// over 1 MiB blocks (`Checksum.hash(b, seed: h)`)
/// ```
/// The header names the source (`Key`: absolute path, size, modification and status-change times in ns, inode,
/// a digest of sampled blocks), the parse options that change the rows (`ReadOptions`, as text), the rank and
/// rank count, the shard's shape and class labels, and what else the read learnt (`ShardFacts`, JSON: the
/// model file's `input_columns`, the `--missing mean` fill, the categories, the feature names). A cache is used
/// only when all of them match this run and the checksum and the length agree; otherwise it is rebuilt (with
/// one warning when it was there but stale or damaged).
///
/// Concurrency: a writer writes `.NAME.tmp-<host>-<pid>` beside the cache, fsyncs it and renames it over
/// the cache (`AtomicFile`), so a reader sees the old complete file or the new complete one, two jobs
/// writing the same cache each rename a complete file (the last one stays; both are valid), a killed
/// writer leaves only its temporary (removed by the next writer on the host), and a full disk fails the
/// write with one message before anything is renamed. A reader that has the file open keeps reading the
/// file it opened, whatever is renamed over it.
/// Cost: writing, one pass over the shard; opening, one read pass of the file to verify the checksum.
public enum ShardCache {
    public static let version = 2
    static let magic = Array("DMLSHARD".utf8)
    static let block = 1 << 20

    /// What a cache file must match: the source file as it is now, the options and the rank.
    ///
    /// The file is known by its size, its modification time (which `touch -r` or a copy keeping times can set
    /// back), its inode and its status-change time (`ctime`: set by the kernel on every write, truncation, rename
    /// or `touch`, and by no call a user can make, so a rewrite that restores the size and the modification time
    /// still changes it), and an XXH3 digest of `sampleBlocks` blocks of 4 KiB spread evenly over the file (the
    /// first and the last included). Cost: one `stat`, one `open` and `sampleBlocks` `pread`s of 4 KiB.
    /// What it cannot see: a change that keeps the inode, the size, both times and the sampled blocks, which
    /// needs the system clock set back (or the disk written under the file system), or a file system that keeps
    /// no `ctime`; a `chmod`, `chown` or hard link changes `ctime` too, so it makes the cache be rebuilt
    /// (harmless). Checking every byte would cost a read of the file, which is what the cache saves.
    public struct Key: Equatable, Sendable {
        public var source: String
        public var size: Int
        public var modified: Int
        public var changed: Int
        public var inode: UInt64
        public var sampled: UInt64
        public var options: String
        public var rank: Int
        public var ranks: Int
        /// The same facts of the other files the rows are read from (the `--labels` file): a rewritten labels
        /// file makes the cache stale as a rewritten data file does. Compared, not part of the cache's name.
        public var companions = ""

        /// Blocks of the source hashed into the key.
        public static let sampleBlocks = 16

        /// The key of `path` read with `options` by `rank` of `ranks`; nil when the file cannot be examined
        /// (the reader then reports it).
        public init?(path: String, options: String, rank: Int, ranks: Int) {
            var st = stat()
            let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
            let fd = Glibc.open(absolute, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            guard fstat(fd, &st) == 0 else { return nil }
            source = absolute
            size = Int(st.st_size)
            modified = Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec)
            changed = Int(st.st_ctim.tv_sec) * 1_000_000_000 + Int(st.st_ctim.tv_nsec)
            inode = UInt64(st.st_ino)
            var h: UInt64 = 0
            var block = [UInt8](repeating: 0, count: 4096)
            let n = Key.sampleBlocks
            for i in 0..<n {
                let at = size <= block.count ? 0 : (size - block.count) * i / (n - 1)
                let got = block.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(at)) }
                guard got >= 0 else { return nil }
                h = block.withUnsafeBytes { Checksum.hash(UnsafeRawBufferPointer(rebasing: $0[0..<got]), seed: h) }
                if size <= block.count { break }
            }
            sampled = h
            self.options = options
            self.rank = rank
            self.ranks = ranks
        }

        var fields: [(String, String)] {
            [("version", String(ShardCache.version)), ("source", source), ("size", String(size)), ("modified_ns", String(modified)),
             ("changed_ns", String(changed)), ("inode", String(inode)), ("sampled", Checksum.hex(sampled)),
             ("options", options), ("rank", String(rank)), ("ranks", String(ranks)), ("companions", companions)]
        }

        /// What identifies a file's version in a key (path, size, times, inode, sampled blocks), as one line
        /// for `companions`; "PATH unreadable" when it cannot be examined (its reader reports why).
        public static func version(of path: String) -> String {
            guard let k = Key(path: path, options: "", rank: 0, ranks: 1) else { return "\(path) unreadable" }
            return k.fields.filter { !["version", "options", "rank", "ranks", "companions"].contains($0.0) }.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
        }
    }

    /// The cache file of `key` in `directory`: named by the source's base name and a digest of its path,
    /// the options and the rank count (not the size or time, so a changed file's cache is found and replaced).
    public static func path(directory: String, key: Key) -> String {
        let digest = Checksum.hex(Checksum.hash("\(key.source)\n\(key.options)\n\(key.ranks)"))
        let base = URL(fileURLWithPath: key.source).lastPathComponent
        return "\(directory)/\(base).\(digest).rank\(key.rank)of\(key.ranks).dmlshard"
    }

    /// The names written, renamed or deleted in a cache directory: caches and their temporaries.
    public static func owns(_ name: String) -> Bool { name.hasSuffix(".dmlshard") || name.contains(".dmlshard.tmp-") }

    /// What `open` found.
    public enum Lookup {
        /// The cache matches: the shard streamed from it, with its labels and what else the read learnt.
        case hit(Dataset, LabelMapping?, ShardFacts)
        /// No cache file.
        case absent
        /// A cache file that cannot be used: `reason` says why (from another file, another version of it,
        /// other settings, damaged).
        case stale(String)
    }

    /// Opens the cache at `path` if it matches `key`, verifying its length and checksum. Not collective.
    public static func open(_ path: String, key: Key) -> Lookup {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .absent }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .stale("cannot be examined") }
        let size = Int(st.st_size)
        func read(_ count: Int, at offset: Int) -> [UInt8]? {
            guard count >= 0, offset + count <= size else { return nil }
            var b = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let n = b.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return nil }
                done += n
            }
            return b
        }
        guard let start = read(16, at: 0), Array(start[0..<8]) == magic else { return .stale("is not a DML shard cache (damaged)") }
        let version = Int(start[8..<12].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        guard version == ShardCache.version else { return .stale("was written by cache format version \(version), not \(ShardCache.version)") }
        guard size >= 16 + 24, let trailer = read(16, at: size - 24) else { return .stale("is damaged (cut short)") }
        let headerAt = Int(clamping: UInt64(littleEndian: trailer.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        let headerBytes = Int(clamping: UInt64(littleEndian: trailer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) }))
        guard headerAt >= 16, headerBytes >= 0, headerAt <= size - 24, headerBytes == size - 24 - headerAt,
              let headerData = read(headerBytes, at: headerAt), let text = String(bytes: headerData, encoding: .utf8)
        else { return .stale("is damaged (its header cannot be found)") }
        var header: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { return .stale("is damaged (its header is unreadable)") }
            header[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        for (name, value) in key.fields where header[name] != value {
            switch name {
            case "source": return .stale("was made from another file (\(header[name] ?? "?"))")
            case "size", "modified_ns", "changed_ns", "inode", "sampled":
                return .stale("was made from another version of \(key.source) (its \(name == "size" ? "size" : name == "inode" ? "inode" : name == "sampled" ? "content" : "modification or status-change time") differs)")
            case "companions": return .stale("was made with another version of the labels file \((value.split(separator: " ").first ?? "").dropFirst("source=".count))")
            default: return .stale("was made with other settings (\(name) differs)")
            }
        }
        guard let rows = header["rows"].flatMap(Int.init), let features = header["features"].flatMap(Int.init),
              let classes = header["classes"].flatMap(Int.init), let globalRows = header["global_rows"].flatMap(Int.init),
              let firstRow = header["first_row"].flatMap(Int.init), let nonZeros = header["non_zeros"].flatMap(Int.init),
              let storage = header["storage"], storage == "dense" || storage == "csr", rows >= 0, features > 0, nonZeros >= 0
        else { return .stale("is damaged (its header lacks the shard's shape)") }
        guard let factsText = header["facts"], let facts = try? JSONDecoder().decode(ShardFacts.self, from: Data(factsText.utf8))
        else { return .stale("is damaged (its header lacks what the read learnt)") }
        let labels: LabelMapping? = facts.labelText.map(LabelMapping.init(text:))
            ?? header["labels"].flatMap { $0 == "none" ? nil : LabelMapping(values: $0.split(separator: ",").compactMap { Double($0) }) }
        let dataAt = 16
        let dataBytes = storage == "dense" ? 4 * rows * features : 8 * (rows + 1) + 8 * nonZeros
        let yAt = dataAt + dataBytes
        guard headerAt == yAt + 4 * rows else { return .stale("is damaged (\(size) bytes; its header does not fit its shape)") }
        // The checksum over everything before it, in 1 MiB blocks.
        var h: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: block)
        var at = 0
        while at < size - 8 {
            let n = Swift.min(block, size - 8 - at)
            let got = buffer.withUnsafeMutableBytes { b -> Int in
                var done = 0
                while done < n {
                    let r = pread(fd, b.baseAddress! + done, n - done, off_t(at + done))
                    if r < 0 && errno == EINTR { continue }
                    if r <= 0 { break }
                    done += r
                }
                return done
            }
            guard got == n else { return .stale("is damaged (a read failed)") }
            h = buffer.withUnsafeBytes { Checksum.hash(UnsafeRawBufferPointer(rebasing: $0[0..<n]), seed: h) }
            at += n
        }
        guard let tail = read(8, at: size - 8), tail.withUnsafeBytes({ $0.loadUnaligned(as: UInt64.self) }) == h.littleEndian
        else { return .stale("is damaged (its checksum does not match its contents)") }
        guard let yBytes = read(4 * rows, at: yAt) else { return .stale("is damaged (its labels are cut short)") }
        let y = yBytes.withUnsafeBytes { b in (0..<rows).map { Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
        let layout: ShardStream.Layout
        if storage == "dense" {
            layout = .dense(offset: dataAt)
        } else {
            guard let startBytes = read(8 * (rows + 1), at: dataAt) else { return .stale("is damaged (its row starts are cut short)") }
            let starts = startBytes.withUnsafeBytes { b in (0...rows).map { Int(Int64(littleEndian: b.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) } }
            guard starts.first == 0, starts.last == nonZeros, zip(starts, starts.dropFirst()).allSatisfy({ $0 <= $1 }) else {
                return .stale("is damaged (its row starts are not increasing)")
            }
            layout = .csr(rowStarts: starts, indices: dataAt + 8 * (rows + 1), values: dataAt + 8 * (rows + 1) + 4 * nonZeros)
        }
        guard let stream = try? ShardStream(path: path, rows: rows, features: features, layout: layout) else { return .stale("cannot be opened") }
        return .hit(Dataset(features: features, classes: classes, globalRows: globalRows, firstRow: firstRow, stream: stream, y: y), labels, facts)
    }

    /// Writes `data` (rows in memory, dense or CSR) with `labels` as the cache at `path` for `key`: a
    /// temporary file beside it, fsynced, renamed over it. Throws `AtomicFile.WriteError` naming the cache.
    /// Returns the rows streamed from the file this call wrote (opened before the rename, so another job
    /// renaming its own cache over `path` meanwhile cannot hand this one its rows).
    /// `fault`: a deliberate failure after so many bytes (tests of a full disk).
    @discardableResult
    public static func write(_ data: Dataset, labels: LabelMapping?, facts: ShardFacts = ShardFacts(), key: Key, to path: String,
                             fault: AtomicFile.Fault? = nil) throws -> ShardStream {
        precondition(!data.isStreamed, "a cache is written from rows in memory")
        let writer = try Writer(path: path, key: key, fault: fault)
        if let csr = data.csr {
            try writer.put(csr.rowStarts.map { Int64($0).littleEndian })
            try writer.put(csr.indices)
            try writer.put(csr.values)
        } else {
            try writer.put(data.x)
        }
        let layout: ShardStream.Layout = data.csr.map { .csr(rowStarts: $0.rowStarts, indices: 16 + 8 * ($0.rows + 1), values: 16 + 8 * ($0.rows + 1) + 4 * $0.nonZeros) }
            ?? .dense(offset: 16)
        return try writer.commit(y: data.y, features: data.features, classes: data.classes, globalRows: data.globalRows, firstRow: data.firstRow,
                                 storage: data.csr == nil ? "dense" : "csr", nonZeros: data.csr?.nonZeros ?? 0, labels: labels, facts: facts, layout: layout)
    }

    /// A cache being written, front to back: the rows (all of them at once, or a chunk at a time from a
    /// chunked parse: `DenseRowSink`), then `commit` (labels, header, checksum, fsync, rename). Dropped
    /// without `commit` (an error), it removes its temporary file.
    public final class Writer: DenseRowSink {
        public let path: String
        let key: Key
        let temp: String
        let fd: Int32
        let fault: AtomicFile.Fault?
        var at = 0
        var rows = 0
        var hash: UInt64 = 0
        /// Bytes written but not yet hashed (the checksum runs over 1 MiB blocks of the file).
        var pending: [UInt8] = []
        var committed = false
        /// Text parsed at a time by a chunked parse (`DenseRowSink`).
        public let chunkBytes: Int

        public init(path: String, key: Key, chunkBytes: Int = 64 << 20, fault: AtomicFile.Fault? = nil) throws {
            self.path = path
            self.key = key
            self.fault = fault
            self.chunkBytes = chunkBytes
            temp = AtomicFile.temporary(for: path)
            fd = Glibc.open(temp, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw AtomicFile.failure(path, "cannot create \(temp)", kind: .cannotCreate) }
            pending.reserveCapacity(2 * block)
            try start()
        }

        /// The file's first 16 bytes (magic, version), written and hashed.
        private func start() throws {
            try put(magic + withUnsafeBytes(of: UInt32(version).littleEndian, Array.init) + [0, 0, 0, 0])
        }

        /// Drops the rows appended so far: the file is cut back to nothing and started again.
        public func restart() throws {
            guard ftruncate(fd, 0) == 0 else { throw AtomicFile.failure(path, "cannot truncate \(temp)") }
            (at, rows, hash) = (0, 0, 0)
            pending.removeAll(keepingCapacity: true)
            try start()
        }

        /// `--missing mean` after a chunked parse: replaces each NaN of the rows written (`features` Float32
        /// values a row from byte 16) with its column's `fill`, in place, and hashes the file again from its
        /// start. Cost: one more read and write of the rows (sequential 1 MiB blocks; a Float32 never straddles
        /// a block, whose boundaries are multiples of 4). Call before the labels are put.
        func fillMissing(_ fill: [Float], features: Int) throws {
            precondition(fill.count == features, "one fill value per feature")
            let end = at
            (hash, at) = (0, 0)
            pending.removeAll(keepingCapacity: true)
            var buffer = [UInt8](repeating: 0, count: block)
            var offset = 0
            while offset < end {
                let n = Swift.min(block, end - offset)
                var changed = false
                try buffer.withUnsafeMutableBytes { b in
                    var done = 0
                    while done < n {
                        let r = pread(fd, b.baseAddress! + done, n - done, off_t(offset + done))
                        if r < 0 && errno == EINTR { continue }
                        guard r > 0 else { throw AtomicFile.failure(path, "cannot read back \(temp)") }
                        done += r
                    }
                    var p = Swift.max(offset, 16)
                    while p < offset + n {
                        let v = Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: p - offset, as: UInt32.self)))
                        if v.isNaN {
                            b.storeBytes(of: fill[(p - 16) / 4 % features].bitPattern.littleEndian, toByteOffset: p - offset, as: UInt32.self)
                            changed = true
                        }
                        p += 4
                    }
                    if changed { try AtomicFile.write(UnsafeRawBufferPointer(rebasing: b[0..<n]), to: fd, at: offset, path: path) }
                }
                if n == block { hash = buffer.withUnsafeBytes { Checksum.hash($0, seed: hash) } } else { pending = Array(buffer[0..<n]) }
                offset += n
            }
            at = end
        }

        deinit {
            close(fd)
            if !committed { unlink(temp) }
        }

        func put<T>(_ values: [T]) throws {
            try values.withUnsafeBytes { bytes in
                try AtomicFile.write(bytes, to: fd, at: at, path: path, fault: fault.map { shifted($0, by: at) })
                at += bytes.count
                var rest = bytes[...]
                while !rest.isEmpty {
                    let take = Swift.min(block - pending.count, rest.count)
                    pending += rest.prefix(take)
                    rest = rest.dropFirst(take)
                    if pending.count == block { hash = pending.withUnsafeBytes { Checksum.hash($0, seed: hash) }; pending.removeAll(keepingCapacity: true) }
                }
            }
        }

        public func append(rows x: [Float], features: Int) throws {
            try put(x)
            rows += x.count / Swift.max(features, 1)
        }

        public func finish(y: [Float], features: Int, classes: Int, globalRows: Int, firstRow: Int, labels: LabelMapping?,
                           facts: ShardFacts) throws -> ShardStream {
            precondition(y.count == rows, "one label per row appended")
            if let fill = facts.missingFill { try fillMissing(fill.map(Float.init(bitPattern:)), features: features) }
            return try commit(y: y, features: features, classes: classes, globalRows: globalRows, firstRow: firstRow, storage: "dense", nonZeros: 0,
                              labels: labels, facts: facts, layout: .dense(offset: 16))
        }

        /// Writes the labels, the header and the checksum, fsyncs and renames the file over `path`; returns
        /// the rows (`layout`) streamed from this file, opened before the rename.
        func commit(y: [Float], features: Int, classes: Int, globalRows: Int, firstRow: Int, storage: String, nonZeros: Int,
                    labels: LabelMapping?, facts: ShardFacts, layout: ShardStream.Layout) throws -> ShardStream {
            try put(y)
            var facts = facts
            facts.labelText = labels?.text
            var fields = key.fields
            fields += [("rows", String(y.count)), ("features", String(features)), ("classes", String(classes)),
                       ("global_rows", String(globalRows)), ("first_row", String(firstRow)),
                       ("storage", storage), ("non_zeros", String(nonZeros)),
                       ("labels", labels.map { $0.values.map { "\($0)" }.joined(separator: ",") } ?? "none"),
                       // Compact JSON: one line (a line break inside a string is escaped).
                       ("facts", String(decoding: try JSONEncoder().encode(facts), as: UTF8.self))]
            let header = Array(fields.map { "\($0.0)=\($0.1.replacingOccurrences(of: "\n", with: " "))" }.joined(separator: "\n").utf8)
            let headerAt = at
            try put(header)
            try put([UInt64(headerAt).littleEndian, UInt64(header.count).littleEndian])
            if !pending.isEmpty { hash = pending.withUnsafeBytes { Checksum.hash($0, seed: hash) } }
            try put([hash.littleEndian])
            guard fsync(fd) == 0 else { throw AtomicFile.failure(path, "fsync failed") }
            let stream = try ShardStream(path: temp, rows: y.count, features: features, layout: layout, name: path)
            try AtomicFile.commit(temp, to: path)
            committed = true
            return stream
        }
    }

    /// `fault` as seen by a write that starts `offset` bytes into the file.
    static func shifted(_ fault: AtomicFile.Fault, by offset: Int) -> AtomicFile.Fault {
        switch fault {
        case let .fail(n): return .fail(afterBytes: Swift.max(0, n - offset))
        case let .stall(n, hang): return .stall(afterBytes: Swift.max(0, n - offset), hang: hang)
        }
    }

}
