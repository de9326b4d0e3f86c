// Eq. 9: overlap and IoU of the masks of halves a and b (SPEC "Eq. 9: a/b split, overlap, IoU").
import Foundation

public struct OverlapMetrics: Codable, Sendable, Equatable {
    /// (|A∩B|/|A| + |A∩B|/|B|) / 2, or nil when either mask is empty (undefined, never 0/0).
    public var overlap: Double?
    /// |A∩B| / |A∪B|, or nil when either mask is empty (SPEC: an empty mask makes both undefined).
    public var iou: Double?
    public var sizeA: Int
    public var sizeB: Int
    public var intersection: Int
    public var union: Int

    enum CodingKeys: String, CodingKey { case overlap, iou, sizeA = "size_a", sizeB = "size_b", intersection, union }

    public init(_ a: NeuronMask, _ b: NeuronMask) {
        let sa = Set(a.located), sb = Set(b.located)
        let inter = sa.intersection(sb).count
        let uni = sa.union(sb).count
        sizeA = sa.count
        sizeB = sb.count
        intersection = inter
        union = uni
        overlap = (sa.isEmpty || sb.isEmpty) ? nil : (Double(inter) / Double(sa.count) + Double(inter) / Double(sb.count)) / 2
        iou = (sa.isEmpty || sb.isEmpty) ? nil : Double(inter) / Double(uni)
    }

    /// Undefined values are written as JSON null, not left out, so readers see them.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(overlap, forKey: .overlap)
        try c.encode(iou, forKey: .iou)
        try c.encode(sizeA, forKey: .sizeA)
        try c.encode(sizeB, forKey: .sizeB)
        try c.encode(intersection, forKey: .intersection)
        try c.encode(union, forKey: .union)
    }

    /// "0.9642" or "undefined (empty mask)".
    public static func describe(_ v: Double?) -> String {
        v.map { String(format: "%.4f", $0) } ?? "undefined (empty mask)"
    }
}
