#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file opened for positional reads (`pread`): ranks read their own parts without a shared offset and
/// without ever reading the whole file.
final class InputFile {
    let path: String
    let fd: Int32
    let size: Int

    /// Opens `path`, or throws a `DataError` of kind `.noInput` saying why not (missing, a directory,
    /// unreadable).
    init(_ path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw DataError(file: path, Self.reason(errno), kind: .noInput) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { let e = errno; close(fd); throw DataError(file: path, Self.reason(e), kind: .noInput) }
        if (st.st_mode & S_IFMT) == S_IFDIR { close(fd); throw DataError(file: path, "is a directory, not a data file", kind: .noInput) }
        self.fd = fd
        size = Int(st.st_size)
    }

    deinit { close(fd) }

    static func reason(_ code: Int32) -> String {
        switch code {
        case ENOENT: return "no such file"
        case EACCES: return "permission denied (cannot read the file)"
        default: return "cannot read: " + String(cString: strerror(code))
        }
    }

    /// Reads up to `count` bytes at `offset` into `buffer`; returns the bytes read (fewer only at the end).
    /// A failed read is a `DataError` of kind `.ioError`.
    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws -> Int {
        var done = 0
        while done < count {
            let n = pread(fd, buffer + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw DataError(file: path, Self.reason(errno), kind: .ioError)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// The bytes of the first line (without its line end), read by itself; at most `limit` bytes.
    func firstLine(limit: Int = 1 << 20) throws -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        var offset = 0
        while offset < size && out.count < limit {
            let n = try chunk.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: $0.count, at: offset) }
            if n == 0 { break }
            if let nl = chunk[0..<n].firstIndex(of: UInt8(ascii: "\n")) {
                out += chunk[0..<nl]
                break
            }
            out += chunk[0..<n]
            offset += n
        }
        if out.last == UInt8(ascii: "\r") { out.removeLast() }
        return out
    }

    /// The UTF-8 byte-order mark (`EF BB BF`) some writers (Excel) put first; readers skip it.
    static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// The first CSV record without its line end and without a leading byte-order mark: up to the first
    /// `\n` outside double quotes (a quoted header name may hold a newline). At most `limit` bytes. Returns
    /// the record and the byte-order mark's length (0 or 3).
    func firstRecord(limit: Int = 1 << 20) throws -> (bytes: [UInt8], bom: Int) {
        let (records, bom) = try leadingRecords(2, limit: limit)
        return (records.first ?? [], bom)
    }

    /// Up to `count` records from the file's start (as `firstRecord` cuts them; blank ones skipped after the
    /// first), within its first `limit` bytes.
    func leadingRecords(_ count: Int, limit: Int = 1 << 20) throws -> (records: [[UInt8]], bom: Int) {
        var head = [UInt8](repeating: 0, count: Swift.min(size, limit))
        let n = try head.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: $0.count, at: 0) }
        head.removeLast(head.count - n)
        let bom = head.starts(with: Self.byteOrderMark) ? 3 : 0
        var inside = false
        var records: [[UInt8]] = []
        var start = bom
        func cut(_ end: Int) {
            var r = Array(head[start..<end])
            if r.last == UInt8(ascii: "\r") { r.removeLast() }
            if records.isEmpty || !r.allSatisfy(isBlank) { records.append(r) }
        }
        for i in bom..<head.count where records.count < count {
            if head[i] == UInt8(ascii: "\"") { inside.toggle() }
            else if head[i] == UInt8(ascii: "\n") && !inside { cut(i); start = i + 1 }
        }
        if records.count < count && (start < head.count || records.isEmpty) { cut(head.count) }
        return (records, bom)
    }
}

/// The lines of a text file that one rank owns. The file's bytes are cut into `ranks` equal ranges; a
/// rank owns every line that *starts* inside its range (a line starts at offset 0 or just after a `\n`),
/// reading past the range's end to finish its last line. So every line is read by exactly one rank, for
/// any file and any number of ranks, with no communication: a line longer than a range simply belongs to
/// the rank where it starts, and a rank whose range holds no line start owns no lines.
///
/// **Quoted records** (`quoteParity` set, RFC 4180 CSV): a `\n` inside a double-quoted field does not end a
/// record. A record starts at offset 0 or just after a `\n` that is *outside* quotes, i.e. preceded by an even
/// number of `"` bytes (an escaped `""` counts two, so parity is the quote state whenever quotes open and close
/// fields only). `quoteParity` is the parity of the `"` bytes before `range.lowerBound − 1`, which the caller
/// gets from every rank's count of its own range (`quoteCount`, one allgather): with it a rank knows whether
/// its range starts inside a quoted field and skips to the first record start, so the record rule is exact for
/// any cut. `body` then gets whole records (quoted newlines inside) and the 0-based *physical* line on which
/// each starts, and the returned count is physical lines, so global line numbers stay file lines.
///
/// Memory: one read buffer (4 MiB, grown only to hold a longer line). Cost: one sequential pass over the
/// range plus the tail of its last line (and, to find the first line start, the tail of the line that
/// crosses the range's start); with quotes, a count of the `"` bytes of each line too.
struct LineRange {
    let file: InputFile
    let range: Range<Int>
    /// Nil: `"` is an ordinary byte. Else the parity of the quotes before `range.lowerBound − 1` (see above).
    var quoteParity: Bool? = nil

    /// Rank `rank` of `ranks`'s byte range of a file of `size` bytes.
    static func byteRange(size: Int, rank: Int, ranks: Int) -> Range<Int> {
        (rank * size / ranks) ..< ((rank + 1) * size / ranks)
    }

    /// The `"` bytes in `[range.lowerBound − 1, range.upperBound − 1)` (clamped to the file): summed over the
    /// ranks before this one it is the count before this rank's `range.lowerBound − 1`, the parity
    /// `forEachLine` needs. Cost: one read of the range, `memchr` per quote.
    static func quoteCount(_ file: InputFile, _ range: Range<Int>, chunk: Int = 4 << 20) throws -> Int {
        let from = Swift.max(0, range.lowerBound - 1), to = Swift.max(from, range.upperBound - 1)
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: chunk)
        defer { buffer.deallocate() }
        var count = 0, offset = from
        while offset < to {
            let n = try file.read(into: buffer, count: Swift.min(chunk, to - offset), at: offset)
            if n == 0 { break }
            count += quotes(buffer, n)
            offset += n
        }
        return count
    }

    /// The number of `"` bytes in `[p, p + n)`: `memchr` per quote, so a file without quotes costs one scan.
    @inline(__always)
    static func quotes(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var count = 0
        var q = p
        let end = p + n
        while q < end, let hit = memchr(q, Int32(UInt8(ascii: "\"")), end - q) {
            count += 1
            q = UnsafePointer(hit.assumingMemoryBound(to: UInt8.self)) + 1
        }
        return count
    }

    /// Calls `body(line, localIndex)` for each owned line in order, without its `\n` or `\r\n`. Returns the
    /// number of lines. `body` may throw to stop. With `quoteParity`, lines are records and `localIndex` the
    /// physical line each starts on (see the type's comment).
    func forEachLine(chunk: Int = 4 << 20, _ body: (UnsafeBufferPointer<UInt8>, Int) throws -> Void) throws -> Int {
        guard !range.isEmpty else { return 0 }
        let quoted = quoteParity != nil
        var capacity = chunk
        var buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        defer { buffer.deallocate() }
        // Start one byte early and skip the first "line": it is the tail of the line that crosses the
        // range's start, or just the "\n" before it when a line starts exactly there.
        var skipping = range.lowerBound > 0
        var pos = skipping ? range.lowerBound - 1 : 0      // file offset of the current line's start
        var bufferStart = pos                               // file offset of buffer[0]
        var filled = try file.read(into: buffer, count: capacity, at: bufferStart)
        var searched = 0                                    // bytes after `pos` known to hold no record end
        var inside = skipping && quoteParity == true        // quote parity of the bytes before pos + searched
        var innerLines = 0                                  // quoted newlines of the current record
        var lines = 0
        while pos < range.upperBound || skipping {
            if pos >= file.size { break }
            let from = pos - bufferStart
            let hay = buffer + from + searched
            let left = filled - from - searched
            let hit = left > 0 ? memchr(hay, Int32(UInt8(ascii: "\n")), left) : nil
            var lineEnd: Int          // buffer index of the line's end ("\n" or end of file)
            if let hit {
                lineEnd = UnsafeMutablePointer<UInt8>(hit.assumingMemoryBound(to: UInt8.self)) - buffer
                if quoted {
                    if Self.quotes(hay, lineEnd - from - searched) & 1 == 1 { inside.toggle() }
                    if inside {
                        // A newline inside a quoted field: the record goes on.
                        searched = lineEnd - from + 1
                        if !skipping { innerLines += 1 }
                        continue
                    }
                }
            } else if bufferStart + filled >= file.size {
                lineEnd = filled
            } else {
                if quoted, Self.quotes(hay, left) & 1 == 1 { inside.toggle() }
                // Line continues past the buffer: keep its start (unless skipping), read more.
                if skipping {
                    bufferStart += filled
                    pos = bufferStart
                    searched = 0
                    skipping = true
                    filled = try file.read(into: buffer, count: capacity, at: bufferStart)
                    // `pos` is now mid-line; keep skipping until the "\n".
                    continue
                }
                let keep = filled - from
                if keep == capacity {
                    capacity *= 2
                    let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
                    bigger.update(from: buffer + from, count: keep)
                    buffer.deallocate()
                    buffer = bigger
                } else if from > 0 {
                    buffer.update(from: buffer + from, count: keep)
                }
                bufferStart = pos
                searched = keep
                filled = keep + (try file.read(into: buffer + keep, count: capacity - keep, at: bufferStart + keep))
                continue
            }
            if skipping {
                skipping = false
            } else {
                var n = lineEnd - from
                if n > 0 && buffer[from + n - 1] == UInt8(ascii: "\r") { n -= 1 }
                try body(UnsafeBufferPointer(start: buffer + from, count: n), lines)
                lines += 1 + innerLines
            }
            innerLines = 0
            inside = false
            pos = bufferStart + lineEnd + 1
            searched = 0
        }
        return lines
    }
}
