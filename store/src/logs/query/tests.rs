//! Parser behaviour, error positions, robustness against garbage, and the key property:
//! the compiled tantivy query selects exactly the records `matches` selects, or a superset
//! of them when the query needs verification (phrases: the body has no positions).

use std::collections::BTreeSet;

use tantivy::collector::DocSetCollector;
use tantivy::{Index, IndexWriter, TantivyDocument};

use super::ast::{ExactField, Node, Pattern};
use super::*;
use crate::logs::schema::LogSchema;
use crate::logs::tokenizer;
use crate::traces::model::{SpanId, TraceId};

fn parse(q: &str) -> Node {
    match LogQuery::parse(q) {
        Ok(p) => p.root,
        Err(e) => panic!("{q:?} should parse: {e}"),
    }
}

fn err(q: &str) -> QueryError {
    match LogQuery::parse(q) {
        Ok(p) => panic!("{q:?} should not parse, got {:?}", p.root),
        Err(e) => e,
    }
}

fn term(t: &str) -> Node {
    Node::Body(vec![(0, Pattern::Exact(t.into()))])
}

fn phrase(ts: &[&str]) -> Node {
    Node::Body(
        ts.iter()
            .enumerate()
            .map(|(i, t)| (i, Pattern::Exact(t.to_string())))
            .collect(),
    )
}

#[test]
fn empty_and_star_match_everything() {
    for q in ["", "   ", "*", " * ", "(*)", "* OR error"] {
        assert_eq!(parse(q), Node::All, "{q:?}");
        assert!(LogQuery::parse(q).unwrap().is_all());
    }
    assert_eq!(parse("NOT *"), Node::Never);
    assert!(LogQuery::all().is_all());
    assert_eq!(LogQuery::all().source(), "");
    assert_eq!(LogQuery::parse("a  b").unwrap().source(), "a  b");
}

#[test]
fn words_are_tokenized_like_the_body() {
    assert_eq!(parse("Timeout"), term("timeout"));
    assert_eq!(parse("10.0.0.1"), phrase(&["10", "0", "0", "1"]));
    assert_eq!(parse("/api/v1/users"), phrase(&["api", "v1", "users"]));
    assert_eq!(parse("数据库"), phrase(&["数", "据", "库"]));
    assert_eq!(
        parse("\"connection refused\""),
        phrase(&["connection", "refused"])
    );
    assert_eq!(parse("body:\"User_ID=7\""), phrase(&["user_id", "7"]));
    let long = "x".repeat(100);
    assert_eq!(parse(&long), term(&"x".repeat(tokenizer::MAX_TOKEN_BYTES)));
}

#[test]
fn precedence_not_over_and_over_or() {
    let (a, b, c, d) = (term("a"), term("b"), term("c"), term("d"));
    assert_eq!(
        parse("a b OR c AND NOT d"),
        Node::Or(vec![
            Node::And(vec![a.clone(), b.clone()]),
            Node::And(vec![c.clone(), Node::Not(Box::new(d.clone()))]),
        ])
    );
    assert_eq!(
        parse("(a OR b) -c"),
        Node::And(vec![
            Node::Or(vec![a.clone(), b.clone()]),
            Node::Not(Box::new(c.clone()))
        ])
    );
    assert_eq!(parse("NOT NOT a"), a);
    assert_eq!(
        parse("-(a OR b)"),
        Node::Not(Box::new(Node::Or(vec![a, b])))
    );
    assert_eq!(parse("c AND d"), parse("c d"));
}

#[test]
fn wildcards() {
    let Node::Body(parts) = parse("timeout*") else {
        panic!()
    };
    assert!(matches!(&parts[..], [(0, Pattern::Glob(g))] if g.glob == "timeout*"));
    // `*` tokens at the ends ask for nothing; in the middle they skip a position.
    assert_eq!(parse("10.0.*"), phrase(&["10", "0"]));
    assert_eq!(
        parse("a.*.b"),
        Node::Body(vec![
            (0, Pattern::Exact("a".into())),
            (2, Pattern::Exact("b".into()))
        ])
    );
    assert_eq!(parse("body:*"), Node::BodyAny);
    let Node::Exact(ExactField::Service, Pattern::Glob(g)) = parse("service:check*") else {
        panic!()
    };
    assert_eq!(g.glob, "check*");
    // Quoted values are literal.
    assert_eq!(
        parse("service:\"a*\""),
        Node::Exact(ExactField::Service, Pattern::Exact("a*".into()))
    );
    assert_eq!(
        parse("attr.user_id:*"),
        Node::Exact(
            ExactField::Attr,
            Pattern::Glob(super::ast::Glob::new("user_id=*".into()))
        )
    );
}

#[test]
fn fields() {
    assert_eq!(
        parse("service:\"my svc\""),
        Node::Exact(ExactField::Service, Pattern::Exact("my svc".into()))
    );
    assert_eq!(
        parse("severity_text:WARN"),
        Node::Exact(ExactField::SeverityText, Pattern::Exact("warn".into()))
    );
    assert_eq!(
        parse("trace_id:4BF92F3577B34DA6A3CE929D0E0E4736"),
        Node::Exact(
            ExactField::TraceId,
            Pattern::Exact("4bf92f3577b34da6a3ce929d0e0e4736".into())
        )
    );
    assert_eq!(
        parse("attr.http.route:/api/v1"),
        Node::Exact(
            ExactField::Attr,
            Pattern::Exact("http.route=/api/v1".into())
        )
    );
    let long = "v".repeat(400);
    assert_eq!(
        parse(&format!("attr.k:{long}")),
        Node::Exact(
            ExactField::Attr,
            Pattern::Exact(crate::logs::schema::attr_term("k", &long))
        )
    );
}

#[test]
fn severity_comparisons() {
    let sev = |lo, hi| Node::Severity { lo, hi };
    assert_eq!(parse("severity:error"), sev(17, 20));
    assert_eq!(parse("level:WARNING"), sev(13, 16));
    assert_eq!(parse("severity>=warn"), sev(13, 255));
    assert_eq!(parse("severity>warn"), sev(17, 255));
    assert_eq!(parse("severity<info"), sev(0, 8));
    assert_eq!(parse("severity<=info"), sev(0, 12));
    assert_eq!(parse("severity>=17"), sev(17, 255));
    assert_eq!(parse("severity:9"), sev(9, 9));
    assert_eq!(parse("severity:fatal"), sev(21, 255));
    assert_eq!(parse("severity<0"), Node::Never);
    assert_eq!(parse("severity<unspecified"), Node::Never);
    assert_eq!(parse("severity>fatal"), Node::Never);
    assert_eq!(parse("severity:unspecified"), sev(0, 0));
}

#[test]
fn errors_name_the_problem_and_its_position() {
    let cases: &[(&str, usize, &str)] = &[
        ("(a OR b", 0, "unclosed `(`"),
        ("a OR b)", 6, "no matching `(`"),
        ("a (b (c)", 2, "unclosed `(`"),
        ("()", 0, "empty parentheses"),
        ("say \"hi", 4, "unclosed quote"),
        ("a AND", 2, "`AND` needs a term"),
        ("AND a", 0, "`AND` needs a term"),
        ("a OR OR b", 2, "`OR` needs a term"),
        ("a OR", 2, "`OR` needs a term"),
        ("x NOT", 2, "`NOT` needs a term"),
        ("a - b", 2, "`-` must be followed"),
        ("service:", 8, "empty value for `service`"),
        ("service:\"\"", 8, "empty value"),
        ("servce:checkout", 0, "unknown field `servce`"),
        ("a http://x", 2, "unknown field `http`"),
        ("severity:loud", 9, "unknown severity `loud`"),
        ("level>=25", 7, "out of range"),
        ("service>=a", 7, "only applies to severity"),
        ("trace_id:xyz", 9, "hex digits, found `x`"),
        ("trace_id:abc", 9, "must be 32 hex digits"),
        ("span_id:\"ab*\"", 11, "hex digits, found `*`"),
        ("attr.:x", 0, "`attr.` needs a key"),
        ("数据 ...", 3, "nothing to search for"),
        ("\"--\"", 0, "nothing to search for"),
    ];
    for &(q, pos, msg) in cases {
        let e = err(q);
        assert_eq!(e.position, pos, "{q:?}: {e}");
        assert!(e.message.contains(msg), "{q:?}: {e}");
        assert_eq!(e.to_string(), format!("{} at position {pos}", e.message));
    }
    let e = err("servce:x");
    for f in ["service", "severity", "level", "trace_id", "attr.<key>"] {
        assert!(e.message.contains(f), "{e}");
    }
    let deep = "(".repeat(1000) + "a" + &")".repeat(1000);
    assert!(err(&deep).message.contains("nests too deeply"));
    let nots = "NOT ".repeat(1000) + "a";
    assert!(err(&nots).message.contains("nests too deeply"));
    let dashes = "-".repeat(1000) + "a";
    assert!(err(&dashes).message.contains("nests too deeply"));
    assert!(err(&"a ".repeat(20_000)).message.contains("longer than"));
    assert!(err("*a??????????????????????????")
        .message
        .contains("too complex"));
}

#[test]
fn regex_syntax_in_values_is_literal() {
    // Characters that mean something to a regex are escaped: they match themselves.
    for q in [
        "service:a.b*",
        "service:x|y*",
        "attr.k:[a-z]+*",
        "service:^$\\*",
        "severity_text:w{2}*",
    ] {
        let query = LogQuery::parse(q).unwrap();
        let mut r = LogRecord {
            service: "aXb".into(),
            ..Default::default()
        };
        assert!(!query.matches(&r), "{q}");
        r.service = "a.b-x".into();
        assert_eq!(query.matches(&r), q == "service:a.b*", "{q}");
    }
}

// ---- matches() agrees with the index ----------------------------------------------------

fn rec(i: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: i,
        observed_unix_nano: i,
        ..Default::default()
    }
}

fn corpus() -> Vec<LogRecord> {
    let tid = |s: &str| TraceId::from_hex(s).ok();
    let sid = |s: &str| SpanId::from_hex(s).ok();
    let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut out = Vec::new();
    let mut push = |mut r: LogRecord| {
        r.time_unix_nano = out.len() as u64;
        out.push(r);
    };
    push(LogRecord {
        severity_number: 17,
        severity_text: "ERROR".into(),
        service: "checkout".into(),
        trace_id: tid("4bf92f3577b34da6a3ce929d0e0e4736"),
        span_id: sid("00f067aa0ba902b7"),
        body: "connection refused to 10.0.0.1:5432 after 3 retries".into(),
        resource: kv(&[
            ("service.name", "checkout"),
            ("k8s.pod.name", "checkout-7d9f"),
        ]),
        attributes: kv(&[("http.route", "/api/v1/orders"), ("user_id", "42")]),
        ..rec(0)
    });
    push(LogRecord {
        severity_number: 9,
        severity_text: "INFO".into(),
        service: "checkout".into(),
        body: "GET /api/v1/users 200 in 12ms".into(),
        attributes: kv(&[("http.route", "/api/v1/users"), ("http.status", "200")]),
        ..rec(0)
    });
    push(LogRecord {
        severity_number: 13,
        severity_text: "Warning".into(),
        service: "payment-svc".into(),
        trace_id: tid("0af7651916cd43dd8448eb211c80319c"),
        body: "Timeout while reading order-123 (timeouts=2)".into(),
        attributes: kv(&[("user_id", "7"), ("Region", "EU")]),
        ..rec(0)
    });
    push(LogRecord {
        severity_number: 21,
        severity_text: "FATAL".into(),
        service: "Checkout".into(),
        body: "数据库连接失败 user_id=42 重试".into(),
        resource: kv(&[("service.name", "Checkout")]),
        ..rec(0)
    });
    push(LogRecord {
        severity_number: 0,
        service: "my svc".into(),
        body: "".into(),
        ..rec(0)
    });
    push(LogRecord {
        severity_number: 5,
        severity_text: "debug".into(),
        service: "cart".into(),
        span_id: sid("1111111111111111"),
        body: format!("payload {} end\nsecond line", "Ab".repeat(50)),
        attributes: kv(&[("multi", "line\nvalue"), ("empty", ""), ("k=x", "y")]),
        ..rec(0)
    });
    push(LogRecord {
        severity_number: 16,
        severity_text: "WARN".into(),
        service: "cart".into(),
        body: "NullPointerException at com.example.Foo.bar(Foo.java:42) ... ---".into(),
        attributes: kv(&[("long", &"z".repeat(300))]),
        ..rec(0)
    });
    push(LogRecord {
        severity_number: 20,
        severity_text: "err".into(),
        service: "".into(),
        body: "ユーザー登録エラー: 서버 오류 😀 timeout".into(),
        ..rec(0)
    });
    push(LogRecord {
        severity_number: 24,
        body: "user_id".into(),
        service: "a.b-x".into(),
        ..rec(0)
    });
    push(LogRecord {
        severity_number: 12,
        severity_text: "notice".into(),
        service: "checkout-v2".into(),
        body: "... --- /// ...".into(),
        resource: kv(&[("service.name", "checkout-v2"), ("region", "eu")]),
        ..rec(0)
    });
    out
}

struct Fixture {
    records: Vec<LogRecord>,
    schema: LogSchema,
    reader: tantivy::IndexReader,
}

impl Fixture {
    fn new() -> Fixture {
        let records = corpus();
        let schema = LogSchema::new();
        let index = Index::create_in_ram(schema.schema.clone());
        tokenizer::register(&index);
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for r in &records {
            let mut doc = TantivyDocument::default();
            index_fields(&schema, r, &mut doc);
            writer.add_document(doc).unwrap();
        }
        writer.commit().unwrap();
        let reader = index.reader().unwrap();
        Fixture {
            records,
            schema,
            reader,
        }
    }

    /// Record numbers (their `time`) the index returns for `q`.
    fn index_hits(&self, q: &LogQuery) -> BTreeSet<u64> {
        let searcher = self.reader.searcher();
        let hits = searcher
            .search(q.to_tantivy(&self.schema).as_ref(), &DocSetCollector)
            .unwrap_or_else(|e| panic!("{:?}: search failed: {e}", q.source()));
        hits.into_iter()
            .map(|a| {
                let col = searcher
                    .segment_reader(a.segment_ord)
                    .fast_fields()
                    .u64("time")
                    .unwrap();
                col.first(a.doc_id).unwrap()
            })
            .collect()
    }

    fn matched(&self, q: &LogQuery) -> BTreeSet<u64> {
        self.records
            .iter()
            .filter(|r| q.matches(r))
            .map(|r| r.time_unix_nano)
            .collect()
    }

    fn check(&self, q: &str) -> BTreeSet<u64> {
        let query = LogQuery::parse(q).unwrap_or_else(|e| panic!("{q:?}: {e}"));
        let live = self.matched(&query);
        self.agree(&query, &live);
        live
    }

    /// The index selects exactly the matching records, or a superset of them when the
    /// query says it needs verification (the store then filters with `matches`).
    fn agree(&self, query: &LogQuery, live: &BTreeSet<u64>) {
        let index = self.index_hits(query);
        let q = query.source();
        if query.needs_verification() {
            assert!(
                index.is_superset(live),
                "{q:?}: index {index:?} misses matching records {live:?}"
            );
        } else {
            assert_eq!(live, &index, "{q:?}: matches vs index");
        }
    }
}

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

#[test]
fn matches_and_index_agree_on_a_corpus() {
    let f = Fixture::new();
    // (query, expected records)
    let cases: &[(&str, &[u64])] = &[
        ("", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ("*", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ("timeout", &[2, 7]),
        ("TIMEOUT", &[2, 7]),
        ("timeout*", &[2, 7]),
        ("time?ut", &[2, 7]),
        ("timeouts*", &[2]),
        ("*out", &[2, 7]),
        ("\"connection refused\"", &[0]),
        ("\"refused connection\"", &[]),
        ("10.0.0.1", &[0]),
        ("10.0.*", &[0]),
        ("10.*.0.1", &[0]),
        ("10.0.0.?", &[0]),
        ("/api/v1/users", &[1]),
        ("/api/v1/*", &[1]),
        ("数据库", &[3]),
        ("数据*", &[3]),
        ("\"连接失败\"", &[3]),
        ("失败 -数据", &[]),
        ("ユーザー", &[7]),
        ("서버", &[7]),
        ("user_id", &[3, 8]),
        ("user_id=42", &[3]),
        ("order-123", &[2]),
        ("order", &[2]),
        ("foo.java", &[6]),
        ("com.example.foo.bar", &[6]),
        (&format!("payload {}", "ab".repeat(50)), &[5]),
        (&"ab".repeat(32), &[5]),
        ("abab*", &[5]),
        ("second", &[5]),
        ("\"end second\"", &[5]),
        ("body:timeout", &[2, 7]),
        ("body:*", &[0, 1, 2, 3, 5, 6, 7, 8]),
        ("-body:*", &[4, 9]),
        ("service:checkout", &[0, 1]),
        ("service:Checkout", &[3]),
        ("service:check*", &[0, 1, 9]),
        ("service:?heckout", &[0, 1, 3]),
        ("service:\"my svc\"", &[4]),
        // An empty service name is indexed as the empty term.
        ("service:*", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ("-service:*", &[]),
        ("service:a.b*", &[8]),
        ("severity:error", &[0, 7]),
        ("level:error", &[0, 7]),
        ("severity>=warn", &[0, 2, 3, 6, 7, 8]),
        ("severity>warn", &[0, 3, 7, 8]),
        ("severity<info", &[4, 5]),
        ("severity<=info", &[1, 4, 5, 9]),
        ("severity:fatal", &[3, 8]),
        ("severity>=17", &[0, 3, 7, 8]),
        ("severity:16", &[6]),
        ("severity:unspecified", &[4]),
        ("severity<0", &[]),
        ("severity_text:error", &[0]),
        ("severity_text:WARN*", &[2, 6]),
        ("severity_text:*", &[0, 1, 2, 3, 5, 6, 7, 9]),
        ("trace_id:4bf92f3577b34da6a3ce929d0e0e4736", &[0]),
        ("trace_id:4BF92F3577B34DA6A3CE929D0E0E4736", &[0]),
        ("trace_id:0af7*", &[2]),
        ("trace_id:*", &[0, 2]),
        ("-trace_id:*", &[1, 3, 4, 5, 6, 7, 8, 9]),
        ("span_id:00f067aa0ba902b7", &[0]),
        ("span_id:1111*", &[5]),
        ("attr.user_id:42", &[0]),
        ("attr.user_id:*", &[0, 2]),
        ("attr.http.route:/api/*", &[0, 1]),
        ("attr.http.route:/api/v1/users", &[1]),
        ("attr.service.name:checkout", &[0]),
        ("attr.region:eu", &[9]),
        ("attr.Region:EU", &[2]),
        ("attr.region:EU", &[]),
        ("attr.multi:\"line\nvalue\"", &[5]),
        ("attr.multi:line*", &[5]),
        ("attr.empty:*", &[5]),
        ("attr.k:*", &[5]),
        (&format!("attr.long:{}", "z".repeat(300)), &[6]),
        ("attr.long:zzz*", &[6]),
        ("timeout OR refused", &[0, 2, 7]),
        ("timeout AND service:payment-svc", &[2]),
        ("timeout service:payment-svc", &[2]),
        ("timeout -service:payment-svc", &[7]),
        ("timeout NOT service:payment-svc", &[7]),
        ("NOT timeout", &[0, 1, 3, 4, 5, 6, 8, 9]),
        ("-severity>=warn", &[1, 4, 5, 9]),
        ("NOT (timeout OR service:cart)", &[0, 1, 3, 4, 8, 9]),
        ("timeout OR NOT severity>=warn", &[1, 2, 4, 5, 7, 9]),
        ("(service:checkout OR service:cart) severity>=warn", &[0, 6]),
        (
            "service:checkout OR service:cart severity>=warn",
            &[0, 1, 6],
        ),
        ("-timeout -severity:error -service:cart", &[1, 3, 4, 8, 9]),
        ("NOT *", &[]),
        ("user_id -\"user_id=42\"", &[8]),
        // phrases the token conjunction over-selects, alone, negated and combined
        ("\"refused to\"", &[0]),
        ("\"to refused\"", &[]),
        ("\"库数\"", &[]),
        ("-\"connection refused\"", &[1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ("NOT \"to refused\"", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ("\"connection refused\" OR timeout", &[0, 2, 7]),
        ("\"to refused\" OR timeout", &[2, 7]),
        ("10.0.0.1 -\"after 3\"", &[]),
        ("数据库 -\"库数\"", &[3]),
        ("NOT (\"to refused\" OR -timeout)", &[2, 7]),
    ];
    for &(q, want) in cases {
        assert_eq!(f.check(q), set(want), "{q:?}");
    }
}

#[test]
fn only_phrases_need_verification() {
    let needs = |q: &str| LogQuery::parse(q).unwrap().needs_verification();
    for q in [
        "",
        "timeout",
        "time?ut*",
        "service:checkout severity>=warn",
        "trace_id:0af7*",
        "attr.http.route:/api/*",
        "body:*",
        "a OR NOT b",
        "NOT *",
    ] {
        assert!(!needs(q), "{q:?}");
    }
    for q in [
        "\"connection refused\"",
        "10.0.0.1",
        "/api/v1/users",
        "数据库",
        "a.*.b",
        "NOT \"a b\"",
        "x OR (y -\"a b\")",
    ] {
        assert!(needs(q), "{q:?}");
    }
}

/// A tiny deterministic generator (xorshift), so the test needs no extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn garbage_never_panics_and_what_parses_agrees_with_the_index() {
    let f = Fixture::new();
    // Pieces that exercise every lexer and parser path, multi-byte text included.
    let pieces = [
        " ",
        " ",
        " ",
        "(",
        ")",
        "\"",
        "\\",
        "-",
        "*",
        "?",
        ":",
        ">",
        "<",
        ">=",
        "=",
        "AND",
        "OR",
        "NOT",
        "timeout",
        "user_id",
        "42",
        "10.0.0.1",
        "/api/",
        "数据库",
        "失败",
        "서버",
        "😀",
        "é",
        "\u{0}",
        "\n",
        "service:",
        "level:",
        "severity>=",
        "severity_text:",
        "trace_id:",
        "span_id:",
        "body:",
        "attr.user_id:",
        "attr.http.route:",
        "attr.",
        "checkout",
        "check*",
        "warn",
        "error",
        "17",
        "4bf9",
        "*out",
        "t?me",
        "[a-z]",
        "$",
        "^",
        "|",
        "{2}",
        "+",
        ".",
        "\\\"",
        "x:y",
        "ab",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    for _ in 0..4000 {
        let mut q = String::new();
        for _ in 0..1 + rng.below(12) {
            q.push_str(pieces[rng.below(pieces.len())]);
        }
        if let Ok(query) = LogQuery::parse(&q) {
            parsed += 1;
            f.agree(&query, &f.matched(&query));
        }
    }
    assert!(parsed > 500, "only {parsed} of the random queries parsed");
    // Raw random characters, including ones outside the BMP and lone controls.
    for _ in 0..4000 {
        let q: String = (0..rng.below(40))
            .filter_map(|_| {
                let c = match rng.below(4) {
                    0 => rng.below(0x80) as u32,
                    1 => 0x20 + rng.below(0x60) as u32,
                    2 => rng.below(0x3_0000) as u32,
                    _ => 0x4E00 + rng.below(0x100) as u32,
                };
                char::from_u32(c)
            })
            .collect();
        if let Ok(query) = LogQuery::parse(&q) {
            f.agree(&query, &f.matched(&query));
        }
    }
}
