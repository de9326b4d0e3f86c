// The OpenBLAS kernel choice (BLASCore) and the products of whichever kernels this process runs.
// Under `make test` that is the set `cnl blas --coretype` names: where OpenBLAS fell back to its
// generic kernels, the AVX-512 or AVX2 set cnl restarts with, so it is checked here against a
// naive float64 product.
import XCTest
import Engine

final class BLASCoreTests: XCTestCase {
    private let avx512BF16: Set<String> = ["sse3", "fma", "avx2", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"]
    private let avx512: Set<String> = ["sse3", "fma", "avx2", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
    private let avx2: Set<String> = ["sse3", "fma", "avx2"]

    func testGenericKernelsAreReplacedByTheWidestTheCPUHas() {
        // Intel model 207 with Debian 12's OpenBLAS 0.3.21: Prescott on a CPU with AVX512-BF16.
        XCTAssertEqual(BLASCore.replacement(current: "Prescott", cpuFlags: avx512BF16), "Cooperlake")
        XCTAssertEqual(BLASCore.replacement(current: "Prescott", cpuFlags: avx512), "SkylakeX")
        XCTAssertEqual(BLASCore.replacement(current: "Nehalem", cpuFlags: avx2), "Haswell")
        XCTAssertEqual(BLASCore.replacement(current: "Haswell", cpuFlags: avx512BF16), "Cooperlake")
    }

    func testAChoiceAtLeastAsWideIsKept() {
        XCTAssertNil(BLASCore.replacement(current: "Cooperlake", cpuFlags: avx512BF16))
        XCTAssertNil(BLASCore.replacement(current: "SapphireRapids", cpuFlags: avx512BF16))
        XCTAssertNil(BLASCore.replacement(current: "SkylakeX", cpuFlags: avx512BF16))
        XCTAssertNil(BLASCore.replacement(current: "Zen", cpuFlags: avx2))
        XCTAssertNil(BLASCore.replacement(current: "SKYLAKEX", cpuFlags: avx2))
        // Nothing better to offer: no AVX2, or flags that could not be read.
        XCTAssertNil(BLASCore.replacement(current: "Prescott", cpuFlags: ["sse3", "avx"]))
        XCTAssertNil(BLASCore.replacement(current: "Prescott", cpuFlags: []))
    }

    /// Forward (sgemv at one row, sgemm above) and the input backward of `Linear`, through the
    /// kernels this process loaded, against float64 loops, at shapes that are not multiples of
    /// any kernel's tile.
    func testProductsOfTheLoadedKernelsMatchFloat64() {
        let n = 129, k = 67
        var generator = SystemRandomNumberGenerator()
        let weight = UnsafeMutablePointer<Float>.allocate(capacity: n * k)
        let bias = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { weight.deallocate(); bias.deallocate() }
        for i in 0..<(n * k) { weight[i] = Float.random(in: -1...1, using: &generator) }
        for i in 0..<n { bias[i] = Float.random(in: -1...1, using: &generator) }
        let linear = Linear(weight: weight, bias: bias, out: n, in: k)
        for rows in [1, 3, 37, 160] {
            let x = (0..<(rows * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            var y = [Float](repeating: 0, count: rows * n)
            var dx = [Float](repeating: 0, count: rows * k)
            let dy = (0..<(rows * n)).map { _ in Float.random(in: -1...1, using: &generator) }
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { linear.forward(xp.baseAddress!, rows: rows, into: $0.baseAddress!) } }
            dy.withUnsafeBufferPointer { dyp in dx.withUnsafeMutableBufferPointer { linear.backwardInput(dyp.baseAddress!, rows: rows, into: $0.baseAddress!) } }
            var worstForward = 0.0, worstBackward = 0.0
            for r in 0..<rows {
                for o in 0..<n {
                    var sum = Double(bias[o]), magnitude = abs(Double(bias[o]))
                    for i in 0..<k { sum += Double(x[r * k + i]) * Double(weight[o * k + i]); magnitude += abs(Double(x[r * k + i]) * Double(weight[o * k + i])) }
                    worstForward = max(worstForward, abs(Double(y[r * n + o]) - sum) / magnitude)
                }
                for i in 0..<k {
                    var sum = 0.0, magnitude = 0.0
                    for o in 0..<n { sum += Double(dy[r * n + o]) * Double(weight[o * k + i]); magnitude += abs(Double(dy[r * n + o]) * Double(weight[o * k + i])) }
                    worstBackward = max(worstBackward, abs(Double(dx[r * k + i]) - sum) / magnitude)
                }
            }
            // Float32 accumulation over ≤ 129 terms: a few units of 2⁻²⁴ relative to Σ|terms|.
            XCTAssertLessThan(worstForward, 1e-6, "forward, \(rows) rows, kernels \(BLASCore.current)")
            XCTAssertLessThan(worstBackward, 1e-6, "input backward, \(rows) rows, kernels \(BLASCore.current)")
        }
    }
}
