// libFuzzer entry for the checkpoint readers (built by scripts/fuzz-checkpoints.sh, not by SwiftPM).
import Foundation

/// Each input is given to both parsers; whatever opens has every tensor read into a Float
/// buffer. A thrown CheckpointError is a normal outcome. A trap, an ASan report, or a read
/// that fails after a successful open (bounds are checked at open) is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func checkpointFuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let file = MappedFile(path: "fuzz-input", bytes: bytes)
    let sources: [() throws -> TensorSource] = [{ try GGUFReader(file: file) }, { try SafetensorsFile(file: file) }]
    for open in sources {
        guard let source = try? open() else { continue }
        for (name, entry) in source.tensors {
            precondition(entry.elementCount <= 8 * max(size, 1), "tensor '\(name)' claims \(entry.elementCount) elements in \(size) bytes")
            var buffer = [Float](repeating: 0, count: entry.elementCount)
            do {
                try buffer.withUnsafeMutableBufferPointer { try source.read(name, into: $0) }
            } catch let e as CheckpointError {
                if case .unsupportedDType = e { continue }
                preconditionFailure("opened, but reading '\(name)' threw \(e)")
            } catch {
                preconditionFailure("reading '\(name)' threw \(error)")
            }
        }
    }
    return 0
}
