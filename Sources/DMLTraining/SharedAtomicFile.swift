#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLComm
import DMLStatus

/// One file written by every rank at once, atomically as a whole: rank r writes its own part at the offset
/// where the parts of ranks 0 … r−1 end, so the file is the parts in rank order and no rank ever holds more
/// than its own (what `dml-predict --output` writes: each rank's predictions, in the input's row order).
///
/// ```
/// allgather part sizes ─▶ offset = exclusive prefix sum, total
/// rank 0: temporary beside the target (AtomicFile.temporary), created and sized to total ─▶ broadcast its name
/// every rank: open, pwrite its part at its offset, fsync ─▶ agree
/// rank 0: rename over the target, fsync the directory ─▶ agree
/// ```
/// A reader sees the old file (or none) or the complete new one. On any failure, on any rank, every rank
/// throws the same `AgreedFailure` (`.cannotCreate` when the temporary cannot be made, `.ioError` when a
/// write, sync or the rename fails) and rank 0 removes the temporary: nothing is left. A rank killed
/// mid-write leaves the temporary, named with rank 0's host and pid, which the next write of the same target
/// removes once that process is gone (as `AtomicFile`). The ranks must see one file system at the target.
public enum SharedAtomicFile {
    /// Writes this rank's `part` as described above; returns the file's total size. Collective: every rank
    /// calls it with the same `path` (parts may be empty). `fault` (tests) makes this rank's write fail or
    /// stall part-way, as `AtomicFile.Fault`.
    ///
    /// Cost: one allgather of a size, one broadcast of the name, three agreements (small allreduces); each rank
    /// writes and syncs its own bytes, in parallel with the others.
    @discardableResult
    public static func write(_ part: UnsafeRawBufferPointer, to path: String, comm: Communicator,
                             fault: AtomicFile.Fault? = nil) throws -> Int {
        let sizes = try comm.allgathered(Int64(part.count)).map(Int.init)
        let offset = sizes[..<comm.rank].reduce(0, +)
        let total = sizes.reduce(0, +)
        var temp = try comm.agreeing { () -> String in
            guard comm.rank == 0 else { return "" }
            let temp = AtomicFile.temporary(for: path)
            let fd = open(temp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw AtomicFile.failure(path, "cannot create \(temp)", kind: .cannotCreate) }
            defer { close(fd) }
            guard ftruncate(fd, off_t(total)) == 0 else {
                let e = AtomicFile.failure(path, "cannot size \(temp) to \(total) bytes")
                unlink(temp)
                throw e
            }
            return temp
        }
        try comm.broadcast(&temp, root: 0)
        do {
            try comm.agreeing {
                let fd = open(temp, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw AtomicFile.failure(path, "cannot open \(temp)") }
                defer { close(fd) }
                try AtomicFile.write(part, to: fd, at: offset, path: path, fault: fault)
                guard fsync(fd) == 0 else { throw AtomicFile.failure(path, "fsync failed") }
            }
            // Every rank's part is written and synced (the agreement above is a barrier): publish it.
            try comm.agreeing { if comm.rank == 0 { try AtomicFile.commit(temp, to: path) } }
        } catch {
            if comm.rank == 0 { unlink(temp) }
            throw error
        }
        return total
    }
}
