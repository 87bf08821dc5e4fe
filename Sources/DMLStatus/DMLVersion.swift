/// This build's version: in model files (`dml_version`) and every command's `--version`.
public enum DMLVersion {
    public static let string = "0.3.0"
}
