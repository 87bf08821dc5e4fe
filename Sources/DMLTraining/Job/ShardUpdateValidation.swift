import DMLComm

extension JobConfiguration {
    /// What `--shard-update` (`ShardedReducer`) cannot honour, as one message naming the flags; nil when it is
    /// off or every other option keeps its meaning with it. Part of `conflict`.
    func shardUpdateConflict() -> String? {
        let r = reduction
        guard r.shardUpdate else { return nil }
        if optimization.optimizer.isFullBatch {
            return "--shard-update shards the per-step update of sgd, momentum, adam, adamw or adagrad; --optimizer \(optimization.optimizer.rawValue) is a full-batch method that needs the whole gradient on every rank: leave out --shard-update"
        }
        if data.partition == .features { return "--shard-update shards a replicated model's update; --partition features already holds a share of the model on each rank: use --partition rows" }
        if r.balance { return "--shard-update reduce-scatters with the ring; --balance sums the gradient along its own chain: give one of them" }
        if r.allreduce != .ring {
            return "--shard-update reduce-scatters the gradient with the ring and allgathers the parameters: it cannot use --allreduce \(r.allreduce.rawValue) (leave out --allreduce, or give ring)"
        }
        return nil
    }
}
