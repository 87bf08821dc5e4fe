#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLStatus

/// The files a job writes must not be files it reads, nor each other: `--output train.csv` with
/// `--data train.csv` would overwrite the training data at the end of the run, and `--metrics` equal to
/// `--output` would leave neither. Checked by rank 0 before anything is trained.
public enum OutputPaths {
    /// Throws `JobError(.usage)` naming both flags when an output is the same file as an input (the same
    /// device and inode, so links and other spellings of a path are caught) or as another output (the same
    /// resolved path). `inputs` and `outputs` are (flag, path) pairs; nil paths are left out by the caller.
    public static func checkDistinct(inputs: [(flag: String, path: String)], outputs: [(flag: String, path: String)]) throws {
        for (i, out) in outputs.enumerated() {
            if let o = inode(out.path) {
                for input in inputs where inode(input.path) == o {
                    throw JobError(.usage, "\(out.flag) \(out.path) is the same file as \(input.flag) \(input.path): writing it would destroy "
                                   + "that input. Give \(out.flag) another path")
                }
            }
            for other in outputs[(i + 1)...] where resolved(other.path) == resolved(out.path) {
                throw JobError(.usage, "\(out.flag) and \(other.flag) name the same file (\(out.path)): one would overwrite the other")
            }
        }
    }

    /// Throws `JobError(.usage)` naming both flags when an output would land on a file the job manages in
    /// `directory` (given by `directoryFlag`): a name `owned` accepts, in that directory however it is spelt.
    /// The job writes, renames and deletes such files itself (checkpoints and their parts, shard caches), so
    /// an output there would replace one, or be replaced by one, silently.
    public static func checkOutside(_ directory: String?, flag directoryFlag: String, owned: (String) -> Bool,
                                    outputs: [(flag: String, path: String)]) throws {
        guard let directory else { return }
        let dir = resolved(directory + "/x").dropLast(2)
        for out in outputs {
            let r = resolved(out.path), name = URL(fileURLWithPath: out.path).lastPathComponent
            if r.dropLast(name.count + 1) == dir && owned(name) {
                throw JobError(.usage, "\(out.flag) \(out.path) is a name of the files \(directoryFlag) \(directory) holds, which the job writes, "
                               + "renames and deletes itself: one would replace the other. Give \(out.flag) another name or directory")
            }
        }
    }

    /// (device, inode) of an existing file, following links; nil when it does not exist.
    static func inode(_ path: String) -> [UInt64]? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return [UInt64(st.st_dev), UInt64(st.st_ino)]
    }

    /// The path with its directory's links resolved (the file itself need not exist).
    static func resolved(_ path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        guard let real = realpath(dir, nil) else { return url.standardizedFileURL.path }
        defer { free(real) }
        return String(cString: real) + "/" + url.lastPathComponent
    }
}
