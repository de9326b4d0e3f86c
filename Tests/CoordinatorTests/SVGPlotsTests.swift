// The figures are well-formed SVG with one mark per data point, cell and located bin.
import Coordinator
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

final class SVGPlotsTests: XCTestCase {
    /// Counts elements (by name, optionally with a class) of well-formed XML.
    final class Counter: NSObject, XMLParserDelegate {
        var counts: [String: Int] = [:]
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            counts[name, default: 0] += 1
            if let c = attributes["class"] { counts["\(name).\(c)", default: 0] += 1 }
        }
    }

    func parse(_ svg: String) -> [String: Int] {
        let p = XMLParser(data: Data(svg.utf8))
        let c = Counter()
        p.delegate = c
        XCTAssertTrue(p.parse(), "not well-formed: \(p.parserError.map { "\($0)" } ?? "")")
        return c.counts
    }

    func testConvergenceHasOneMarkerPerDefinedPoint() {
        let pts = [SVGPlots.ConvergencePoint(n: 25, overlap: 0.5, iou: 0.3), .init(n: 50, overlap: nil, iou: nil),
                   .init(n: 100, overlap: 0.8, iou: 0.6), .init(n: 200, overlap: 0.9, iou: 0.8)]
        let c = parse(SVGPlots.convergence(pts, title: "GSM8K <final> & co"))
        XCTAssertEqual(c["circle.overlap"], 3)        // the empty-mask point is a gap, not a 0
        XCTAssertEqual(c["circle.IoU"], 3)
        XCTAssertEqual(c["polyline.overlap"], 1)      // 25 stands alone; 100–200 is one line
        let gap = parse(SVGPlots.convergence([.init(n: 25, overlap: 0.5, iou: 0.3), .init(n: 50, overlap: 0.6, iou: 0.4),
                                              .init(n: 100, overlap: nil, iou: nil), .init(n: 200, overlap: 0.9, iou: 0.8),
                                              .init(n: 400, overlap: 0.95, iou: 0.9)], title: "gap"))
        XCTAssertEqual(gap["polyline.overlap"], 2)    // broken at the empty mask
        XCTAssertEqual(gap["circle.IoU"], 4)
    }

    func testHeatmapCellsAndLocatedBins() {
        let (L, J) = (3, 250)
        var scores = [Double](repeating: 0.001, count: L * J)
        scores[1 * J + 120] = 5       // layer 1, bin 1
        scores[2 * J + 249] = -4      // layer 2, bin 2
        let c = parse(SVGPlots.heatmap(scores: scores, layers: L, ffnWidth: J, located: [1 * J + 120, 2 * J + 249, 2 * J + 248], bin: 100, title: "t"))
        XCTAssertEqual(c["rect"], 1 + L * 3 + 0)      // background + cells (bins of 100 over 250 → 3)
        XCTAssertEqual(c["rect.located"], 2)          // two distinct bins hold located neurons
    }
}
