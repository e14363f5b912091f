//! What the searches need to check answers exactly, counted while generating: lines with
//! each query word and static phrase (tokenised as Lookout's body tokenizer does), lines per
//! rare coupon word, and seeded samples of finished traces and orders with their line counts.

use std::collections::HashMap;

use serde::Serialize;

use super::Rng;

/// Query words for the term benchmark: words of the message prose and of the formats, from
/// very common (`get`, `info`) to rare (`deadlock`). Counted exactly while generating.
pub const COMMON_WORDS: [&str; 40] = [
    "timeout",
    "refused",
    "declined",
    "retrying",
    "deadlock",
    "exception",
    "reserved",
    "expired",
    "invalid",
    "locked",
    "evicted",
    "rebalanced",
    "throttled",
    "exhausted",
    "slow",
    "authorized",
    "captured",
    "failed",
    "miss",
    "placed",
    "confirmed",
    "unexpectedly",
    "conflict",
    "get",
    "post",
    "error",
    "warn",
    "info",
    "healthz",
    "mozilla",
    "stripe",
    "checkout",
    "eur",
    "quote",
    "label",
    "candidates",
    "session",
    "password",
    "idempotency",
    "gc",
];

/// Static phrases for the phrase benchmark (as the user types them; Lookout tokenises them).
pub const STATIC_PHRASES: [&str; 20] = [
    "connection refused",
    "card declined by issuer",
    "upstream timeout",
    "stock reserved",
    "cache miss for product",
    "placed for user",
    "slow query detected",
    "redis pool exhausted",
    "login failed",
    "db pool stats",
    "payment authorized",
    "label created",
    "GET /api/v1/products",
    "java.lang.IllegalStateException",
    "kube-probe",
    "consumer group rebalanced",
    "GC pause",
    "验证码",
    "运营商接口超时",
    "余额不足",
];

/// Words of the rare vocabulary (coupon codes): each appears only in the coupon line.
pub const RARE_WORDS: usize = 4_000;

/// Lower-cased tokens of `text`, split as Lookout's body tokenizer splits: runs of ASCII
/// letters, digits and `_`; each CJK character on its own; everything else separates.
pub fn tokens(text: &str, mut f: impl FnMut(&str)) {
    let mut buf = String::with_capacity(32);
    let mut utf8 = [0u8; 4];
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            buf.push(c.to_ascii_lowercase());
            continue;
        }
        if !buf.is_empty() {
            f(&buf);
            buf.clear();
        }
        if is_cjk(c) {
            f(c.encode_utf8(&mut utf8));
        }
    }
    if !buf.is_empty() {
        f(&buf);
    }
}

/// Han, Hiragana, Katakana and Hangul, as the body tokenizer treats them.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0x20000..=0x2FFFF) // extensions B-F
}

/// The rare vocabulary: pronounceable made-up words, distinct, none a common word.
pub fn rare_vocabulary() -> Vec<String> {
    const ONSETS: [&str; 16] = [
        "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr",
    ];
    const VOWELS: [&str; 6] = ["a", "e", "i", "o", "u", "ai"];
    const CODAS: [&str; 5] = ["", "n", "r", "l", "x"];
    let mut rng = Rng::new(0x7a5e_b0c1);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(RARE_WORDS);
    while out.len() < RARE_WORDS {
        let mut w = String::new();
        for _ in 0..3 {
            w.push_str(ONSETS[rng.below(ONSETS.len() as u64) as usize]);
            w.push_str(VOWELS[rng.below(VOWELS.len() as u64) as usize]);
            w.push_str(CODAS[rng.below(CODAS.len() as u64) as usize]);
        }
        if !COMMON_WORDS.contains(&w.as_str()) && seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

/// The rare word with this index (the vocabulary is built once).
pub(super) fn rare_word_at(i: usize) -> &'static str {
    static VOCAB: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    VOCAB.get_or_init(rare_vocabulary)[i].as_str()
}

/// A sampled trace or order: its id and how many lines mention it.
#[derive(Clone, Debug, Serialize)]
pub struct Sampled<T> {
    pub id: T,
    pub lines: u32,
    /// Time of its first line.
    pub first_unix_nano: u64,
}

/// Reservoir sampling (algorithm R), seeded.
#[derive(Clone)]
pub struct Reservoir<T> {
    pub items: Vec<T>,
    pub seen: u64,
    cap: usize,
    rng: Rng,
}

impl<T> Reservoir<T> {
    pub fn new(cap: usize, seed: u64) -> Self {
        Reservoir {
            items: Vec::with_capacity(cap),
            seen: 0,
            cap,
            rng: Rng::new(seed),
        }
    }

    pub fn offer(&mut self, item: T) {
        self.seen += 1;
        if self.items.len() < self.cap {
            self.items.push(item);
        } else {
            let j = self.rng.below(self.seen) as usize;
            if j < self.cap {
                self.items[j] = item;
            }
        }
    }
}

/// Exact counts for checking search answers (see the module docs).
pub struct Tally {
    /// Token -> vocabulary id: the common words, then the words of the static phrases, then
    /// the rare words.
    vocab: HashMap<String, u32>,
    words: Vec<String>,
    /// Lines containing each vocabulary word.
    pub word_lines: Vec<u64>,
    /// Static phrases as token-id sequences, by first token.
    phrases: Vec<Vec<u32>>,
    phrases_by_first: HashMap<u32, Vec<usize>>,
    pub phrase_lines: Vec<u64>,
    rare_base: u32,
    pub traces: Reservoir<Sampled<[u8; 16]>>,
    pub orders: Reservoir<Sampled<u64>>,
    // per-line scratch
    line_ids: Vec<u32>,
    seen: Vec<u32>,
}

/// Sampled traces and orders kept for the queries.
pub const SAMPLE: usize = 2_000;

impl Tally {
    pub fn new(seed: u64) -> Self {
        let mut vocab = HashMap::new();
        let mut words = Vec::new();
        let add = |w: &str, vocab: &mut HashMap<String, u32>, words: &mut Vec<String>| {
            *vocab.entry(w.to_string()).or_insert_with(|| {
                words.push(w.to_string());
                (words.len() - 1) as u32
            })
        };
        for w in COMMON_WORDS {
            add(w, &mut vocab, &mut words);
        }
        let mut phrases = Vec::new();
        let mut phrases_by_first: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, p) in STATIC_PHRASES.iter().enumerate() {
            let mut ids = Vec::new();
            tokens(p, |t| ids.push(add(t, &mut vocab, &mut words)));
            phrases_by_first.entry(ids[0]).or_default().push(i);
            phrases.push(ids);
        }
        let rare_base = words.len() as u32;
        for w in rare_vocabulary() {
            add(&w, &mut vocab, &mut words);
        }
        let n = words.len();
        Tally {
            vocab,
            words,
            word_lines: vec![0; n],
            phrase_lines: vec![0; phrases.len()],
            phrases,
            phrases_by_first,
            rare_base,
            traces: Reservoir::new(SAMPLE, seed ^ 0x7ace),
            orders: Reservoir::new(SAMPLE, seed ^ 0x0dde),
            line_ids: Vec::with_capacity(64),
            seen: Vec::with_capacity(16),
        }
    }

    /// Counts one line.
    pub fn line(&mut self, text: &str) {
        self.line_ids.clear();
        self.seen.clear();
        let (vocab, ids) = (&self.vocab, &mut self.line_ids);
        tokens(text, |t| {
            ids.push(vocab.get(t).copied().unwrap_or(u32::MAX))
        });
        for &id in &self.line_ids {
            if id != u32::MAX && !self.seen.contains(&id) {
                self.seen.push(id);
                self.word_lines[id as usize] += 1;
            }
        }
        let mut matched: [bool; STATIC_PHRASES.len()] = [false; STATIC_PHRASES.len()];
        for (i, id) in self.line_ids.iter().enumerate() {
            let Some(candidates) = self.phrases_by_first.get(id) else {
                continue;
            };
            for &p in candidates {
                let seq = &self.phrases[p];
                if !matched[p] && self.line_ids[i..].starts_with(seq) {
                    matched[p] = true;
                    self.phrase_lines[p] += 1;
                }
            }
        }
    }

    pub fn common_word_lines(&self, i: usize) -> u64 {
        self.word_lines[i]
    }

    pub fn rare_word(&self, i: usize) -> (&str, u64) {
        let id = self.rare_base as usize + i;
        (&self.words[id], self.word_lines[id])
    }

    pub fn rare_words(&self) -> usize {
        self.words.len() - self.rare_base as usize
    }
}

#[cfg(test)]
mod tests {
    use super::super::hex;
    use super::super::tests::corpus;
    use super::*;

    #[test]
    fn tokens_split_like_the_body_tokenizer() {
        let mut v = Vec::new();
        tokens(
            "GET /api/v1/users 10.0.0.1 user_id=U-42 订单已发货 ok",
            |t| v.push(t.to_string()),
        );
        assert_eq!(
            v,
            [
                "get", "api", "v1", "users", "10", "0", "0", "1", "user_id", "u", "42", "订", "单",
                "已", "发", "货", "ok"
            ]
        );
    }

    /// The tally's tokenizer and Lookout's body tokenizer agree on the whole corpus.
    #[test]
    fn tokens_agree_with_lookouts_tokenizer() {
        use tantivy::tokenizer::TokenStream;
        let (_, c) = corpus(13, 2_000_000);
        let mut analyzer = store::logs::tokenizer::analyzer();
        for m in &c.lines {
            let line = c.line(m);
            let mut ours = Vec::new();
            tokens(line, |t| ours.push(t.to_string()));
            let mut theirs = Vec::new();
            let mut ts = analyzer.token_stream(line);
            while ts.advance() {
                theirs.push(ts.token().text.clone());
            }
            assert_eq!(ours, theirs, "{line}");
        }
    }

    /// Recounts every tallied number by brute force on the finished corpus.
    #[test]
    fn tally_counts_are_exact() {
        let (g, c) = corpus(5, 12_000_000);
        let t = g.tally.as_ref().unwrap();
        let lines: Vec<Vec<String>> = c
            .lines
            .iter()
            .map(|m| {
                let mut v = Vec::new();
                tokens(c.line(m), |x| v.push(x.to_string()));
                v
            })
            .collect();
        let count_word = |w: &str| lines.iter().filter(|l| l.iter().any(|x| x == w)).count() as u64;
        let count_seq = |seq: &[String]| {
            lines
                .iter()
                .filter(|l| l.windows(seq.len()).any(|w| w == seq))
                .count() as u64
        };
        for (i, w) in COMMON_WORDS.iter().enumerate() {
            assert_eq!(t.common_word_lines(i), count_word(w), "word {w}");
        }
        let common_nonzero = (0..COMMON_WORDS.len())
            .filter(|&i| t.common_word_lines(i) > 0)
            .count();
        assert!(
            common_nonzero >= 35,
            "only {common_nonzero} common words occur"
        );
        for (i, p) in STATIC_PHRASES.iter().enumerate() {
            let mut seq = Vec::new();
            tokens(p, |x| seq.push(x.to_string()));
            assert_eq!(t.phrase_lines[i], count_seq(&seq), "phrase {p}");
            assert!(t.phrase_lines[i] > 0, "phrase {p} never occurs");
        }
        // rare words: the word count equals the count of its phrase `code <w> rejected`
        let mut seen_rare = 0;
        for i in 0..t.rare_words() {
            let (w, n) = t.rare_word(i);
            if n == 0 {
                continue;
            }
            seen_rare += 1;
            if seen_rare > 60 {
                break;
            }
            assert_eq!(n, count_word(w), "rare {w}");
            let seq = ["code".to_string(), w.to_string(), "rejected".to_string()];
            assert_eq!(n, count_seq(&seq), "rare phrase {w}");
        }
        assert!(seen_rare > 20);
        // sampled traces and orders: their line counts
        for s in t.traces.items.iter().take(200) {
            let n = c.lines.iter().filter(|m| m.trace_id == s.id).count() as u32;
            assert_eq!(n, s.lines, "trace {}", hex(&s.id));
            assert!((2..=12).contains(&n));
        }
        assert!(t.orders.items.len() > 50);
        for s in t.orders.items.iter().take(200) {
            let n = count_word(&s.id.to_string()) as u32;
            assert_eq!(n, s.lines, "order {}", s.id);
            assert!((2..=7).contains(&n), "order {} in {n} lines", s.id);
        }
    }

    #[test]
    fn reservoir_keeps_a_uniform_sample() {
        let mut r = Reservoir::new(100, 1);
        for i in 0..10_000u32 {
            r.offer(i);
        }
        assert_eq!(r.items.len(), 100);
        assert_eq!(r.seen, 10_000);
        let late = r.items.iter().filter(|&&i| i >= 5_000).count();
        assert!(
            (30..=70).contains(&late),
            "{late} of 100 from the second half"
        );
    }

    #[test]
    fn rare_vocabulary_is_distinct() {
        let v = rare_vocabulary();
        let set: std::collections::HashSet<_> = v.iter().collect();
        assert_eq!(set.len(), RARE_WORDS);
        assert!(v.iter().all(|w| w.chars().all(|c| c.is_ascii_lowercase())));
    }
}
