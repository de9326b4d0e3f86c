// The tokenizer: HF tokenizers' pipeline (added tokens → normalizer → pre-tokenizer → BPE →
// post-processor; decoder for the way back), loaded from a tokenizer.json or from a GGUF's
// `tokenizer.ggml.*` metadata the way transformers builds it (see TokenizerGGUF.swift).
import Foundation

public final class Tokenizer: @unchecked Sendable {
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: BPEModel
    let postProcessor: PostProcessor?
    let decoder: TokenDecoder?
    let added: AddedVocabulary
    /// transformers' `clean_up_tokenization_spaces` (from tokenizer_config.json).
    let cleanUpSpaces: Bool

    public let bosTokenID: Int?
    public let eosTokenID: Int?
    /// Human description, e.g. "byte-level BPE, smollm pre-tokenizer".
    public let kind: String
    /// The file it was loaded from.
    public let source: String

    init(normalizer: Normalizer?, preTokenizer: PreTokenizer?, model: BPEModel, postProcessor: PostProcessor?,
         decoder: TokenDecoder?, added: AddedVocabulary, cleanUpSpaces: Bool, bosTokenID: Int?, eosTokenID: Int?,
         kind: String, source: String) {
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.model = model
        self.postProcessor = postProcessor
        self.decoder = decoder
        self.added = added
        self.cleanUpSpaces = cleanUpSpaces
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.kind = kind
        self.source = source
    }

    // MARK: - Vocabulary

    /// Model vocabulary plus added tokens beyond it (transformers' `len(tokenizer)`).
    public var vocabularySize: Int { max(model.vocabularySize, (added.tokens.map(\.id).max() ?? -1) + 1) }

    /// The token string of an id (byte-level tokens in GPT-2's alphabet, e.g. "Ġworld").
    public func token(_ id: Int) -> String? {
        if let a = added.byID[id] { return a.content }
        guard id >= 0, id < model.idToToken.count else { return nil }
        let t = model.idToToken[id]
        return t.isEmpty && model.vocab[TokenKey(t)] != id ? nil : t
    }

    /// The id of a token string (added tokens first, as HF's `token_to_id`).
    public func id(of token: String) -> Int? { added.byContent[TokenKey(token)]?.id ?? model.vocab[TokenKey(token)] }

    /// The ids the post-processor puts before and after every encoded text.
    public var specialPrefix: [Int] { postProcessor?.prefix ?? [] }
    public var specialSuffix: [Int] { postProcessor?.suffix ?? [] }

    // MARK: - Encoding

    /// HF's `tokenizer(text)["input_ids"]` (`add_special_tokens` as there).
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        for segment in added.splitRaw(text) {
            switch segment {
            case let .token(id):
                ids.append(id)
            case let .text(raw, atStart):
                let normalized = normalizer?.normalize(raw) ?? raw
                for inner in added.splitNormalized(normalized, atStart: atStart) {
                    switch inner {
                    case let .token(id):
                        ids.append(id)
                    case let .text(piece, pieceAtStart):
                        var pieces = [PreToken(text: piece, atStart: pieceAtStart)]
                        if let preTokenizer { pieces = preTokenizer.preTokenize(pieces) }
                        for p in pieces { model.tokenize(p.text, into: &ids) }
                    }
                }
            }
        }
        return postProcessor?.process(ids, addSpecialTokens: addSpecialTokens) ?? ids
    }

    // MARK: - Decoding

    /// HF's `decode(ids, skip_special_tokens=…)`: ids → token strings (unknown ids dropped, special
    /// added tokens dropped when asked) → the decoder chain, joined.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if let a = added.byID[id] {
                if skipSpecialTokens && a.special { continue }
                tokens.append(a.content)
            } else if let t = token(id) {
                tokens.append(t)
            }
        }
        var text = decoder.map { $0.decodeChain(tokens).joined() } ?? tokens.joined(separator: " ")
        if cleanUpSpaces { text = Self.cleanUpTokenization(text) }
        return text
    }

    /// transformers' `clean_up_tokenization`.
    static func cleanUpTokenization(_ s: String) -> String {
        var out = s
        for (a, b) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                       (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            out = replaceLiteral(out, a, b)
        }
        return out
    }
}

// MARK: - Loading tokenizer.json

extension Tokenizer {
    static let supportedModels = ["BPE"]

    /// Loads an HF `tokenizer.json`. A sibling `tokenizer_config.json`, when present, supplies the
    /// BOS/EOS token names and `clean_up_tokenization_spaces`. Its `add_bos_token`/`add_eos_token`
    /// are ignored, as transformers 5 ignores them when a tokenizer.json exists
    /// (`PreTrainedTokenizerBase._from_pretrained`): the file's post-processor decides.
    public static func load(tokenizerJSON path: String) throws -> Tokenizer {
        let root = try JSONNode.load(path: path)
        let modelJSON = try root.required("model")
        let modelType = try modelJSON.optionalString("type") ?? "BPE"
        guard modelType == "BPE" else { throw modelJSON.unsupportedType(modelType, supportedModels) }
        let model = try bpeModel(modelJSON)

        var addedTokens: [AddedToken] = []
        if let list = root.child("added_tokens") {
            for node in try list.elements() {
                addedTokens.append(AddedToken(
                    id: try node.int("id"), content: try node.string("content"), special: try node.bool("special", default: false),
                    singleWord: try node.bool("single_word", default: false), lstrip: try node.bool("lstrip", default: false),
                    rstrip: try node.bool("rstrip", default: false), normalized: try node.bool("normalized", default: true)))
            }
        }
        let added = AddedVocabulary(addedTokens)
        let normalizer = try root.child("normalizer").map(NormalizerFactory.make)
        let preTokenizer = try root.child("pre_tokenizer").map(PreTokenizerFactory.make)
        let postProcessor = try root.child("post_processor").map(PostProcessorFactory.make)
        let decoder = try root.child("decoder").map(DecoderFactory.make)

        func lookup(_ token: String) -> Int? { added.byContent[TokenKey(token)]?.id ?? model.vocab[TokenKey(token)] }

        // tokenizer_config.json (transformers' side of the tokenizer).
        var bos: Int? = postProcessor?.prefix.first
        var eos: Int? = postProcessor?.suffix.last
        var cleanUp = false
        let configPath = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("tokenizer_config.json").path
        if FileManager.default.fileExists(atPath: configPath) {
            let config = try JSONNode.load(path: configPath)
            func tokenName(_ key: String) throws -> String? {
                guard let n = config.child(key) else { return nil }
                if let s = n.stringValue { return s }
                return try n.optionalString("content")
            }
            let bosName = try tokenName("bos_token"), eosName = try tokenName("eos_token")
            if let bosName { bos = lookup(bosName) }
            if let eosName { eos = lookup(eosName) }
            cleanUp = try config.bool("clean_up_tokenization_spaces", default: false)
        }

        let kind = describe(model: model, modelJSON: modelJSON, preTokenizer: root.child("pre_tokenizer"),
                            normalizer: root.child("normalizer"), postProcessor: postProcessor)
        return Tokenizer(normalizer: normalizer, preTokenizer: preTokenizer, model: model, postProcessor: postProcessor,
                         decoder: decoder, added: added, cleanUpSpaces: cleanUp, bosTokenID: bos, eosTokenID: eos,
                         kind: kind, source: path)
    }

    private static func bpeModel(_ json: JSONNode) throws -> BPEModel {
        if let p = json.child("dropout")?.doubleValue, p != 0 {
            throw json.unsupportedOption("dropout", "\(p)", "BPE dropout is random; cnl needs deterministic ids (set it to null)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = try json.optionalString(key), !v.isEmpty {
                throw json.unsupportedOption(key, "\"\(v)\"", "subword prefixes/suffixes (WordPiece-style BPE) are not implemented")
            }
        }
        let members = try json.required("vocab").members()
        var vocab: [TokenKey: Int] = [:]
        vocab.reserveCapacity(members.count)
        for (k, v) in members {
            guard let i = v.intValue else { throw v.malformed("expected an integer id") }
            vocab[TokenKey(k)] = i
        }
        var merges: [(String, String)] = []
        if let mergesNode = json.child("merges") {
            let list = try mergesNode.elements()
            merges.reserveCapacity(list.count)
            for (i, m) in list.enumerated() {
                if let s = m.stringValue {
                    let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                    guard parts.count == 2 else {
                        throw TokenizerError.malformed(path: json.path, key: "\(mergesNode.key)[\(i)]", detail: "expected \"left right\", found \"\(s)\"")
                    }
                    merges.append((String(parts[0]), String(parts[1])))
                } else if let pair = try? m.elements(), pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue {
                    merges.append((a, b))
                } else {
                    throw TokenizerError.malformed(path: json.path, key: "\(mergesNode.key)[\(i)]", detail: "expected \"left right\" or [left, right]")
                }
            }
        }
        return try BPEModel(vocab: vocab, merges: merges, unkToken: try json.optionalString("unk_token"),
                            byteFallback: try json.bool("byte_fallback", default: false),
                            fuseUnk: try json.bool("fuse_unk", default: false),
                            ignoreMerges: try json.bool("ignore_merges", default: false),
                            path: json.path, key: json.key)
    }

    private static func describe(model: BPEModel, modelJSON: JSONNode, preTokenizer: JSONNode?, normalizer: JSONNode?,
                                 postProcessor: PostProcessor?) -> String {
        func types(_ n: JSONNode?) -> [String] {
            guard let n, let t = try? n.type() else { return [] }
            if t == "Sequence" {
                let children = (try? n.array("pretokenizers")) ?? (try? n.array("normalizers")) ?? []
                return children.flatMap { types($0) }
            }
            if t == "Split", let r = try? n.required("pattern").optionalString("Regex") {
                if r == GPT2Scanner.pattern { return ["Split(GPT-2 regex)"] }
                if r == Llama3Scanner.pattern { return ["Split(Llama-3 regex)"] }
                return ["Split(regex)"]
            }
            return [t]
        }
        let pre = types(preTokenizer)
        var parts: [String] = []
        if pre.contains("ByteLevel") {
            parts.append("byte-level BPE")
        } else if model.byteFallback {
            parts.append("SentencePiece-style BPE with byte fallback")
        } else {
            parts.append("BPE")
        }
        if !pre.isEmpty { parts.append("pre-tokenizer " + pre.joined(separator: " + ")) }
        let norm = types(normalizer)
        if !norm.isEmpty { parts.append("normalizer " + norm.joined(separator: " + ")) }
        parts.append((postProcessor?.prefix.isEmpty ?? true) ? "no BOS" : "BOS added")
        return parts.joined(separator: ", ")
    }
}
