import ArgumentParser

/// Where the rows of an HDF5 `--data` file are, for every command that reads data files (dml-train,
/// dml-predict): `--h5-features`, `--h5-labels`. Flags given with a file of another format are refused
/// (`DataSource.partsConflict`).
public struct HDF5Options: ParsableArguments {
    @Option(name: .customLong("h5-features"),
            help: "HDF5 --data: the features dataset, 2-D (rows × features) floats or integers, e.g. /train/X.")
    public var features: String?

    @Option(name: .customLong("h5-labels"),
            help: "HDF5 --data: the labels dataset, 1-D, one per row, e.g. /train/y (default: a column of the features, --label-column).")
    public var labels: String?

    public init() {}
}
