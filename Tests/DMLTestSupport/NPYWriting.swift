import Foundation

/// Writes a `.npy` file as numpy.save does (version 1.0, header padded to 64 bytes): `descr` is numpy's dtype
/// string (`<f4`, `<i8`), `bytes` the array's data in C order.
public func writeNPYFile(_ path: String, descr: String, shape: [Int], bytes: [UInt8]) {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var data: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
    data += Array(header.utf8) + bytes
    _ = FileManager.default.createFile(atPath: path, contents: Data(data))
}
