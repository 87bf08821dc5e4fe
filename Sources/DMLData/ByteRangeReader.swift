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
}

/// The lines of a text file that one rank owns. The file's bytes are cut into `ranks` equal ranges; a
/// rank owns every line that *starts* inside its range (a line starts at offset 0 or just after a `\n`),
/// reading past the range's end to finish its last line. So every line is read by exactly one rank, for
/// any file and any number of ranks, with no communication: a line longer than a range simply belongs to
/// the rank where it starts, and a rank whose range holds no line start owns no lines.
///
/// Memory: one read buffer (4 MiB, grown only to hold a longer line). Cost: one sequential pass over the
/// range plus the tail of its last line (and, to find the first line start, the tail of the line that
/// crosses the range's start).
struct LineRange {
    let file: InputFile
    let range: Range<Int>

    /// Rank `rank` of `ranks`'s byte range of a file of `size` bytes.
    static func byteRange(size: Int, rank: Int, ranks: Int) -> Range<Int> {
        (rank * size / ranks) ..< ((rank + 1) * size / ranks)
    }

    /// Calls `body(line, localIndex)` for each owned line in order, without its `\n` or `\r\n`. Returns the
    /// number of lines. `body` may throw to stop.
    func forEachLine(chunk: Int = 4 << 20, _ body: (UnsafeBufferPointer<UInt8>, Int) throws -> Void) throws -> Int {
        guard !range.isEmpty else { return 0 }
        var capacity = chunk
        var buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        defer { buffer.deallocate() }
        // Start one byte early and skip the first "line": it is the tail of the line that crosses the
        // range's start, or just the "\n" before it when a line starts exactly there.
        var skipping = range.lowerBound > 0
        var pos = skipping ? range.lowerBound - 1 : 0      // file offset of the current line's start
        var bufferStart = pos                               // file offset of buffer[0]
        var filled = try file.read(into: buffer, count: capacity, at: bufferStart)
        var searched = 0                                    // bytes after `pos` known to hold no "\n"
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
            } else if bufferStart + filled >= file.size {
                lineEnd = filled
            } else {
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
                lines += 1
            }
            pos = bufferStart + lineEnd + 1
            searched = 0
        }
        return lines
    }
}
