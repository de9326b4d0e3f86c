// A tokenizer from a GGUF's `tokenizer.ggml.*` metadata, built the way transformers builds it
// (`integrations/gguf/gguf_tokenizer_mapping.py`), so ids equal `AutoTokenizer.from_pretrained(dir,
// gguf_file=…)`:
//   "gpt2":  byte-level BPE from tokens + merges; tokens outside GPT-2's byte alphabet are respelled
//            byte by byte; `tokenizer.ggml.pre` picks a Split regex for the Llama-3/Qwen2/… families
//            and GPT-2's ByteLevel regex for every other name (gpt2, smollm, …).
//   "llama": SentencePiece BPE with byte fallback: merges recovered from the scores (transformers'
//            `generate_merges`), Metaspace "▁" prepended to the first piece, BOS added by default.
//            Gemma (architecture gemma/gemma2/gemma3) is transformers' `GemmaTokenizer` instead:
//            all-whitespace tokens with a space respelled as "▁"s, merges ranked by file order (not
//            the scores), spaces → "▁" by a normalizer with no prefix, `<unk>` for unknown pieces.
import Foundation

extension Tokenizer {
    static let supportedGGUFModels = ["gpt2", "llama"]

    /// transformers' `GGUF_PRE_TOKENIZER_SPLITS` families that use Llama-3's regex.
    static let llama3PreNames: Set<String> = ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                              "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"]
    /// Qwen2's regex (one digit per piece).
    static let qwen2PreNames: Set<String> = ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"]
    /// Families transformers splits with regexes not implemented here.
    static let unsupportedPreNames: Set<String> = ["tekken", "qwen35", "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"]

    public static func load(gguf: GGUFReader) throws -> Tokenizer {
        let path = gguf.path
        let md = gguf.metadata
        func strings(_ key: String) throws -> [String] {
            guard let v = md[key] else { throw TokenizerError.missingKey(path: path, key: key) }
            guard let a = v.arrayValue else { throw TokenizerError.malformed(path: path, key: key, detail: "expected an array of strings") }
            return try a.enumerated().map { i, e in
                guard let s = e.stringValue else { throw TokenizerError.malformed(path: path, key: "\(key)[\(i)]", detail: "expected a string") }
                return s
            }
        }
        func ints(_ key: String) throws -> [Int]? {
            guard let v = md[key] else { return nil }
            guard let a = v.arrayValue else { throw TokenizerError.malformed(path: path, key: key, detail: "expected an array of integers") }
            return try a.enumerated().map { i, e in
                guard let x = e.intValue else { throw TokenizerError.malformed(path: path, key: "\(key)[\(i)]", detail: "expected an integer") }
                return x
            }
        }
        func optionalInt(_ key: String) throws -> Int? {
            guard let v = md[key] else { return nil }
            guard let x = v.intValue else { throw TokenizerError.malformed(path: path, key: key, detail: "expected an integer") }
            return x
        }
        func optionalBool(_ key: String) throws -> Bool? {
            guard let v = md[key] else { return nil }
            guard let b = v.boolValue ?? v.intValue.map({ $0 != 0 }) else { throw TokenizerError.malformed(path: path, key: key, detail: "expected a bool") }
            return b
        }

        guard let modelName = md["tokenizer.ggml.model"]?.stringValue else {
            throw TokenizerError.missingKey(path: path, key: "tokenizer.ggml.model")
        }
        guard supportedGGUFModels.contains(modelName) else {
            throw TokenizerError.unsupportedType(path: path, key: "tokenizer.ggml.model", value: modelName, supported: supportedGGUFModels)
        }
        let architecture = md["general.architecture"]?.stringValue ?? ""
        if modelName == "llama", architecture == "phi3" {
            throw TokenizerError.unsupportedOption(path: path, key: "general.architecture", value: architecture,
                                                   detail: "transformers rebuilds this SentencePiece vocabulary differently; load its tokenizer.json instead")
        }
        let gemma = modelName == "llama" && ["gemma", "gemma2", "gemma3"].contains(architecture)

        let rawTokens = try strings("tokenizer.ggml.tokens")
        let tokenTypes = try ints("tokenizer.ggml.token_type") ?? []
        let byteLevel = modelName == "gpt2"

        // Vocabulary (a later duplicate wins, as in a Python dict comprehension). Gemma files store
        // a token of spaces as real spaces, which its normalizer never lets BPE see: "▁"s instead.
        let tokens: [String]
        if byteLevel {
            tokens = rawTokens.map { ByteLevelAlphabet.isInAlphabet($0) ? $0 : ByteLevelAlphabet.encode($0) }
        } else if gemma {
            tokens = rawTokens.map { t in
                t.unicodeScalars.contains(" ") && t.unicodeScalars.allSatisfy(\.properties.isWhitespace)
                    ? String(repeating: "\u{2581}", count: t.unicodeScalars.count) : t
            }
        } else {
            tokens = rawTokens
        }
        var vocab: [TokenKey: Int] = [:]
        vocab.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() { vocab[TokenKey(t)] = i }

        let merges: [(String, String)]
        if md["tokenizer.ggml.merges"] != nil {
            merges = try strings("tokenizer.ggml.merges").enumerated().map { i, m in
                let parts = m.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw TokenizerError.malformed(path: path, key: "tokenizer.ggml.merges[\(i)]", detail: "expected \"left right\", found \"\(m)\"")
                }
                return (String(parts[0]), String(parts[1]))
            }
        } else if byteLevel {
            throw TokenizerError.missingKey(path: path, key: "tokenizer.ggml.merges")
        } else if gemma {
            // Gemma's scores do not follow its merge order; the file order does (best first).
            merges = generateMerges(tokens: tokens, scores: tokens.indices.map { -Double($0) }, vocab: vocab)
        } else {
            guard let v = md["tokenizer.ggml.scores"], let a = v.arrayValue else {
                throw TokenizerError.missingKey(path: path, key: "tokenizer.ggml.scores")
            }
            let scores = try a.enumerated().map { i, e -> Double in
                guard let d = e.doubleValue else { throw TokenizerError.malformed(path: path, key: "tokenizer.ggml.scores[\(i)]", detail: "expected a number") }
                return d
            }
            guard scores.count == tokens.count else {
                throw TokenizerError.malformed(path: path, key: "tokenizer.ggml.scores", detail: "\(scores.count) scores for \(tokens.count) tokens")
            }
            merges = generateMerges(tokens: tokens, scores: scores, vocab: vocab)
        }

        let model = try BPEModel(vocab: vocab, merges: merges, unkToken: gemma ? "<unk>" : nil, byteFallback: !byteLevel, fuseUnk: !byteLevel,
                                 ignoreMerges: false, path: path, key: "tokenizer.ggml")

        // Added tokens: CONTROL (3) as special (byte-level: only if spelled in the alphabet), the
        // special ids transformers names (bos/eos/unk/pad), and USER_DEFINED (4) as plain added tokens.
        var added: [AddedToken] = []
        var seen = Set<TokenKey>()
        func add(_ content: String, special: Bool) {
            let key = TokenKey(content)
            guard !seen.contains(key), let id = vocab[key] else { return }
            seen.insert(key)
            added.append(AddedToken(id: id, content: content, special: special))
        }
        for (i, t) in rawTokens.enumerated() where i < tokenTypes.count && tokenTypes[i] == 3 {
            if !byteLevel || ByteLevelAlphabet.isInAlphabet(t) { add(t, special: true) }
        }
        let bos = try optionalInt("tokenizer.ggml.bos_token_id")
        let eos = try optionalInt("tokenizer.ggml.eos_token_id")
        for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"] {
            if let id = try optionalInt(key), id >= 0, id < tokens.count { add(tokens[id], special: true) }
        }
        for (i, t) in rawTokens.enumerated() where i < tokenTypes.count && tokenTypes[i] == 4 { add(t, special: false) }
        added.sort { $0.id < $1.id }

        // BOS/EOS: transformers' default is BOS for SentencePiece vocabularies, nothing for byte-level.
        let addBos = (try optionalBool("tokenizer.ggml.add_bos_token")) ?? !byteLevel
        let addEos = (try optionalBool("tokenizer.ggml.add_eos_token")) ?? false
        let post = TemplateProcessor(prefix: addBos ? [bos].compactMap { $0 } : [], suffix: addEos ? [eos].compactMap { $0 } : [])

        let pre = md["tokenizer.ggml.pre"]?.stringValue ?? "default"
        var normalizer: Normalizer? = nil
        let preTokenizer: PreTokenizer
        let decoder: TokenDecoder
        let kind: String
        if gemma {
            normalizer = ReplaceNormalizer(literal: " ", content: "\u{2581}")
            preTokenizer = SplitPreTokenizer(literal: " ", behavior: .mergedWithPrevious)
            decoder = DecoderSequence(decoders: [
                ReplaceDecoder(normalizer: ReplaceNormalizer(literal: "\u{2581}", content: " ")), ByteFallbackDecoder(), FuseDecoder(),
            ])
            kind = "Gemma SentencePiece BPE with byte fallback (merges in file order)"
        } else if byteLevel {
            let noRegex = ByteLevelPreTokenizer(addPrefixSpace: false, useRegex: false)
            if llama3PreNames.contains(pre) {
                preTokenizer = PreTokenizerSequence(stages: [RegexSplit(scanner: Llama3Scanner()), noRegex])
            } else if qwen2PreNames.contains(pre) {
                preTokenizer = PreTokenizerSequence(stages: [RegexSplit(scanner: Llama3Scanner(maxDigits: 1)), noRegex])
            } else if unsupportedPreNames.contains(pre) {
                throw TokenizerError.unsupportedOption(path: path, key: "tokenizer.ggml.pre", value: pre,
                                                       detail: "this pre-tokenizer's regex is not implemented; load the model's tokenizer.json instead")
            } else {
                preTokenizer = ByteLevelPreTokenizer(addPrefixSpace: false, useRegex: true)
            }
            decoder = ByteLevelDecoder()
            kind = "byte-level BPE, \(pre) pre-tokenizer"
        } else {
            preTokenizer = MetaspacePreTokenizer(replacement: "\u{2581}", prepend: .first, splitOnReplacement: false)
            decoder = DecoderSequence(decoders: [
                ReplaceDecoder(normalizer: ReplaceNormalizer(literal: "\u{2581}", content: " ")),
                ByteFallbackDecoder(), FuseDecoder(), StripDecoder(content: " ", start: 1, stop: 0),
            ])
            kind = "SentencePiece BPE with byte fallback (from scores)"
        }
        return Tokenizer(normalizer: normalizer, preTokenizer: preTokenizer, model: model, postProcessor: post, decoder: decoder,
                         added: AddedVocabulary(added), cleanUpSpaces: false, bosTokenID: bos, eosTokenID: eos,
                         kind: kind + (addBos ? ", BOS added" : ", no BOS"), source: path)
    }

    /// transformers' `generate_merges(vocab, vocab_scores)`: every split of every token into two
    /// vocabulary tokens, grouped per token in vocabulary order (within a token by the ids of its
    /// halves), then stably sorted by (score, left length, right length), highest first.
    static func generateMerges(tokens: [String], scores: [Double], vocab: [TokenKey: Int]) -> [(String, String)] {
        // dict(zip(tokens, scores)): first position of each token, last score.
        var order: [String] = []
        var scoreOf: [TokenKey: Double] = [:]
        for (t, s) in zip(tokens, scores) {
            if scoreOf[TokenKey(t)] == nil { order.append(t) }
            scoreOf[TokenKey(t)] = s
        }
        struct Candidate { let left: String, right: String, score: Double, leftLen: Int, rightLen: Int, index: Int }
        var all: [Candidate] = []
        for t in order {
            let scalars = Array(t.unicodeScalars)
            guard scalars.count > 1 else { continue }
            var local: [(String, String, Int, Int, Int)] = []
            for k in 1..<scalars.count {
                var l = String.UnicodeScalarView(), r = String.UnicodeScalarView()
                l.append(contentsOf: scalars[..<k])
                r.append(contentsOf: scalars[k...])
                let ls = String(l), rs = String(r)
                if let il = vocab[TokenKey(ls)], let ir = vocab[TokenKey(rs)] { local.append((ls, rs, il, ir, k)) }
            }
            local.sort { ($0.2, $0.3) < ($1.2, $1.3) }
            for (ls, rs, _, _, k) in local {
                all.append(Candidate(left: ls, right: rs, score: scoreOf[TokenKey(t)]!, leftLen: k, rightLen: scalars.count - k, index: all.count))
            }
        }
        all.sort { a, b in
            if a.score != b.score { return a.score > b.score }
            if a.leftLen != b.leftLen { return a.leftLen > b.leftLen }
            if a.rightLen != b.rightLen { return a.rightLen > b.rightLen }
            return a.index < b.index
        }
        return all.map { ($0.left, $0.right) }
    }
}

/// A `Split` stage with a given scanner and `Isolated` behaviour (what transformers puts before
/// ByteLevel for GGUF pre-tokenizer families).
struct RegexSplit: PreTokenizer {
    let scanner: RegexScanner

    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        pieces.flatMap { piece -> [PreToken] in
            let scanned = ScannedText(piece.text)
            return split(piece, scanned, matches: scanner.matches(in: scanned), behavior: .isolated)
        }
    }
}
