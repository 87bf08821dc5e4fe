import CHDF5

/// Element types a test writes HDF5 datasets of (the library's native types of the same width).
public protocol HDF5Element {
    static var hdf5Type: hid_t { get }
}
extension Float: HDF5Element { public static var hdf5Type: hid_t { chdf5_native_float() } }
extension Double: HDF5Element { public static var hdf5Type: hid_t { chdf5_native_double() } }
extension Int8: HDF5Element { public static var hdf5Type: hid_t { chdf5_native_int8() } }
extension Int32: HDF5Element { public static var hdf5Type: hid_t { chdf5_native_int32() } }
extension Int64: HDF5Element { public static var hdf5Type: hid_t { chdf5_native_int64() } }
extension UInt8: HDF5Element { public static var hdf5Type: hid_t { chdf5_native_uint8() } }

/// A small HDF5 file written by a test through the C library (no h5py): datasets of numbers, contiguous or
/// chunked and gzip-compressed, and the kinds the readers must refuse (strings, compound records, scalars,
/// groups). Groups on a dataset's path are created as needed. `close()` flushes it.
public final class HDF5TestFile {
    let id: hid_t
    let links: hid_t

    public init(_ path: String) {
        chdf5_silence()
        id = H5Fcreate(path, chdf5_acc_trunc(), chdf5_p_default(), chdf5_p_default())
        precondition(id >= 0, "cannot create \(path)")
        links = H5Pcreate(chdf5_p_link_create())
        H5Pset_create_intermediate_group(links, 1)
    }

    /// Writes `values` (row-major) as dataset `name` of `shape`; chunked by `chunk` (a chunk's extent per
    /// dimension) with `gzip` level when given, else contiguous. `bigEndian`: stored as big-endian float64 (for
    /// Double values) or int16 (for Int32 values), converted by the library.
    public func write<T: HDF5Element>(_ name: String, _ values: [T], shape: [Int], chunk: [Int]? = nil, gzip: Int? = nil,
                                      bigEndian: Bool = false) {
        precondition(values.count == shape.reduce(1, *))
        let dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), dims, nil)
        let create = H5Pcreate(chdf5_p_dataset_create())
        if let chunk {
            H5Pset_chunk(create, Int32(chunk.count), chunk.map { hsize_t($0) })
            if let level = gzip { H5Pset_deflate(create, UInt32(level)) }
        }
        let stored = !bigEndian ? T.hdf5Type : T.self == Double.self ? chdf5_ieee_f64be() : chdf5_std_i16be()
        let set = H5Dcreate2(id, name, stored, space, links, create, chdf5_p_default())
        precondition(set >= 0, "cannot create dataset \(name)")
        let status = values.withUnsafeBytes { H5Dwrite(set, T.hdf5Type, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), $0.baseAddress) }
        precondition(status >= 0)
        H5Dclose(set); H5Pclose(create); H5Sclose(space)
    }

    /// A 1-D dataset of fixed-length strings.
    public func writeStrings(_ name: String, _ values: [String]) {
        let width = (values.map(\.utf8.count).max() ?? 0) + 1
        let type = H5Tcopy(chdf5_c_s1())
        H5Tset_size(type, width)
        var bytes = [UInt8](repeating: 0, count: width * values.count)
        for (i, v) in values.enumerated() { for (j, b) in v.utf8.enumerated() { bytes[i * width + j] = b } }
        writeRaw(name, type: type, shape: [values.count], bytes: bytes)
        H5Tclose(type)
    }

    /// A 1-D dataset of records {a: int32, b: int32}.
    public func writeRecords(_ name: String, _ pairs: [(Int32, Int32)]) {
        let type = H5Tcreate(H5T_COMPOUND, 8)
        H5Tinsert(type, "a", 0, chdf5_native_int32())
        H5Tinsert(type, "b", 4, chdf5_native_int32())
        let flat = pairs.flatMap { [$0.0, $0.1] }
        writeRaw(name, type: type, shape: [pairs.count], bytes: flat.withUnsafeBytes { Array($0) })
        H5Tclose(type)
    }

    /// A scalar (0-D) float64 dataset.
    public func writeScalar(_ name: String, _ value: Double) {
        let space = H5Screate(H5S_SCALAR)
        let set = H5Dcreate2(id, name, chdf5_native_double(), space, links, chdf5_p_default(), chdf5_p_default())
        var v = value
        H5Dwrite(set, chdf5_native_double(), chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), &v)
        H5Dclose(set); H5Sclose(space)
    }

    /// An empty group.
    public func group(_ name: String) {
        let g = H5Gcreate2(id, name, links, chdf5_p_default(), chdf5_p_default())
        precondition(g >= 0)
        H5Gclose(g)
    }

    func writeRaw(_ name: String, type: hid_t, shape: [Int], bytes: [UInt8]) {
        let dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), dims, nil)
        let set = H5Dcreate2(id, name, type, space, links, chdf5_p_default(), chdf5_p_default())
        precondition(set >= 0, "cannot create dataset \(name)")
        _ = bytes.withUnsafeBytes { H5Dwrite(set, type, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), $0.baseAddress) }
        H5Dclose(set); H5Sclose(space)
    }

    public func close() {
        H5Pclose(links)
        H5Fclose(id)
    }
}
