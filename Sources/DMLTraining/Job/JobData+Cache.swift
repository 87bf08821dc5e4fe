import Foundation
import DMLComm
import DMLData

extension JobConfiguration.Data {
    /// Whether the training rows are streamed from a shard cache (`--cache-dir`, which `--max-memory` needs)
    /// instead of held in memory.
    public var streamsFromCache: Bool { cacheDir != nil }

    /// Refuses, before reading, rows that would not fit in this rank's share of the node's memory
    /// (`MemoryBudget.available`) when they are to be held in memory: one message suggesting `--cache-dir`.
    /// Collective. Estimated from the file (`DataLoader.estimatedShardBytes`); LIBSVM is not estimated.
    func checkShardFits(_ source: DataSource, options: ReadOptions, comm: Communicator) throws {
        guard !streamsFromCache, let bytes = DataLoader.estimatedShardBytes(source, options: options, rank: comm.rank, ranks: comm.size),
              let available = MemoryBudget.available(ranksOnNode: MemoryBudget.ranksOnNode) else {
            return try comm.agree(nil, kind: .usage)
        }
        try comm.agree(bytes > available
            ? "the training rows of \(source.path) would take about \(MemoryBudget.format(bytes)) on rank \(comm.rank), which has about "
              + "\(MemoryBudget.format(Swift.max(0, available))): give --cache-dir DIR to stream them from a shard cache (and --max-memory to bound "
              + "what a rank holds), or run more ranks" : nil, kind: .usage)
    }

    /// This rank's training shard streamed from its cache in `cacheDir` (`ShardCache`): the cache when every
    /// rank's matches the file and the options, else the file is parsed (`DataLoader.read`), each rank writes
    /// its cache and then streams it. A cache that was there but stale or damaged is reported once by rank 0
    /// (`warn`) and rebuilt. Collective: the ranks agree on whether all caches hit, so they all parse or
    /// none does. Cost: a hit reads each cache once to verify its checksum; a miss parses the byte range and
    /// writes the cache: a CSV file 64 MB of text at a time (memory: one chunk's values and the labels; with
    /// `--missing mean` one more read and write of the cache to fill the means in), LIBSVM and a CSV with
    /// `--categorical` columns whole (their parsed shard is in memory while its cache is written). What the read
    /// learnt besides the rows (`ShardFacts`) is kept in the cache, so a hit returns the `LoadedFile` a parse would.
    func cachedShard(_ source: DataSource, options: ReadOptions, comm: Communicator,
                     warn: (String) -> Void) throws -> LoadedFile {
        let dir = cacheDir!
        var isDirectory: ObjCBool = false
        try comm.agree(FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) && isDirectory.boolValue ? nil
                       : "--cache-dir \(dir): no such directory", kind: .cannotCreate)
        // The rows are the same bits for any number of parse threads (`--threads`): not part of the key.
        var keyed = options
        keyed.parseThreads = 1
        let fingerprint = "\(keyed) format=\(source.format.map(\.rawValue) ?? "auto") labels=\(source.labelsPath ?? "-")"
            + " h5=\(source.hdf5.map { "\($0.features),\($0.labels ?? "-")" } ?? "-")"
        let companions = source.labelsPath.map(ShardCache.Key.version(of:)) ?? ""
        var key = ShardCache.Key(path: source.path, options: fingerprint, rank: comm.rank, ranks: comm.size)
        key?.companions = companions
        var lookup = ShardCache.Lookup.absent
        if let key { lookup = ShardCache.open(ShardCache.path(directory: dir, key: key), key: key) }
        // 0 hit, 1 absent, 2 stale: the ranks parse unless every cache hit.
        let code: Int64
        switch lookup {
        case .hit: code = 0
        case .absent: code = 1
        case .stale: code = 2
        }
        let codes = try comm.allgathered(code)
        if case let .hit(data, labels, facts) = lookup, codes.allSatisfy({ $0 == 0 }) { return facts.file(data: data, labels: labels) }
        // One warning for the job, from rank 0 (`warn` is rank 0's): its own reason, or the first stale rank's.
        let reason: String? = if case let .stale(why) = lookup { why } else { nil }
        let stale = codes.indices.filter { codes[$0] == 2 }
        if let first = stale.first, comm.rank == 0,
           let k = ShardCache.Key(path: source.path, options: fingerprint, rank: first, ranks: comm.size) {
            let why = first == 0 ? reason ?? "is stale" : "is stale or damaged (\(stale.count) of \(comm.size) ranks' caches)"
            warn("shard cache \(ShardCache.path(directory: dir, key: k)) \(why): rebuilding it")
        }
        lookup = .absent   // closes a cache this rank will rewrite
        let chunked = (source.format ?? DataFormat.infer(fromPath: source.path)) != .libsvm && options.categorical.isEmpty
        // Rows parsed whole before their cache is written are held in memory by this first run: over --max-memory
        // (by the file's estimate, before anything is parsed; LIBSVM is not estimated) they are refused.
        let whole = chunked ? nil : maxMemory.flatMap { limit in
            DataLoader.estimatedShardBytes(source, options: options, rank: comm.rank, ranks: comm.size).flatMap { bytes in
                bytes > Double(limit) ? "\(source.path): with --categorical the rows are parsed whole before their shard cache is written (the encoding "
                    + "needs every rank's categories first), and rank \(comm.rank)'s would take at least about \(MemoryBudget.format(bytes)), over "
                    + "--max-memory \(ByteCount.format(limit)): run more ranks, or encode the column before training" : nil
            }
        }
        try comm.agree(whole, kind: .usage)
        // The cache this rank writes: a CSV, .npy or HDF5 file's rows go to it a chunk at a time as they are read
        // (only the labels stay in memory; `--missing mean` fills them in the file once the means are agreed, and
        // quoted fields are read chunk by chunk with the quote parity carried over); LIBSVM rows and a CSV with
        // --categorical columns (whose encoding needs every rank's categories before any row can be written) are
        // parsed whole, then written.
        var writer: ShardCache.Writer?
        var failure: Error?
        do {
            guard let key else { throw DataError(file: source.path, "cannot examine the file to key its shard cache") }
            writer = try ShardCache.Writer(path: ShardCache.path(directory: dir, key: key), key: key)
        } catch {
            failure = error
        }
        try comm.agree(error: failure)
        let loaded = try DataLoader.load(source, options: options, comm: comm, rowSink: chunked ? writer : nil)
        let (parsed, labels) = (loaded.data, loaded.labels)
        if parsed.isStreamed { return loaded }
        var written: Error?
        var streamed: Dataset?
        do {
            let path = writer!.path
            writer = nil   // its temporary goes; `write` writes its own
            let stream = try ShardCache.write(parsed, labels: labels, facts: ShardFacts(loaded), key: key!, to: path)
            streamed = Dataset(features: parsed.features, classes: parsed.classes, globalRows: parsed.globalRows, firstRow: parsed.firstRow,
                               stream: stream, y: parsed.y)
        } catch {
            written = error
        }
        try comm.agree(error: written)
        var file = loaded
        file.data = streamed!
        return file
    }
}
