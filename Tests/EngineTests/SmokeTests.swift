import XCTest
@testable import Engine
final class SmokeTests: XCTestCase { func testNothing() {} }
