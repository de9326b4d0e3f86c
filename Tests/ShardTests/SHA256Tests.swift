// SHA-256: FIPS 180-4's test vectors, streaming in uneven pieces, and a file read in chunks.
import Foundation
import XCTest
import Shard

final class SHA256Tests: XCTestCase {
    /// Fixed bytes that are not periodic at any block size (a multiplicative hash of the index).
    func testBytes(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: (UInt64($0) &* 0x9E37_79B9_7F4A_7C15) >> 56) }
    }

    func testKnownVectors() {
        XCTAssertEqual(SHA256.hex(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // 448 bits: the padding needs a second block.
        XCTAssertEqual(SHA256.hex(Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex(Data(repeating: UInt8(ascii: "a"), count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testStreamingInUnevenPiecesEqualsOneShot() {
        let bytes = testBytes(10_000)
        var h = SHA256()
        var offset = 0
        for size in [0, 1, 63, 64, 65, 127, 500, 3] + Array(repeating: 1000, count: 10) where offset < bytes.count {
            let end = min(bytes.count, offset + size)
            h.update(bytes[offset..<end])
            offset = end
        }
        h.update(bytes[offset...])
        XCTAssertEqual(h.finalize().map { String(format: "%02x", $0) }.joined(), SHA256.hex(bytes))
    }

    /// A file larger than one 4 MiB read: the fingerprint of models and data files.
    func testFileDigestReadsInChunks() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sha-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let bytes = Data(testBytes((9 << 20) + 17))
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try SHA256.hex(fileAt: path), SHA256.hex(bytes))
        let start = Date()
        _ = try SHA256.hex(fileAt: path)
        let seconds = Date().timeIntervalSince(start)
        print(String(format: "SHA-256 of 9 MiB: %.3f s (%.0f MB/s)", seconds, Double(bytes.count) / seconds / 1e6))
    }
}

