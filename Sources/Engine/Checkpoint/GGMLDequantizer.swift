// Dequantization of ggml block formats to Float (layouts of ggml-common.h, math of ggml-quants.c).
import Foundation

public enum GGMLDequantizer {
    /// Converts `count` elements of `type` starting at `src` into `dst`. The caller (GGUFReader)
    /// has already checked that `count` is a whole number of blocks and that the bytes exist.
    /// The arithmetic is ggml's dequantize_row_* operation for operation (no fused multiply-adds:
    /// Swift does not contract `a * b + c`), which gguf-py's numpy port also follows, so the
    /// results are bit-identical to both (CheckpointDequantTests).
    public static func dequantize(_ type: GGMLType, from src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
        let blocks = count / type.blockSize
        let bpb = type.bytesPerBlock
        switch type {
        case .f32:
            memcpy(dst, src, count * 4)
        case .f16:
            for i in 0..<count { dst[i] = floatFromF16(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .bf16:
            for i in 0..<count { dst[i] = floatFromBF16(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .q4_0:
            // block_q4_0 { half d; uint8 qs[16]; }: x = (nibble − 8)·d; low nibbles are
            // elements 0..15, high nibbles 16..31.
            for b in 0..<blocks {
                let p = src + b * bpb
                let d = floatFromF16(p.loadUnaligned(as: UInt16.self))
                let o = dst + b * 32
                for j in 0..<16 {
                    let q = p.load(fromByteOffset: 2 + j, as: UInt8.self)
                    o[j] = Float(Int(q & 0x0F) - 8) * d
                    o[j + 16] = Float(Int(q >> 4) - 8) * d
                }
            }
        case .q4_1:
            // block_q4_1 { half d; half m; uint8 qs[16]; }: x = nibble·d + m.
            for b in 0..<blocks {
                let p = src + b * bpb
                let d = floatFromF16(p.loadUnaligned(as: UInt16.self))
                let m = floatFromF16(p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                let o = dst + b * 32
                for j in 0..<16 {
                    let q = p.load(fromByteOffset: 4 + j, as: UInt8.self)
                    o[j] = Float(q & 0x0F) * d + m
                    o[j + 16] = Float(q >> 4) * d + m
                }
            }
        case .q5_0:
            // block_q5_0 { half d; uint8 qh[4]; uint8 qs[16]; }: the fifth bit of element j is
            // bit j of qh (j < 16) or bit j of qh for the high half (j + 16); x = (q − 16)·d.
            for b in 0..<blocks {
                let p = src + b * bpb
                let d = floatFromF16(p.loadUnaligned(as: UInt16.self))
                let qh = p.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
                let o = dst + b * 32
                for j in 0..<16 {
                    let q = p.load(fromByteOffset: 6 + j, as: UInt8.self)
                    let h0 = UInt8((qh >> UInt32(j)) << 4 & 0x10)
                    let h1 = UInt8((qh >> UInt32(j + 12)) & 0x10)
                    o[j] = Float(Int((q & 0x0F) | h0) - 16) * d
                    o[j + 16] = Float(Int((q >> 4) | h1) - 16) * d
                }
            }
        case .q5_1:
            // block_q5_1 { half d; half m; uint8 qh[4]; uint8 qs[16]; }: x = q·d + m.
            for b in 0..<blocks {
                let p = src + b * bpb
                let d = floatFromF16(p.loadUnaligned(as: UInt16.self))
                let m = floatFromF16(p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                let qh = p.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
                let o = dst + b * 32
                for j in 0..<16 {
                    let q = p.load(fromByteOffset: 8 + j, as: UInt8.self)
                    let h0 = UInt8((qh >> UInt32(j)) << 4 & 0x10)
                    let h1 = UInt8((qh >> UInt32(j + 12)) & 0x10)
                    o[j] = Float((q & 0x0F) | h0) * d + m
                    o[j + 16] = Float((q >> 4) | h1) * d + m
                }
            }
        case .q8_0:
            // block_q8_0 { half d; int8 qs[32]; }: x = q·d.
            for b in 0..<blocks {
                let p = src + b * bpb
                let d = floatFromF16(p.loadUnaligned(as: UInt16.self))
                let o = dst + b * 32
                for j in 0..<32 { o[j] = Float(p.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
            }
        case .q4_K, .q5_K, .q6_K:
            dequantizeK(type, from: src, blocks: blocks, into: dst)
        default:
            // GGUFReader refuses these by name before calling here (GGMLType.isSupported).
            for i in 0..<count { dst[i] = .nan }
        }
    }
}

// MARK: - K-quants (super-blocks of 256 elements)

extension GGMLDequantizer {
    /// The 6-bit scale and min of sub-block `j` packed in 12 bytes (ggml's get_scale_min_k4).
    @inline(__always) static func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (Float, Float) {
        func b(_ i: Int) -> UInt8 { q.load(fromByteOffset: i, as: UInt8.self) }
        if j < 4 {
            return (Float(b(j) & 63), Float(b(j + 4) & 63))
        }
        let sc = (b(j + 4) & 0x0F) | ((b(j - 4) >> 6) << 4)
        let mn = (b(j + 4) >> 4) | ((b(j) >> 6) << 4)
        return (Float(sc), Float(mn))
    }

    static func dequantizeK(_ type: GGMLType, from src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<Float>) {
        let bpb = type.bytesPerBlock
        for b in 0..<blocks {
            let p = src + b * bpb
            var y = dst + b * 256
            switch type {
            case .q4_K:
                // block_q4_K { half d; half dmin; uint8 scales[12]; uint8 qs[128]; }
                let d = floatFromF16(p.loadUnaligned(as: UInt16.self))
                let dmin = floatFromF16(p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                let scales = p + 4
                var q = p + 16
                var s = 0
                for _ in 0..<4 {
                    let (sc1, m1) = scaleMinK4(s, scales)
                    let (sc2, m2) = scaleMinK4(s + 1, scales)
                    let d1 = d * sc1, n1 = dmin * m1, d2 = d * sc2, n2 = dmin * m2
                    for l in 0..<32 { y[l] = d1 * Float(q.load(fromByteOffset: l, as: UInt8.self) & 0x0F) - n1 }
                    for l in 0..<32 { y[32 + l] = d2 * Float(q.load(fromByteOffset: l, as: UInt8.self) >> 4) - n2 }
                    y += 64; q += 32; s += 2
                }
            case .q5_K:
                // block_q5_K { half d; half dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }
                let d = floatFromF16(p.loadUnaligned(as: UInt16.self))
                let dmin = floatFromF16(p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                let scales = p + 4
                let qh = p + 16
                var ql = p + 48
                var s = 0
                var u1: UInt8 = 1, u2: UInt8 = 2
                for _ in 0..<4 {
                    let (sc1, m1) = scaleMinK4(s, scales)
                    let (sc2, m2) = scaleMinK4(s + 1, scales)
                    let d1 = d * sc1, n1 = dmin * m1, d2 = d * sc2, n2 = dmin * m2
                    for l in 0..<32 {
                        let lo = ql.load(fromByteOffset: l, as: UInt8.self) & 0x0F
                        let h: UInt8 = (qh.load(fromByteOffset: l, as: UInt8.self) & u1) != 0 ? 16 : 0
                        y[l] = d1 * Float(lo + h) - n1
                    }
                    for l in 0..<32 {
                        let hi = ql.load(fromByteOffset: l, as: UInt8.self) >> 4
                        let h: UInt8 = (qh.load(fromByteOffset: l, as: UInt8.self) & u2) != 0 ? 16 : 0
                        y[32 + l] = d2 * Float(hi + h) - n2
                    }
                    y += 64; ql += 32; s += 2
                    u1 <<= 2; u2 <<= 2
                }
            case .q6_K:
                // block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }
                let d = floatFromF16(p.loadUnaligned(fromByteOffset: 208, as: UInt16.self))
                var ql = p
                var qh = p + 128
                var sc = p + 192
                for _ in 0..<2 {
                    for l in 0..<32 {
                        let i = l / 16
                        let a = ql.load(fromByteOffset: l, as: UInt8.self)
                        let c = ql.load(fromByteOffset: l + 32, as: UInt8.self)
                        let h = qh.load(fromByteOffset: l, as: UInt8.self)
                        let q1 = Int((a & 0x0F) | ((h >> 0) & 3) << 4) - 32
                        let q2 = Int((c & 0x0F) | ((h >> 2) & 3) << 4) - 32
                        let q3 = Int((a >> 4) | ((h >> 4) & 3) << 4) - 32
                        let q4 = Int((c >> 4) | ((h >> 6) & 3) << 4) - 32
                        func s(_ k: Int) -> Float { Float(sc.load(fromByteOffset: k, as: Int8.self)) }
                        y[l] = d * s(i) * Float(q1)
                        y[l + 32] = d * s(i + 2) * Float(q2)
                        y[l + 64] = d * s(i + 4) * Float(q3)
                        y[l + 96] = d * s(i + 6) * Float(q4)
                    }
                    y += 128; ql += 64; qh += 32; sc += 8
                }
            default:
                break
            }
        }
    }
}
