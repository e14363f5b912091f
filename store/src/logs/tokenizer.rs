//! The body tokenizer ([`BODY_TOKENIZER`]): one pass over the text, no regex, no allocation
//! beyond the token's own text buffer.
//!
//! Rules (the query language tokenizes search words with the same code, so a word finds
//! what the index holds):
//! * a token is a run of letters, digits and `_` (`user_id` stays whole); everything else
//!   separates: `10.0.0.1` is `10 0 0 1`, `/api/v1/users` is `api v1 users`, `order-123` is
//!   `order 123`;
//! * tokens are lower-cased (Unicode lower case; ASCII on a fast path);
//! * each CJK character (Han, Hiragana, Katakana, Hangul) is a token of its own, so a CJK
//!   word is a phrase of its characters (`数据库` is `数 据 库` at consecutive positions);
//! * a token longer than [`MAX_TOKEN_BYTES`] is cut to its first `MAX_TOKEN_BYTES` bytes (at
//!   a character boundary) rather than dropped: long ids stay findable by their first 64
//!   bytes and positions stay consecutive.

use tantivy::tokenizer::{TextAnalyzer, Token, TokenStream, Tokenizer};

use super::schema::BODY_TOKENIZER;

/// Tokens are cut to this many bytes (of their lower-cased text).
pub const MAX_TOKEN_BYTES: usize = 64;

/// Registers the body tokenizer on an index under [`BODY_TOKENIZER`]. Call it on every index
/// created or opened with [`LogSchema`](super::schema::LogSchema), before indexing or
/// searching.
pub fn register(index: &tantivy::Index) {
    index.tokenizers().register(BODY_TOKENIZER, analyzer());
}

/// The body analyzer, for code that tokenizes outside an index.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::from(BodyTokenizer::default())
}

/// The tokenizer behind [`BODY_TOKENIZER`].
#[derive(Clone, Default)]
pub struct BodyTokenizer {
    token: Token,
}

impl Tokenizer for BodyTokenizer {
    type TokenStream<'a> = BodyTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> BodyTokenStream<'a> {
        self.token.reset();
        BodyTokenStream {
            scanner: Scanner::new(text, false),
            token: &mut self.token,
        }
    }
}

/// Token stream of [`BodyTokenizer`].
pub struct BodyTokenStream<'a> {
    scanner: Scanner<'a>,
    token: &'a mut Token,
}

impl TokenStream for BodyTokenStream<'_> {
    fn advance(&mut self) -> bool {
        self.token.text.clear();
        match self.scanner.next_into(&mut self.token.text) {
            Some((from, to)) => {
                self.token.offset_from = from;
                self.token.offset_to = to;
                self.token.position = self.token.position.wrapping_add(1);
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// Calls `each` with every token of `text`, in order (positions are the call index).
pub fn for_each_token(text: &str, mut each: impl FnMut(&str)) {
    let mut scanner = Scanner::new(text, false);
    let mut buf = String::new();
    while scanner.next_into(&mut buf).is_some() {
        each(&buf);
        buf.clear();
    }
}

/// The tokens of `text`.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |t| out.push(t.to_string()));
    out
}

/// The tokens of a search word, where `*` and `?` count as word characters (a wildcard
/// stays inside its token: `timeout*` is one pattern token). Tokens holding a wildcard are
/// not cut to [`MAX_TOKEN_BYTES`]; the others are, exactly as the body tokenizer cuts.
pub(crate) fn pattern_tokens(text: &str) -> Vec<String> {
    let mut scanner = Scanner::new(text, true);
    let mut out = Vec::new();
    let mut buf = String::new();
    while scanner.next_into(&mut buf).is_some() {
        out.push(std::mem::take(&mut buf));
    }
    out
}

/// Cuts `s` to at most [`MAX_TOKEN_BYTES`] bytes at a character boundary.
pub(crate) fn cut(s: &mut String) {
    if s.len() > MAX_TOKEN_BYTES {
        let mut end = MAX_TOKEN_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The scanner shared by the index and the query side. `wildcards` makes `*` and `?` word
/// characters and switches the length cut off (the query side cuts literal tokens itself).
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    wildcards: bool,
}

/// What a character is to the tokenizer.
#[derive(PartialEq)]
enum Class {
    Separator,
    Word,
    Cjk,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, wildcards: bool) -> Self {
        Scanner {
            text,
            pos: 0,
            wildcards,
        }
    }

    /// Appends the next token's text to `out` (which the caller cleared) and returns its
    /// byte range in the input, or `None` at the end. ASCII bytes take a fast path that
    /// never decodes a character.
    fn next_into(&mut self, out: &mut String) -> Option<(usize, usize)> {
        let bytes = self.text.as_bytes();
        let mut i = self.pos;
        // Skip separators; a CJK character is a whole token.
        let start = loop {
            let Some(&b) = bytes.get(i) else {
                self.pos = i;
                return None;
            };
            if b.is_ascii() {
                if self.ascii_word(b) {
                    break i;
                }
                i += 1;
                continue;
            }
            let c = self.text[i..].chars().next()?;
            match class(c) {
                Class::Separator => i += c.len_utf8(),
                Class::Word => break i,
                Class::Cjk => {
                    push_lower(out, c);
                    self.pos = i + c.len_utf8();
                    return Some((i, self.pos));
                }
            }
        };
        let cut_tokens = !self.wildcards;
        let mut full = false;
        while let Some(&b) = bytes.get(i) {
            if b.is_ascii() {
                if !self.ascii_word(b) {
                    break;
                }
                if !full {
                    if cut_tokens && out.len() >= MAX_TOKEN_BYTES {
                        full = true;
                    } else {
                        out.push(char::from(b.to_ascii_lowercase()));
                    }
                }
                i += 1;
                continue;
            }
            let Some(c) = self.text[i..].chars().next() else {
                break;
            };
            if class(c) != Class::Word {
                break;
            }
            push_word_char(out, c, cut_tokens, &mut full);
            i += c.len_utf8();
        }
        self.pos = i;
        Some((start, i))
    }

    fn ascii_word(&self, b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || (self.wildcards && (b == b'*' || b == b'?'))
    }
}

/// What a non-ASCII character is to the tokenizer.
fn class(c: char) -> Class {
    if !c.is_alphanumeric() {
        Class::Separator
    } else if is_cjk(c) {
        Class::Cjk
    } else {
        Class::Word
    }
}

/// Appends the lower case of `c` unless the token is already at its length cut.
fn push_word_char(out: &mut String, c: char, cut_tokens: bool, full: &mut bool) {
    if *full {
        return;
    }
    let before = out.len();
    push_lower(out, c);
    if cut_tokens && out.len() > MAX_TOKEN_BYTES {
        // This character crossed the cut: drop it (and the rest of the word).
        out.truncate(before);
        *full = true;
    }
}

fn push_lower(out: &mut String, c: char) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
    } else {
        out.extend(c.to_lowercase());
    }
}

/// Han, Hiragana, Katakana and Hangul (the caller has checked the character is a letter or
/// digit, which leaves out the blocks' punctuation such as `・`).
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF     // Hangul Jamo
        | 0x2E80..=0x2FDF   // CJK radicals, Kangxi radicals
        | 0x3005..=0x3007   // 々 〆 〇
        | 0x3021..=0x3029   // Hangzhou numerals
        | 0x3031..=0x3035   // kana repeat marks
        | 0x3038..=0x303C
        | 0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3130..=0x318F   // Hangul compatibility Jamo
        | 0x31F0..=0x31FF   // Katakana phonetic extensions
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xA960..=0xA97F   // Hangul Jamo extended A
        | 0xAC00..=0xD7FF   // Hangul syllables, Jamo extended B
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF66..=0xFFDC   // halfwidth Katakana and Hangul
        | 0x1B000..=0x1B16F // kana supplement and extended
        | 0x20000..=0x323AF // CJK extensions B-H, compatibility supplement
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<String> {
        tokens(text)
    }

    /// Tokens with positions and offsets through tantivy's analyzer.
    fn analyzed(text: &str) -> Vec<(usize, String, usize, usize)> {
        let mut a = analyzer();
        let mut stream = a.token_stream(text);
        let mut out = Vec::new();
        stream.process(&mut |t: &Token| {
            out.push((t.position, t.text.clone(), t.offset_from, t.offset_to))
        });
        out
    }

    #[test]
    fn identifiers_stay_whole_and_lower_case() {
        assert_eq!(toks("User_ID=42 GetUser"), ["user_id", "42", "getuser"]);
        assert_eq!(toks("order-123"), ["order", "123"]);
        assert_eq!(toks("NullPointerException"), ["nullpointerexception"]);
    }

    #[test]
    fn paths_and_ips_split_on_punctuation() {
        assert_eq!(
            toks("GET /api/v1/users?id=7"),
            ["get", "api", "v1", "users", "id", "7"]
        );
        assert_eq!(
            toks("from 10.0.0.1:8080"),
            ["from", "10", "0", "0", "1", "8080"]
        );
        assert_eq!(toks("fe80::1%eth0"), ["fe80", "1", "eth0"]);
    }

    #[test]
    fn hex_ids() {
        assert_eq!(
            toks("trace=4BF92F3577B34DA6A3CE929D0E0E4736"),
            ["trace", "4bf92f3577b34da6a3ce929d0e0e4736"]
        );
        assert_eq!(toks("0xDEADbeef"), ["0xdeadbeef"]);
    }

    #[test]
    fn cjk_characters_are_tokens_of_their_own() {
        assert_eq!(
            toks("数据库连接失败"),
            ["数", "据", "库", "连", "接", "失", "败"]
        );
        assert_eq!(
            toks("用户user_42登录失败: timeout"),
            ["用", "户", "user_42", "登", "录", "失", "败", "timeout"]
        );
        assert_eq!(toks("エラー発生"), ["エ", "ラ", "ー", "発", "生"]);
        assert_eq!(toks("서버 오류"), ["서", "버", "오", "류"]);
        // The Katakana middle dot is punctuation, not a token.
        assert_eq!(toks("データ・ベース"), ["デ", "ー", "タ", "ベ", "ー", "ス"]);
        let a = analyzed("db数据");
        assert_eq!(
            a,
            [
                (0, "db".to_string(), 0, 2),
                (1, "数".to_string(), 2, 5),
                (2, "据".to_string(), 5, 8)
            ]
        );
    }

    #[test]
    fn other_scripts_are_words() {
        assert_eq!(toks("Ошибка соединения"), ["ошибка", "соединения"]);
        assert_eq!(toks("Größe ÉTAT"), ["größe", "état"]);
    }

    #[test]
    fn long_tokens_are_cut_at_a_character_boundary() {
        let long = "a".repeat(100);
        assert_eq!(toks(&format!("x {long} y")), ["x", &"a".repeat(64), "y"]);
        // 2-byte characters: 32 fit exactly; 3-byte ones: 21 (63 bytes).
        assert_eq!(toks(&"é".repeat(40)), ["é".repeat(32)]);
        assert_eq!(toks(&"ก".repeat(40)), ["ก".repeat(21)]);
        let a = analyzed(&format!("{long} z"));
        assert_eq!(a[0].2..a[0].3, 0..100, "offsets cover the whole word");
        assert_eq!(a[1].0, 1);
    }

    #[test]
    fn empty_and_separator_only_input() {
        assert!(toks("").is_empty());
        assert!(toks("  ... --- /// \t\n").is_empty());
        assert!(analyzed("").is_empty());
    }

    #[test]
    fn odd_input_does_not_confuse_the_scanner() {
        assert_eq!(toks("\u{FFFD}bad\u{FFFD}utf8"), ["bad", "utf8"]);
        assert_eq!(toks("a\u{0}b\u{7f}c"), ["a", "b", "c"]);
        assert_eq!(toks("😀emoji😀 ok"), ["emoji", "ok"]);
        // Lower-casing that changes the length (U+0130 becomes two characters).
        assert_eq!(toks("İstanbul"), ["i\u{307}stanbul"]);
        let positions: Vec<usize> = analyzed("a b c 数 d").iter().map(|t| t.0).collect();
        assert_eq!(positions, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn pattern_tokens_keep_wildcards() {
        assert_eq!(pattern_tokens("Timeout*"), ["timeout*"]);
        assert_eq!(pattern_tokens("10.0.*.?"), ["10", "0", "*", "?"]);
        assert_eq!(pattern_tokens("数据*"), ["数", "据", "*"]);
        let long = "b".repeat(80);
        assert_eq!(
            pattern_tokens(&long),
            vec![long],
            "the query side cuts literals"
        );
    }
}
