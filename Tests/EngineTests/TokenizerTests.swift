// The tokenizer against HF's own ids and decodes (scripts/oracle/fixtures_tokenizers.py): every
// GSM8K question and answer plus edge cases, for SmolLM2's (GGUF and tokenizer.json), GPT-2's and
// a SentencePiece BPE (tokenizer.json and GGUF), and tokenizer.json variants for the other stages.
import Engine
import Foundation
import XCTest

/// One oracle file: the strings and what HF made of them.
struct TokenizerFixture {
    let name: String
    let strings: [String]
    let ids: [[Int]]
    let idsPlain: [[Int]]
    let decoded: [String]
    let decodedSkip: [String]
    let bosTokenID: Int?
    let eosTokenID: Int?
    let vocabSize: Int

    static func load(_ name: String, directory: String = "oracle/tokenizers", file: StaticString = #filePath, line: UInt = #line) throws -> TokenizerFixture {
        let path = try Fixtures.require("\(directory)/\(name).json", file: file, line: line)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let d = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let strings = d["strings"] as? [String], let ids = d["ids"] as? [[Int]], let plain = d["ids_plain"] as? [[Int]],
              let decoded = d["decoded"] as? [String], let skip = d["decoded_skip"] as? [String],
              let vocab = d["vocab_size"] as? Int else {
            XCTFail("\(path): not a tokenizer oracle file; rerun scripts/make-fixtures.sh", file: file, line: line)
            throw Fixtures.FixtureMissing(path: path)
        }
        return TokenizerFixture(name: name, strings: strings, ids: ids, idsPlain: plain, decoded: decoded, decodedSkip: skip,
                                bosTokenID: d["bos_token_id"] as? Int, eosTokenID: d["eos_token_id"] as? Int, vocabSize: vocab)
    }
}

final class TokenizerTests: XCTestCase {
    /// Compares encode (with and without special tokens) and decode (with and without skipping
    /// special tokens) on every fixture string; prints the counts; fails on any mismatch.
    @discardableResult
    func compare(_ tok: Tokenizer, _ fx: TokenizerFixture, label: String, file: StaticString = #filePath, line: UInt = #line) -> Int {
        var encodeBad = 0, plainBad = 0, decodeBad = 0, skipBad = 0, tokens = 0
        var examples: [String] = []
        func note(_ s: String) { if examples.count < 8 { examples.append(s) } }
        for (i, s) in fx.strings.enumerated() {
            let ids = tok.encode(s)
            tokens += fx.ids[i].count
            if ids != fx.ids[i] {
                encodeBad += 1
                note("encode \(s.debugDescription.prefix(80)): got \(ids.prefix(24)) want \(fx.ids[i].prefix(24))")
            }
            let plain = tok.encode(s, addSpecialTokens: false)
            if plain != fx.idsPlain[i] {
                plainBad += 1
                note("encode(no specials) \(s.debugDescription.prefix(80)): got \(plain.prefix(24)) want \(fx.idsPlain[i].prefix(24))")
            }
            let dec = tok.decode(fx.ids[i])
            if !dec.utf8.elementsEqual(fx.decoded[i].utf8) { // bytes: Swift's == is canonical equivalence
                decodeBad += 1
                note("decode \(fx.ids[i].prefix(16)): got \(dec.debugDescription.prefix(80)) want \(fx.decoded[i].debugDescription.prefix(80))")
            }
            let skip = tok.decode(fx.ids[i], skipSpecialTokens: true)
            if !skip.utf8.elementsEqual(fx.decodedSkip[i].utf8) {
                skipBad += 1
                note("decode(skip) \(fx.ids[i].prefix(16)): got \(skip.debugDescription.prefix(80)) want \(fx.decodedSkip[i].debugDescription.prefix(80))")
            }
        }
        let bad = encodeBad + plainBad + decodeBad + skipBad
        print("tokenizer \(label): \(fx.strings.count) strings (\(tokens) tokens) compared with HF; mismatches: encode \(encodeBad), encode(no specials) \(plainBad), decode \(decodeBad), decode(skip specials) \(skipBad) [\(tok.kind)]")
        for e in examples { print("  mismatch: \(e)") }
        XCTAssertEqual(bad, 0, "\(label): \(bad) mismatches with HF", file: file, line: line)
        XCTAssertEqual(tok.vocabularySize, fx.vocabSize, "\(label): vocabulary size", file: file, line: line)
        return bad
    }

    /// The real strings (edge cases + GSM8K) and the seeded random ones (`<name>-fuzz`).
    @discardableResult
    func check(_ tok: Tokenizer, _ name: String, directory: String = "oracle/tokenizers", label: String,
               file: StaticString = #filePath, line: UInt = #line) throws -> TokenizerFixture {
        let fx = try TokenizerFixture.load(name, directory: directory, file: file, line: line)
        compare(tok, fx, label: label, file: file, line: line)
        compare(tok, try TokenizerFixture.load(name + "-fuzz", directory: directory, file: file, line: line), label: label + " fuzz", file: file, line: line)
        return fx
    }

    // MARK: - SmolLM2

    func testSmolLM2FromGGUF() throws {
        let gguf = try GGUFReader(path: try Fixtures.require("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        let tok = try Tokenizer.load(gguf: gguf)
        let fx = try check(tok, "smollm2", label: "SmolLM2 (GGUF)")
        XCTAssertEqual(tok.bosTokenID, fx.bosTokenID)
        XCTAssertEqual(tok.eosTokenID, fx.eosTokenID)
        XCTAssertEqual(tok.kind, "byte-level BPE, smollm pre-tokenizer, no BOS")
        // SPEC.md "Eq. 7": the GSM8K final answer " 18" is ' ', '1', '8', and no BOS is added.
        let ids = tok.encode(" 18")
        XCTAssertEqual(ids.compactMap(tok.token), ["Ġ", "1", "8"])
        XCTAssertEqual(tok.decode(ids), " 18")
    }

    func testSmolLM2FromTokenizerJSON() throws {
        let tok = try Tokenizer.load(tokenizerJSON: try Fixtures.require("oracle/tokenizers/smollm2/tokenizer.json"))
        let fx = try check(tok, "smollm2", label: "SmolLM2 (tokenizer.json)")
        XCTAssertEqual(tok.bosTokenID, fx.bosTokenID)
        XCTAssertEqual(tok.eosTokenID, fx.eosTokenID)
    }

    // MARK: - Gemma 3

    /// Gemma-3-270M's GGUF vocabulary as transformers' GemmaTokenizer rebuilds it (scripts/oracle/
    /// fixtures_gemma3.py): spaces → "▁" with no prefix, merges in file order, BOS added.
    func testGemma3FromGGUF() throws {
        let gguf = try GGUFReader(path: try Fixtures.require("models/gemma-3-270m-q4_k_m.gguf"))
        let start = Date()
        let tok = try Tokenizer.load(gguf: gguf)
        print(String(format: "tokenizer load (Gemma 3 GGUF, 262,144 tokens, merges rebuilt): %.2f s", Date().timeIntervalSince(start)))
        let fx = try check(tok, "gemma3", directory: "oracle/gemma3/tokenizer", label: "Gemma 3 (GGUF)")
        XCTAssertEqual(tok.bosTokenID, fx.bosTokenID)
        XCTAssertEqual(tok.eosTokenID, fx.eosTokenID)
        // The GSM8K final answer " 18": "▁" then one token per digit, after <bos> only with specials.
        XCTAssertEqual(tok.encode(" 18", addSpecialTokens: false).compactMap(tok.token), ["\u{2581}", "1", "8"])
        XCTAssertEqual(tok.encode("x").first, 2)
    }

    // MARK: - GPT-2

    func testGPT2FromTokenizerJSON() throws {
        let tok = try Tokenizer.load(tokenizerJSON: try Fixtures.require("oracle/tokenizers/gpt2/tokenizer.json"))
        try check(tok, "gpt2", label: "GPT-2 (tokenizer.json)")
        XCTAssertEqual(tok.bosTokenID, 50256)
        XCTAssertEqual(tok.eosTokenID, 50256)
    }

    // MARK: - SentencePiece BPE (Llama-2 style)

    func testSentencePieceFromTokenizerJSON() throws {
        let tok = try Tokenizer.load(tokenizerJSON: try Fixtures.require("oracle/tokenizers/sp-bpe/tokenizer.json"))
        try check(tok, "sp-bpe", label: "SentencePiece BPE (tokenizer.json)")
        XCTAssertEqual(tok.bosTokenID, 1)
        XCTAssertEqual(tok.encode("").first, 1, "the post-processor adds <s>")
    }

    func testSentencePieceFromGGUF() throws {
        let gguf = try GGUFReader(path: try Fixtures.require("oracle/tokenizers/sp-bpe/sp-bpe.gguf"))
        let tok = try Tokenizer.load(gguf: gguf)
        let fx = try check(tok, "sp-bpe-gguf", label: "SentencePiece BPE (GGUF, merges from scores)")
        XCTAssertEqual(tok.bosTokenID, fx.bosTokenID)
        XCTAssertEqual(tok.eosTokenID, fx.eosTokenID)
    }

    /// A tokenizer_config.json saying add_bos_token=false, add_eos_token=true next to a
    /// tokenizer.json that adds BOS: transformers 5 ignores the config, and so must we.
    func testTokenizerConfigDoesNotOverrideTemplate() throws {
        let tok = try Tokenizer.load(tokenizerJSON: try Fixtures.require("oracle/tokenizers/variants/sp-eos/tokenizer.json"))
        let fx = try check(tok, "sp-eos", label: "SentencePiece BPE (tokenizer_config.json add_bos=false, add_eos=true)")
        XCTAssertEqual(tok.encode(""), [1])
        XCTAssertEqual(tok.eosTokenID, fx.eosTokenID)
    }

    /// A byte-level GGUF with `tokenizer.ggml.pre = "llama-bpe"` (GPT-2's vocabulary): Llama-3's
    /// Split regex before ByteLevel, BOS from `add_bos_token`.
    func testLlamaBPEPreTokenizerFromGGUF() throws {
        let gguf = try GGUFReader(path: try Fixtures.require("oracle/tokenizers/variants/gpt2-llama-bpe.gguf"))
        let tok = try Tokenizer.load(gguf: gguf)
        try check(tok, "gpt2-llama-bpe-gguf", label: "GPT-2 vocabulary, llama-bpe pre-tokenizer (GGUF)")
        XCTAssertEqual(tok.kind, "byte-level BPE, llama-bpe pre-tokenizer, BOS added")
    }

    // MARK: - Stage variants (oracle: HF tokenizers)

    func testVariantLlama3SplitNFCIgnoreMerges() throws {
        try variant("gpt2-llama3")
    }

    func testVariantDigitsPrefixSpaceAddedTokenOptions() throws {
        try variant("gpt2-digits")
    }

    func testVariantLegacyPrependReplaceNormalizers() throws {
        try variant("sp-legacy")
    }

    func testVariantMetaspaceSplitAndDecoder() throws {
        try variant("sp-metaspace")
    }

    private func variant(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let tok = try Tokenizer.load(tokenizerJSON: try Fixtures.require("oracle/tokenizers/variants/\(name).json", file: file, line: line))
        try check(tok, name, label: "variant \(name)", file: file, line: line)
    }

    // MARK: - Speed

    /// Prints encode throughput on all GSM8K questions (SmolLM2, from the GGUF): a cold pass
    /// (empty word cache) and a warm one. Printed, not asserted.
    func testEncodeSpeed() throws {
        let gguf = try GGUFReader(path: try Fixtures.require("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        let loadStart = Date()
        let tok = try Tokenizer.load(gguf: gguf)
        let loadSeconds = Date().timeIntervalSince(loadStart)
        let questions = try String(contentsOfFile: try Fixtures.require("data/gsm8k/test.jsonl"), encoding: .utf8)
            .split(separator: "\n").compactMap { line -> String? in
                guard let d = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
                return d["question"] as? String
            }
        XCTAssertEqual(questions.count, 1319)
        for pass in ["cold", "warm"] {
            let start = Date()
            var count = 0
            for q in questions { count += tok.encode(q).count }
            let seconds = Date().timeIntervalSince(start)
            print(String(format: "tokenizer speed (SmolLM2, %@ cache): %d GSM8K questions, %d tokens in %.3f s = %.0f tokens/s (%.0f chars/s)",
                         pass, questions.count, count, seconds, Double(count) / seconds,
                         Double(questions.reduce(0) { $0 + $1.count }) / seconds))
        }
        print(String(format: "tokenizer load (SmolLM2 GGUF metadata → tokenizer): %.3f s", loadSeconds))
    }

    // MARK: - Errors

    func testUnsupportedStageNamesFileKeyAndValue() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnl-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("tokenizer.json").path
        let json = """
        {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
         "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "BertPreTokenizer"}]}}
        """
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Tokenizer.load(tokenizerJSON: path)) { error in
            guard case let TokenizerError.unsupportedType(p, key, value, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(p, path)
            XCTAssertEqual(key, "pre_tokenizer.pretokenizers[1].type")
            XCTAssertEqual(value, "BertPreTokenizer")
            XCTAssertTrue(error.localizedDescription.contains("BertPreTokenizer"))
        }

        let unigram = #"{"model": {"type": "Unigram", "vocab": []}}"#
        try unigram.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Tokenizer.load(tokenizerJSON: path)) { error in
            XCTAssertEqual(error as? TokenizerError, .unsupportedType(path: path, key: "model.type", value: "Unigram", supported: ["BPE"]))
        }

        let prefix = ###"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "continuing_subword_prefix": "##"}}"###
        try prefix.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Tokenizer.load(tokenizerJSON: path)) { error in
            guard case let TokenizerError.unsupportedOption(_, key, value, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(key, "model.continuing_subword_prefix")
            XCTAssertEqual(value, "\"##\"")
        }

        let badMerge = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}"#
        try badMerge.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Tokenizer.load(tokenizerJSON: path)) { error in
            XCTAssertEqual(error as? TokenizerError, .unknownToken(path: path, key: "model.merges[0]", token: "ab"))
        }
    }
}
