// The one interface every checkpoint reader offers: named tensors, dequantized to Float.
import Foundation

/// A named tensor in a checkpoint, with its shape in row-major order (outermost first, as
/// PyTorch and numpy print it) and how its bytes are stored.
public struct TensorEntry: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var storage: String      // "F32", "BF16", "Q4_1", …
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A checkpoint seen as a set of named tensors. Readers convert every stored type to `Float`
/// while copying into the destination, so no second full-size copy exists at load.
public protocol TensorSource: AnyObject {
    /// Shown in errors: the file or directory the tensors come from.
    var path: String { get }
    var tensors: [String: TensorEntry] { get }
    /// Writes tensor `name`, converted to Float, into `destination`, whose count must equal the
    /// tensor's element count.
    func read(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws
}

extension TensorSource {
    public func entry(_ name: String) throws -> TensorEntry {
        guard let e = tensors[name] else { throw CheckpointError.missingTensor(path: path, tensor: name) }
        return e
    }

    /// Reads a whole tensor into a new array (tests and small tensors; models load in place).
    public func readArray(_ name: String) throws -> [Float] {
        let e = try entry(name)
        var out = [Float](repeating: 0, count: e.elementCount)
        try out.withUnsafeMutableBufferPointer { try read(name, into: $0) }
        return out
    }
}

// MARK: - Half-precision conversions shared by the readers

@inline(__always) public func floatFromBF16(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

@inline(__always) public func floatFromF16(_ bits: UInt16) -> Float {
    Float(Float16(bitPattern: bits))
}
