#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLStatus

/// Writing a file so that a reader sees either the old file or the complete new one, never a torn one,
/// even if the machine dies mid-write: write a temporary file in the same directory, fsync it, rename it
/// over the target, fsync the directory (so the rename itself is durable).
public enum AtomicFile {
    public struct WriteError: ClassifiedError, CustomStringConvertible {
        public let path: String
        public let reason: String
        /// `.cannotCreate` when the file (or its temporary, or its directory) cannot be created at all;
        /// `.ioError` when writing, syncing or renaming it failed part-way (a full disk).
        public let failureKind: FailureKind
        public init(path: String, reason: String, kind: FailureKind) {
            self.path = path
            self.reason = reason
            failureKind = kind
        }
        public var description: String { "cannot write \(path): \(reason)" }
    }

    /// A deliberate fault in a write (`DML_FAULT`), after `bytes` bytes of the temporary file are written.
    public enum Fault: Sendable {
        /// Fail as a full disk would (ENOSPC).
        case fail(afterBytes: Int)
        /// Stop for good, as a hung node or file system would (`FaultPlan.hang`).
        case stall(afterBytes: Int, hang: @Sendable () -> Never)
        var afterBytes: Int { switch self { case let .fail(n), let .stall(n, _): return n } }
    }

    public static func write(_ bytes: [UInt8], to path: String, fault: Fault? = nil) throws {
        let temp = temporary(for: path)
        let fd = open(temp, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(path, "cannot create \(temp)", kind: .cannotCreate) }
        var ok = false
        defer { if !ok { unlink(temp) } }
        do {
            defer { close(fd) }
            try bytes.withUnsafeBytes { try write($0, to: fd, at: 0, path: path, fault: fault) }
            guard fsync(fd) == 0 else { throw failure(path, "fsync failed") }
        }
        try commit(temp, to: path)
        ok = true
    }

    /// The temporary file beside `path` that this process writes (`.<name>.tmp-<host>-<pid>` in the same
    /// directory, so a rename can replace `path`), after removing those that writers now dead left there.
    public static func temporary(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let prefix = "." + url.lastPathComponent + ".tmp-" + host + "-"
        removeStrayTemporaries(in: dir, prefix: prefix)
        return dir + "/" + prefix + "\(getpid())"
    }

    /// Writes all of `bytes` to `fd` at file offset `offset` (`pwrite`, retried on EINTR and short writes);
    /// `fault` fails (ENOSPC) or stalls once `afterBytes` of them are written. Errors name `path`, `.ioError`.
    public static func write(_ bytes: UnsafeRawBufferPointer, to fd: Int32, at offset: Int, path: String, fault: Fault? = nil) throws {
        var written = 0
        while written < bytes.count {
            if let fault, written >= fault.afterBytes {
                if case let .stall(_, hang) = fault { hang() }
                errno = ENOSPC
                throw failure(path, "write failed (injected fault)")
            }
            let n = pwrite(fd, bytes.baseAddress! + written, Swift.min(bytes.count, fault?.afterBytes ?? bytes.count) - written,
                           off_t(offset + written))
            if n < 0 { if errno == EINTR { continue }; throw failure(path, "write failed") }
            written += n
        }
    }

    /// Renames the complete, synced `temp` over `path` and syncs the directory, so the rename itself is
    /// durable. `.ioError` when the rename fails (`temp` is left for the caller to remove).
    public static func commit(_ temp: String, to path: String) throws {
        guard rename(temp, path) == 0 else { throw failure(path, "rename failed") }
        let dfd = open(URL(fileURLWithPath: path).deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    /// A `WriteError` about `path`: `what` and the current `errno`'s text.
    static func failure(_ path: String, _ what: String, kind: FailureKind = .ioError) -> WriteError {
        WriteError(path: path, reason: "\(what): \(String(cString: strerror(errno)))", kind: kind)
    }

    /// This host's name, in temporary file names (a shared file system may see writers on several hosts).
    static let host = ProcessInfo.processInfo.hostName.replacingOccurrences(of: "/", with: "_")

    /// Removes the temporary files `<prefix><pid>` in `dir` whose writer, a process of this host, is gone
    /// (a writer killed mid-write cannot clean up after itself). A live writer's file is left alone.
    static func removeStrayTemporaries(in dir: String, prefix: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for name in names where name.hasPrefix(prefix) {
            guard let pid = pid_t(name.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(dir + "/" + name) }
        }
    }

    /// Checks, without leaving anything behind, that a file can be created next to `path` (and so that
    /// `write(_:to:)` can succeed). Used to reject a bad `--output` before any training is done; its errors
    /// are `.cannotCreate`.
    public static func checkWritable(_ path: String) throws {
        let url = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw WriteError(path: path, reason: "it is a directory", kind: .cannotCreate)
        }
        let dir = url.deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw WriteError(path: path, reason: "directory \(dir) does not exist", kind: .cannotCreate)
        }
        try probe(dir, naming: path)
    }

    /// Checks, without leaving anything behind, that files can be created in the existing directory `dir`;
    /// the error names the directory alone.
    public static func checkWritable(directory dir: String) throws {
        try probe(dir, naming: dir)
    }

    /// Creates and removes a probe file in `dir`; an error (`.cannotCreate`) names `path`.
    private static func probe(_ dir: String, naming path: String) throws {
        let probe = dir + "/.dml-write-probe-\(getpid())"
        let fd = open(probe, O_CREAT | O_WRONLY | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let why = String(cString: strerror(errno))
            throw WriteError(path: path, reason: path == dir ? "the directory is not writable (\(why))" : "directory \(dir) is not writable (\(why))",
                             kind: .cannotCreate)
        }
        close(fd)
        unlink(probe)
    }
}
