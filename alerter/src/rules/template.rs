//! Rule label and annotation templates: the subset of Go's `text/template` that real
//! Prometheus rule files use, with Prometheus's data and functions.
//!
//! Data, as Prometheus provides it: `$labels` / `.Labels`, `$value` / `.Value` (a float),
//! `$externalLabels` / `.ExternalLabels`, `$externalURL` / `.ExternalURL`.
//! Language: text and `{{ actions }}` with `{{-`/`-}}` trimming and `{{/* comments */}}`;
//! pipelines (`x | f a`), variables (`$x := ...`, `$x = ...`), field and map access
//! (`$labels.job`, `.Labels.job`), string/number/bool literals, parenthesised pipelines,
//! `if`/`else if`/`else`/`end`, `with`, `range` (over maps and lists, with `$k, $v :=`).
//! Functions: Go's `eq ne lt le gt ge and or not len index print printf println urlquery
//! html js` and Prometheus's `humanize humanize1024 humanizeDuration humanizePercentage
//! humanizeTimestamp toUpper toLower title match reReplaceAll safeHtml stripPort
//! stripDomain graphLink tableLink pathPrefix externalURL parseDuration`. `query` (and the
//! helpers over its results) parse but fail when expanded: evaluation does not run queries
//! from templates.
//!
//! A missing label is the empty string: Prometheus expands with `missingkey=zero` (checked
//! against promtool 2.42, which prints `[]` for `[{{ $labels.nope }}]`).

use std::collections::BTreeMap;

use store::timefmt::DateTime;

use crate::model::LabelSet;

/// Checks a template's syntax (rule files are checked at load time).
pub fn check(src: &str) -> Result<(), String> {
    parse(src).map(|_| ())
}

/// Expands `src` over an alert's labels and value, as Prometheus expands rule labels and
/// annotations.
pub fn expand(
    src: &str,
    labels: &LabelSet,
    value: f64,
    external_labels: &LabelSet,
    external_url: &str,
) -> Result<String, String> {
    Template::parse(src)?.expand(labels, value, external_labels, external_url)
}

/// A parsed template, for expanding the same text for many alerts.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// `None`: plain text without actions (the common case costs nothing).
    nodes: Option<Vec<Node>>,
    text: String,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        Ok(Template {
            nodes: if src.contains("{{") {
                Some(parse(src)?)
            } else {
                None
            },
            text: src.to_string(),
        })
    }

    pub fn expand(
        &self,
        labels: &LabelSet,
        value: f64,
        external_labels: &LabelSet,
        external_url: &str,
    ) -> Result<String, String> {
        let Some(nodes) = &self.nodes else {
            return Ok(self.text.clone());
        };
        let mut data = BTreeMap::new();
        data.insert("Labels".to_string(), Val::Map(to_map(labels)));
        data.insert(
            "ExternalLabels".to_string(),
            Val::Map(to_map(external_labels)),
        );
        data.insert(
            "ExternalURL".to_string(),
            Val::Str(external_url.to_string()),
        );
        data.insert("Value".to_string(), Val::Float(value));
        let dot = Val::Map(data);
        let mut ex = Exec {
            vars: vec![
                ("$".into(), dot.clone()),
                ("$labels".into(), Val::Map(to_map(labels))),
                ("$externalLabels".into(), Val::Map(to_map(external_labels))),
                ("$externalURL".into(), Val::Str(external_url.to_string())),
                ("$value".into(), Val::Float(value)),
            ],
            out: String::new(),
            external_url: external_url.to_string(),
            steps: 0,
        };
        ex.nodes(nodes, &dot)?;
        Ok(ex.out)
    }
}

fn to_map(l: &LabelSet) -> BTreeMap<String, Val> {
    l.iter()
        .map(|(k, v)| (k.clone(), Val::Str(v.clone())))
        .collect()
}

// ---------------------------------------------------------------- values

#[derive(Clone, Debug, PartialEq)]
enum Val {
    /// A missing map entry or field: prints `<no value>`.
    Missing,
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Map(BTreeMap<String, Val>),
}

impl Val {
    fn truth(&self) -> bool {
        match self {
            Val::Missing | Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::Map(m) => !m.is_empty(),
        }
    }

    /// Go's `%v`.
    fn print(&self) -> String {
        match self {
            Val::Missing => "<no value>".into(),
            Val::Nil => "<nil>".into(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => go_float_v(*f),
            Val::Str(s) => s.clone(),
            Val::Map(m) => {
                let items: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.print()))
                    .collect();
                format!("map[{}]", items.join(" "))
            }
        }
    }

    /// A number, as Prometheus's `convertToFloat` takes one (numbers and numeric strings).
    fn to_float(&self) -> Result<f64, String> {
        match self {
            Val::Int(i) => Ok(*i as f64),
            Val::Float(f) => Ok(*f),
            Val::Str(s) => parse_go_float(s),
            other => Err(format!("can't convert {} to float", other.type_name())),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Val::Missing => "invalid value",
            Val::Nil => "nil",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float64",
            Val::Str(_) => "string",
            Val::Map(_) => "map",
        }
    }
}

fn parse_go_float(s: &str) -> Result<f64, String> {
    let t = s.trim();
    match t {
        "NaN" | "nan" => return Ok(f64::NAN),
        "Inf" | "+Inf" | "inf" | "+inf" => return Ok(f64::INFINITY),
        "-Inf" | "-inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    t.parse::<f64>()
        .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))
}

// ---------------------------------------------------------------- Go number formatting

/// Decimal digits and exponent of `v` (finite, non-zero, positive): `d.ddd * 10^exp`,
/// shortest round-trip when `prec` is `None`, else rounded to `prec` significant digits.
fn digits(v: f64, prec: Option<usize>) -> (String, i32) {
    let s = match prec {
        None => format!("{v:e}"),
        Some(p) => format!("{:.*e}", p.saturating_sub(1), v),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// Go's `%e` exponent: sign and at least two digits.
fn go_exp(exp: i32) -> String {
    format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Go's `%g` with precision `prec` (`None`: shortest, as `%v` prints floats).
fn go_float_g(v: f64, prec: Option<usize>) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let prec = prec.map(|p| p.max(1));
    let (mut ds, exp) = digits(v.abs(), prec);
    // %g drops trailing zeros
    while ds.len() > 1 && ds.ends_with('0') {
        ds.pop();
    }
    // Go's strconv: shortest (`%v`) decides with precision 6; an explicit precision
    // larger than the digits needed decides with the digit count
    let eprec = match prec {
        None => 6,
        Some(p) => {
            let p = p as i32;
            if p > ds.len() as i32 && ds.len() as i32 > exp {
                ds.len() as i32
            } else {
                p
            }
        }
    };
    if exp < -4 || exp >= eprec {
        let (first, rest) = ds.split_at(1);
        let mant = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        return format!("{sign}{mant}{}", go_exp(exp));
    }
    // plain notation
    let body = if exp < 0 {
        format!("0.{}{}", "0".repeat((-exp - 1) as usize), ds)
    } else {
        let int_len = (exp + 1) as usize;
        if ds.len() <= int_len {
            format!("{ds}{}", "0".repeat(int_len - ds.len()))
        } else {
            format!("{}.{}", &ds[..int_len], &ds[int_len..])
        }
    };
    format!("{sign}{body}")
}

/// Go's `%v` of a float64.
fn go_float_v(v: f64) -> String {
    go_float_g(v, None)
}

/// Go's `%.{prec}e`.
fn go_float_e(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let s = format!("{:.*e}", prec, v);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    format!("{mant}{}", go_exp(exp.parse().unwrap_or(0)))
}

/// Go's `%.{prec}f`.
fn go_float_f(v: f64, prec: usize) -> String {
    special(v).unwrap_or_else(|| format!("{:.*}", prec, v))
}

// ---------------------------------------------------------------- Prometheus functions

fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_float_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_float_g(v, Some(4)))
}

fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_float_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_float_g(v, Some(4)))
}

fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return go_float_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_float_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let (sign, v) = if v < 0.0 { ("-", -v) } else { ("", v) };
        // Go's float-to-int64 conversion gives i64::MIN when out of range (amd64)
        let d = if v < 9.223_372_036_854_775e18 {
            v as i64
        } else {
            i64::MIN
        };
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_float_g(v, Some(4)))
        };
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_float_g(v, Some(4)))
}

/// Go's `time.Time.String()` of a Unix timestamp in seconds, in UTC, as Prometheus's
/// `humanizeTimestamp` prints it.
fn humanize_timestamp(v: f64) -> Result<String, String> {
    if !v.is_finite() {
        return Ok(go_float_g(v, Some(4)));
    }
    let ns = v * 1e9;
    if ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            go_float_v(v)
        ));
    }
    // Prometheus goes through model.Time: millisecond precision
    let ms_total = (ns as i64) / 1_000_000;
    let secs = ms_total.div_euclid(1000);
    let millis = ms_total.rem_euclid(1000);
    let date_time = DateTime::from_unix_secs(secs).format(' ');
    let frac = if millis == 0 {
        String::new()
    } else {
        format!(".{millis:03}").trim_end_matches('0').to_string()
    };
    Ok(format!("{date_time}{frac} +0000 UTC"))
}

/// Largest width or precision `printf` honours.
const MAX_FORMAT_WIDTH: usize = 1_000;

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %f %e %g %x %X %q %t %%`
/// with flags `-+ 0`, width and precision.
fn sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            // bounded: a template must not be able to allocate without limit
            prec = Some(p.parse::<usize>().unwrap_or(0).min(MAX_FORMAT_WIDTH));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let plus = flags.contains('+');
        let body = match (verb, arg) {
            ('v', Val::Float(f)) => go_float_v(*f),
            ('s', Val::Float(_) | Val::Int(_) | Val::Bool(_)) => {
                format!("%!s({}={})", arg.type_name(), arg.print())
            }
            ('v' | 's', v) => {
                let s = v.print();
                match (verb, prec) {
                    ('s', Some(p)) => s.chars().take(p).collect(),
                    _ => s,
                }
            }
            ('d', Val::Int(i)) => i.to_string(),
            ('d', Val::Float(f)) => format!("%!d(float64={})", go_float_v(*f)),
            ('f' | 'F', v) => match v.to_float() {
                Ok(f) => go_float_f(f, prec.unwrap_or(6)),
                Err(_) => format!("%!f({}={})", v.type_name(), v.print()),
            },
            ('e', v) => match v.to_float() {
                Ok(f) => go_float_e(f, prec.unwrap_or(6)),
                Err(_) => format!("%!e({}={})", v.type_name(), v.print()),
            },
            ('g', v) => match v.to_float() {
                Ok(f) => go_float_g(f, prec),
                Err(_) => format!("%!g({}={})", v.type_name(), v.print()),
            },
            ('x', Val::Int(i)) => format!("{i:x}"),
            ('X', Val::Int(i)) => format!("{i:X}"),
            ('x', Val::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('q', Val::Str(s)) => format!("{s:?}"),
            ('t', Val::Bool(b)) => b.to_string(),
            (verb, v) => format!("%!{verb}({}={})", v.type_name(), v.print()),
        };
        let body = if plus && !body.starts_with('-') && matches!(arg, Val::Int(_) | Val::Float(_)) {
            format!("+{body}")
        } else {
            body
        };
        let width: usize = width.parse::<usize>().unwrap_or(0).min(MAX_FORMAT_WIDTH);
        let len = body.chars().count();
        if len < width {
            let pad = width - len;
            if flags.contains('-') {
                out.push_str(&body);
                out.push_str(&" ".repeat(pad));
            } else if flags.contains('0') && matches!(arg, Val::Int(_) | Val::Float(_)) {
                let (sign, digits) = match body.strip_prefix(['-', '+']) {
                    Some(rest) => (&body[..1], rest),
                    None => ("", body.as_str()),
                };
                out.push_str(sign);
                out.push_str(&"0".repeat(pad));
                out.push_str(digits);
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(&body);
            }
        } else {
            out.push_str(&body);
        }
    }
    let extra: Vec<String> = args
        .map(|a| format!("{}={}", a.type_name(), a.print()))
        .collect();
    if !extra.is_empty() {
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

// ---------------------------------------------------------------- parsing

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Action(Pipe),
    If {
        branches: Vec<(Pipe, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Clone, Debug, PartialEq)]
struct Pipe {
    /// Variables declared (`:=`) or assigned (`=`).
    vars: Vec<String>,
    declare: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Arg {
    /// `$x.a.b`
    Var(String, Vec<String>),
    /// `.a.b` (empty: `.`)
    Field(Vec<String>),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Sub(Box<Pipe>, Vec<String>),
}

const FUNCS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "urlquery",
    "html",
    "js",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toUpper",
    "toLower",
    "title",
    "match",
    "reReplaceAll",
    "safeHtml",
    "stripPort",
    "stripDomain",
    "graphLink",
    "tableLink",
    "pathPrefix",
    "externalURL",
    "parseDuration",
    "query",
    "first",
    "label",
    "value",
    "sortByLabel",
    "strvalue",
    "args",
    "tmpl",
];

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Var(String),
    /// `.a` field segments following a value (`$x.a`, `.a.b`, `(...).a`)
    Field(String),
    Dot,
    Str(String),
    Num(String),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

/// Splits the source into text and action bodies, applying trim markers.
fn segments(src: &str) -> Result<Vec<(bool, String)>, String> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    let mut line = 1;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let (trim_left, body_start) = if after.starts_with("- ")
            || after.starts_with("-\t")
            || after.starts_with("-\n")
            || after.starts_with("-\r")
        {
            (true, 2)
        } else {
            (false, 0)
        };
        if trim_left {
            text = text.trim_end();
        }
        out.push((false, text.to_string()));
        line += rest[..open].matches('\n').count();
        let after = &after[body_start..];
        // find the closing delimiter outside string literals
        let close = find_close(after).ok_or_else(|| format!("{line}: unclosed action"))?;
        let mut body = &after[..close];
        let mut consumed = close + 2;
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            body = &body[..body.len() - 1];
            trim_next = true;
        } else if body == "-" {
            body = "";
            trim_next = true;
        }
        let _ = &mut consumed;
        out.push((true, body.to_string()));
        line += after[..close].matches('\n').count();
        rest = &after[consumed..];
    }
    let mut text = rest;
    if trim_next {
        text = text.trim_start();
    }
    out.push((false, text.to_string()));
    Ok(out)
}

fn find_close(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn lex(body: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = body.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                out.push(Tok::Assign);
                i += 1;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("unterminated quoted string".into());
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let Some(&e) = chars.get(i) else {
                                return Err("unterminated quoted string".into());
                            };
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '\\' => '\\',
                                '"' => '"',
                                '\'' => '\'',
                                other => return Err(format!("unknown escape sequence: \\{other}")),
                            });
                        }
                        '\n' => return Err("unterminated quoted string".into()),
                        c => s.push(c),
                    }
                }
                out.push(Tok::Str(s));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or("unterminated raw quoted string")?;
                out.push(Tok::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && ident(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Var(chars[start..i].iter().collect()));
            }
            '.' if chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && ident(chars[i]) {
                    i += 1;
                }
                if start == i {
                    out.push(Tok::Dot);
                } else {
                    out.push(Tok::Field(chars[start..i].iter().collect()));
                }
            }
            _ if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && chars
                        .get(i + 1)
                        .is_some_and(|c| c.is_ascii_digit() || *c == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            _ if ident(c) => {
                let start = i;
                while i < chars.len() && ident(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(out)
}

struct PipeParser {
    toks: Vec<Tok>,
    pos: usize,
    /// Variables in scope, so undefined ones are reported at parse time as Go does.
    scope: Vec<String>,
}

impl PipeParser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    /// `[$a[, $b] (:=|=)] cmd { | cmd }`
    fn pipe(&mut self, in_paren: bool) -> Result<Pipe, String> {
        let mut vars = Vec::new();
        let mut declare = false;
        // declarations
        let save = self.pos;
        let mut decl = Vec::new();
        while let Some(Tok::Var(v)) = self.peek().cloned() {
            self.pos += 1;
            decl.push(v);
            match self.peek() {
                Some(Tok::Comma) => {
                    self.pos += 1;
                }
                Some(Tok::Declare) | Some(Tok::Assign) => break,
                _ => {
                    decl.clear();
                    break;
                }
            }
        }
        match self.peek() {
            Some(Tok::Declare) if !decl.is_empty() => {
                self.pos += 1;
                declare = true;
                vars = decl;
            }
            Some(Tok::Assign) if !decl.is_empty() => {
                self.pos += 1;
                for v in &decl {
                    if !self.scope.contains(v) {
                        return Err(format!("undefined variable: {v}"));
                    }
                }
                vars = decl;
            }
            _ => self.pos = save,
        }
        let mut cmds = Vec::new();
        loop {
            let cmd = self.command()?;
            if cmd.is_empty() {
                return Err("missing value for command".into());
            }
            cmds.push(cmd);
            match self.peek() {
                Some(Tok::Pipe) => {
                    self.pos += 1;
                }
                Some(Tok::RParen) if in_paren => break,
                None => break,
                Some(t) => return Err(format!("unexpected {t:?} in operand")),
            }
        }
        if declare {
            self.scope.extend(vars.iter().cloned());
        }
        Ok(Pipe {
            vars,
            declare,
            cmds,
        })
    }

    fn fields(&mut self) -> Vec<String> {
        let mut f = Vec::new();
        while let Some(Tok::Field(name)) = self.peek().cloned() {
            self.pos += 1;
            f.push(name);
        }
        f
    }

    fn command(&mut self) -> Result<Vec<Arg>, String> {
        let mut args = Vec::new();
        while let Some(t) = self.peek().cloned() {
            let arg = match t {
                Tok::Pipe | Tok::RParen => break,
                Tok::Var(v) => {
                    self.pos += 1;
                    if !self.scope.contains(&v) {
                        return Err(format!("undefined variable {v:?}"));
                    }
                    Arg::Var(v, self.fields())
                }
                Tok::Field(_) => Arg::Field(self.fields()),
                Tok::Dot => {
                    self.pos += 1;
                    Arg::Field(Vec::new())
                }
                Tok::Str(s) => {
                    self.pos += 1;
                    Arg::Str(s)
                }
                Tok::Num(n) => {
                    self.pos += 1;
                    parse_number(&n)?
                }
                Tok::Ident(id) => {
                    self.pos += 1;
                    match id.as_str() {
                        "true" => Arg::Bool(true),
                        "false" => Arg::Bool(false),
                        "nil" => Arg::Nil,
                        _ if FUNCS.contains(&id.as_str()) => Arg::Func(id),
                        _ => return Err(format!("function {id:?} not defined")),
                    }
                }
                Tok::LParen => {
                    self.pos += 1;
                    let p = self.pipe(true)?;
                    if self.next() != Some(Tok::RParen) {
                        return Err("unclosed left paren".into());
                    }
                    Arg::Sub(Box::new(p), self.fields())
                }
                other => return Err(format!("unexpected {other:?} in command")),
            };
            args.push(arg);
        }
        Ok(args)
    }
}

fn parse_number(n: &str) -> Result<Arg, String> {
    if let Ok(i) = n.parse::<i64>() {
        return Ok(Arg::Int(i));
    }
    if let Some(hex) = n.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Ok(Arg::Int(i));
        }
    }
    n.parse::<f64>()
        .map(Arg::Float)
        .map_err(|_| format!("bad number syntax: {n:?}"))
}

/// Parses a template into its node tree.
fn parse(src: &str) -> Result<Vec<Node>, String> {
    let segs = segments(src)?;
    let mut items: Vec<Item> = Vec::new();
    let mut scope: Vec<String> = ["$", "$labels", "$externalLabels", "$externalURL", "$value"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (is_action, body) in segs {
        if !is_action {
            if !body.is_empty() {
                items.push(Item::Text(body));
            }
            continue;
        }
        let trimmed = body.trim();
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") {
                return Err("unclosed comment".into());
            }
            continue;
        }
        let toks = lex(trimmed)?;
        let keyword = match toks.first() {
            Some(Tok::Ident(k))
                if matches!(
                    k.as_str(),
                    "if" | "else"
                        | "end"
                        | "range"
                        | "with"
                        | "define"
                        | "template"
                        | "block"
                        | "break"
                        | "continue"
                ) =>
            {
                Some(k.clone())
            }
            _ => None,
        };
        let mut pp = PipeParser {
            toks,
            pos: 0,
            scope: std::mem::take(&mut scope),
        };
        let item = match keyword.as_deref() {
            None => {
                if pp.toks.is_empty() {
                    return Err("missing value for command".into());
                }
                Item::Action(pp.pipe(false)?)
            }
            Some("end") => {
                if pp.toks.len() > 1 {
                    return Err("unexpected tokens after end".into());
                }
                Item::End
            }
            Some("else") => {
                if pp.toks.len() == 1 {
                    Item::Else(None)
                } else if pp.toks.get(1) == Some(&Tok::Ident("if".into())) {
                    pp.pos = 2;
                    Item::Else(Some(pp.pipe(false)?))
                } else {
                    return Err("unexpected tokens after else".into());
                }
            }
            Some(k @ ("if" | "range" | "with")) => {
                pp.pos = 1;
                if pp.toks.len() == 1 {
                    return Err(format!("missing value for {k}"));
                }
                let pipe = pp.pipe(false)?;
                match k {
                    "if" => Item::If(pipe),
                    "range" => Item::Range(pipe),
                    _ => Item::With(pipe),
                }
            }
            Some(k) => return Err(format!("{k} is not supported in rule templates")),
        };
        scope = pp.scope;
        items.push(item);
    }
    let mut pos = 0;
    let (nodes, stop) = block(&items, &mut pos)?;
    match stop {
        Stop::Eof => Ok(nodes),
        Stop::End => Err("unexpected {{end}}".into()),
        Stop::Else(_) => Err("unexpected {{else}}".into()),
    }
}

#[derive(Clone, Debug)]
enum Item {
    Text(String),
    Action(Pipe),
    If(Pipe),
    Range(Pipe),
    With(Pipe),
    Else(Option<Pipe>),
    End,
}

enum Stop {
    Eof,
    End,
    Else(Option<Pipe>),
}

fn block(items: &[Item], pos: &mut usize) -> Result<(Vec<Node>, Stop), String> {
    let mut out = Vec::new();
    while let Some(item) = items.get(*pos) {
        *pos += 1;
        match item {
            Item::Text(t) => out.push(Node::Text(t.clone())),
            Item::Action(p) => out.push(Node::Action(p.clone())),
            Item::End => return Ok((out, Stop::End)),
            Item::Else(p) => return Ok((out, Stop::Else(p.clone()))),
            Item::If(p) => {
                let mut branches = Vec::new();
                let mut cond = p.clone();
                let otherwise;
                loop {
                    let (body, stop) = block(items, pos)?;
                    branches.push((cond, body));
                    match stop {
                        Stop::End => {
                            otherwise = Vec::new();
                            break;
                        }
                        Stop::Else(Some(next)) => cond = next,
                        Stop::Else(None) => {
                            let (body, stop) = block(items, pos)?;
                            if !matches!(stop, Stop::End) {
                                return Err("expected end; found EOF or else".into());
                            }
                            otherwise = body;
                            break;
                        }
                        Stop::Eof => return Err("unexpected EOF".into()),
                    }
                }
                out.push(Node::If {
                    branches,
                    otherwise,
                });
            }
            Item::Range(p) | Item::With(p) => {
                let (body, stop) = block(items, pos)?;
                let otherwise = match stop {
                    Stop::End => Vec::new(),
                    Stop::Else(None) => {
                        let (body, stop) = block(items, pos)?;
                        if !matches!(stop, Stop::End) {
                            return Err("expected end; found EOF or else".into());
                        }
                        body
                    }
                    Stop::Else(Some(_)) => return Err("else if is only allowed after if".into()),
                    Stop::Eof => return Err("unexpected EOF".into()),
                };
                let pipe = p.clone();
                out.push(if matches!(item, Item::Range(_)) {
                    Node::Range {
                        pipe,
                        body,
                        otherwise,
                    }
                } else {
                    Node::With {
                        pipe,
                        body,
                        otherwise,
                    }
                });
            }
        }
    }
    Ok((out, Stop::Eof))
}

// ---------------------------------------------------------------- execution

struct Exec {
    vars: Vec<(String, Val)>,
    out: String,
    external_url: String,
    /// Bounds the work one expansion may do (ranges over huge maps).
    steps: usize,
}

const MAX_STEPS: usize = 100_000;

impl Exec {
    fn nodes(&mut self, nodes: &[Node], dot: &Val) -> Result<(), String> {
        for n in nodes {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err("template expansion too long".into());
            }
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.vars.is_empty() {
                        self.out.push_str(&v.print());
                    }
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let mut done = false;
                    for (cond, body) in branches {
                        if self.pipe(cond, dot)?.truth() {
                            self.nodes(body, dot)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.nodes(otherwise, dot)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::With {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    if v.truth() {
                        self.nodes(body, &v)?;
                    } else {
                        self.nodes(otherwise, dot)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let declared = if pipe.declare {
                        pipe.vars.clone()
                    } else {
                        Vec::new()
                    };
                    let bare = Pipe {
                        vars: Vec::new(),
                        declare: false,
                        cmds: pipe.cmds.clone(),
                    };
                    let v = self.pipe(&bare, dot)?;
                    let items: Vec<(Val, Val)> = match v {
                        Val::Map(m) => m.into_iter().map(|(k, v)| (Val::Str(k), v)).collect(),
                        Val::Missing | Val::Nil => Vec::new(),
                        other => return Err(format!("range can't iterate over {}", other.print())),
                    };
                    if items.is_empty() {
                        self.nodes(otherwise, dot)?;
                    }
                    for (k, v) in items {
                        let inner = self.vars.len();
                        match declared.as_slice() {
                            [one] => self.vars.push((one.clone(), v.clone())),
                            [a, b] => {
                                self.vars.push((a.clone(), k));
                                self.vars.push((b.clone(), v.clone()));
                            }
                            _ => {}
                        }
                        self.nodes(body, &v)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn var(&self, name: &str) -> Result<Val, String> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("undefined variable: {name}"))
    }

    fn pipe(&mut self, p: &Pipe, dot: &Val) -> Result<Val, String> {
        let mut prev: Option<Val> = None;
        for cmd in &p.cmds {
            prev = Some(self.command(cmd, dot, prev)?);
        }
        let v = prev.unwrap_or(Val::Missing);
        if !p.vars.is_empty() {
            let target = p.vars.last().cloned().unwrap_or_default();
            if p.declare {
                self.vars.push((target, v.clone()));
            } else if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| *n == target) {
                slot.1 = v.clone();
            }
        }
        Ok(v)
    }

    fn arg(&mut self, a: &Arg, dot: &Val) -> Result<Val, String> {
        Ok(match a {
            Arg::Var(name, fields) => field_chain(self.var(name)?, fields)?,
            Arg::Field(fields) => field_chain(dot.clone(), fields)?,
            Arg::Str(s) => Val::Str(s.clone()),
            Arg::Int(i) => Val::Int(*i),
            Arg::Float(f) => Val::Float(*f),
            Arg::Bool(b) => Val::Bool(*b),
            Arg::Nil => Val::Nil,
            Arg::Sub(p, fields) => {
                let v = self.pipe(p, dot)?;
                field_chain(v, fields)?
            }
            Arg::Func(f) => self.call(f, Vec::new())?,
        })
    }

    fn command(&mut self, cmd: &[Arg], dot: &Val, piped: Option<Val>) -> Result<Val, String> {
        match cmd.first() {
            Some(Arg::Func(name)) => {
                // `and`/`or` short-circuit in Go; evaluating every argument is equivalent
                // here since arguments have no side effects
                let mut args = Vec::with_capacity(cmd.len());
                for a in &cmd[1..] {
                    args.push(self.arg(a, dot)?);
                }
                if let Some(p) = piped {
                    args.push(p);
                }
                self.call(name, args)
            }
            Some(a) => {
                if cmd.len() > 1 || piped.is_some() {
                    return Err(format!("can't give argument to non-function {a:?}"));
                }
                self.arg(a, dot)
            }
            None => Err("empty command".into()),
        }
    }

    fn call(&mut self, name: &str, args: Vec<Val>) -> Result<Val, String> {
        let want = |n: usize| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "wrong number of args for {name}: want {n} got {}",
                    args.len()
                ))
            }
        };
        let one_float = |args: &[Val]| -> Result<f64, String> {
            want(1)?;
            args[0].to_float()
        };
        let one_str = |args: &[Val]| -> Result<String, String> {
            want(1)?;
            Ok(args[0].print())
        };
        Ok(match name {
            "humanize" => Val::Str(humanize(one_float(&args)?)),
            "humanize1024" => Val::Str(humanize1024(one_float(&args)?)),
            "humanizeDuration" => Val::Str(humanize_duration(one_float(&args)?)),
            "humanizePercentage" => Val::Str(format!(
                "{}%",
                go_float_g(one_float(&args)? * 100.0, Some(4))
            )),
            "humanizeTimestamp" => Val::Str(humanize_timestamp(one_float(&args)?)?),
            "toUpper" => Val::Str(one_str(&args)?.to_uppercase()),
            "toLower" => Val::Str(one_str(&args)?.to_lowercase()),
            "title" => Val::Str(title(&one_str(&args)?)),
            "safeHtml" => Val::Str(one_str(&args)?),
            "stripPort" => {
                let s = one_str(&args)?;
                Val::Str(strip_port(&s))
            }
            "stripDomain" => {
                let s = one_str(&args)?;
                let (host, port) = match s.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') => (h.to_string(), format!(":{p}")),
                    _ => (s.clone(), String::new()),
                };
                if host.parse::<std::net::IpAddr>().is_ok() {
                    Val::Str(s)
                } else {
                    Val::Str(format!("{}{port}", host.split('.').next().unwrap_or("")))
                }
            }
            "match" => {
                want(2)?;
                let re = regex::Regex::new(&args[0].print()).map_err(|e| e.to_string())?;
                Val::Bool(re.is_match(&args[1].print()))
            }
            "reReplaceAll" => {
                want(3)?;
                let re = regex::Regex::new(&args[0].print()).map_err(|e| e.to_string())?;
                // Go's `$1` / `${name}` / `$1x` (the group named `1x`) mean the same here
                let repl = args[1].print();
                Val::Str(re.replace_all(&args[2].print(), repl.as_str()).into_owned())
            }
            "graphLink" => {
                let q = one_str(&args)?;
                Val::Str(format!("/graph?g0.expr={}&g0.tab=0", query_escape(&q)))
            }
            "tableLink" => {
                let q = one_str(&args)?;
                Val::Str(format!("/graph?g0.expr={}&g0.tab=1", query_escape(&q)))
            }
            "pathPrefix" => {
                want(0)?;
                let after_scheme = self
                    .external_url
                    .split_once("://")
                    .map_or(self.external_url.as_str(), |(_, r)| r);
                Val::Str(
                    after_scheme
                        .find('/')
                        .map_or(String::new(), |i| after_scheme[i..].to_string()),
                )
            }
            "externalURL" => {
                want(0)?;
                Val::Str(self.external_url.clone())
            }
            "parseDuration" => {
                let s = one_str(&args)?;
                let d = store::duration::parse_duration(&s)?;
                Val::Float(d.as_secs_f64())
            }
            "query" | "first" | "label" | "value" | "sortByLabel" | "strvalue" | "args"
            | "tmpl" => {
                return Err(format!(
                    "{name} is not supported: Lookout does not run queries from templates"
                ))
            }
            "eq" => {
                if args.len() < 2 {
                    return Err("missing argument for comparison".into());
                }
                let first = &args[0];
                let mut any = false;
                for other in &args[1..] {
                    if compare(first, other)? == Some(std::cmp::Ordering::Equal) {
                        any = true;
                    }
                }
                Val::Bool(any)
            }
            "ne" | "lt" | "le" | "gt" | "ge" => {
                want(2)?;
                // Go derives these from `<` and `==`, so a NaN is `ge` and `gt` anything
                let lt = go_less(&args[0], &args[1])?;
                let eq = compare(&args[0], &args[1])? == Some(std::cmp::Ordering::Equal);
                Val::Bool(match name {
                    "ne" => !eq,
                    "lt" => lt,
                    "le" => lt || eq,
                    "gt" => !(lt || eq),
                    _ => !lt,
                })
            }
            "and" => {
                if args.is_empty() {
                    return Err("wrong number of args for and: want at least 1 got 0".into());
                }
                args.iter()
                    .find(|v| !v.truth())
                    .cloned()
                    .unwrap_or_else(|| args[args.len() - 1].clone())
            }
            "or" => {
                if args.is_empty() {
                    return Err("wrong number of args for or: want at least 1 got 0".into());
                }
                args.iter()
                    .find(|v| v.truth())
                    .cloned()
                    .unwrap_or_else(|| args[args.len() - 1].clone())
            }
            "not" => {
                want(1)?;
                Val::Bool(!args[0].truth())
            }
            "len" => {
                want(1)?;
                Val::Int(match &args[0] {
                    Val::Str(s) => s.len() as i64,
                    Val::Map(m) => m.len() as i64,
                    other => return Err(format!("len of type {}", other.type_name())),
                })
            }
            "index" => {
                if args.is_empty() {
                    return Err("wrong number of args for index: want at least 1 got 0".into());
                }
                let mut v = args[0].clone();
                for k in &args[1..] {
                    v = match (v, k) {
                        (Val::Map(m), k) => m
                            .get(&k.print())
                            .cloned()
                            .unwrap_or(Val::Str(String::new())),
                        (other, _) => {
                            return Err(format!("can't index item of type {}", other.type_name()))
                        }
                    };
                }
                v
            }
            "print" => {
                // Go adds spaces between operands when neither is a string
                let mut s = String::new();
                for (i, a) in args.iter().enumerate() {
                    if i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
                        s.push(' ');
                    }
                    s.push_str(&a.print());
                }
                Val::Str(s)
            }
            "println" => {
                let items: Vec<String> = args.iter().map(Val::print).collect();
                Val::Str(format!("{}\n", items.join(" ")))
            }
            "printf" => {
                if args.is_empty() {
                    return Err("wrong number of args for printf: want at least 1 got 0".into());
                }
                let f = args[0].print();
                Val::Str(sprintf(&f, &args[1..]))
            }
            "urlquery" => {
                let items: Vec<String> = args.iter().map(Val::print).collect();
                Val::Str(query_escape(&items.concat()))
            }
            "html" => {
                let items: Vec<String> = args.iter().map(Val::print).collect();
                Val::Str(
                    items
                        .concat()
                        .replace('&', "&amp;")
                        .replace('\'', "&#39;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                        .replace('"', "&#34;"),
                )
            }
            "js" => {
                let items: Vec<String> = args.iter().map(Val::print).collect();
                let mut s = String::new();
                for c in items.concat().chars() {
                    match c {
                        '\\' => s.push_str("\\\\"),
                        '\'' => s.push_str("\\'"),
                        '"' => s.push_str("\\\""),
                        '<' => s.push_str("\\u003C"),
                        '>' => s.push_str("\\u003E"),
                        '&' => s.push_str("\\u0026"),
                        '=' => s.push_str("\\u003D"),
                        c => s.push(c),
                    }
                }
                Val::Str(s)
            }
            other => return Err(format!("function {other:?} not defined")),
        })
    }
}

/// `.a.b` on a value: map keys (missing: `<no value>`), error on non-maps.
fn field_chain(mut v: Val, fields: &[String]) -> Result<Val, String> {
    for f in fields {
        v = match v {
            Val::Map(m) => m.get(f).cloned().unwrap_or(Val::Str(String::new())),
            Val::Missing | Val::Nil => {
                return Err(format!("nil pointer evaluating interface {{}}.{f}"))
            }
            other => {
                return Err(format!(
                    "can't evaluate field {f} in type {}",
                    other.type_name()
                ))
            }
        };
    }
    Ok(v)
}

/// The order of two values; `None` when unordered (a NaN).
fn compare(a: &Val, b: &Val) -> Result<Option<std::cmp::Ordering>, String> {
    use Val::*;
    match (a, b) {
        (Int(x), Int(y)) => Ok(Some(x.cmp(y))),
        (Int(_) | Float(_), Int(_) | Float(_)) => Ok(a.to_float()?.partial_cmp(&b.to_float()?)),
        (Str(x), Str(y)) => Ok(Some(x.cmp(y))),
        (Bool(x), Bool(y)) => Ok(Some(x.cmp(y))),
        (Missing | Nil, Missing | Nil) => Ok(Some(std::cmp::Ordering::Equal)),
        _ => Err("incompatible types for comparison".into()),
    }
}

fn go_less(a: &Val, b: &Val) -> Result<bool, String> {
    if matches!(a, Val::Bool(_)) || matches!(b, Val::Bool(_)) {
        return Err("invalid type for comparison".into());
    }
    Ok(compare(a, b)? == Some(std::cmp::Ordering::Less))
}

/// Go's `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

fn strip_port(s: &str) -> String {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, _)) = rest.split_once(']') {
            return host.to_string();
        }
    }
    match s.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host.to_string(),
        _ => s.to_string(),
    }
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::label_set;

    fn x(src: &str, value: f64) -> String {
        let labels = label_set(&[
            ("job", "api"),
            ("instance", "host:9090"),
            ("service", "pay"),
        ]);
        let ext = label_set(&[("cluster", "prod")]);
        expand(src, &labels, value, &ext, "http://lookout:9800/prefix").unwrap()
    }

    #[test]
    fn data_access_forms() {
        assert_eq!(x("{{ $labels.job }} at {{ $value }}", 3.5), "api at 3.5");
        assert_eq!(x("{{ .Labels.job }}/{{ .Value }}", 2.0), "api/2");
        assert_eq!(x("{{ $externalLabels.cluster }}", 0.0), "prod");
        assert_eq!(x("{{ .ExternalLabels.cluster }}", 0.0), "prod");
        assert_eq!(x("{{ $externalURL }}", 0.0), "http://lookout:9800/prefix");
        assert_eq!(x("{{ .ExternalURL }}", 0.0), "http://lookout:9800/prefix");
        assert_eq!(x("[{{ $labels.nope }}]", 0.0), "[]");
        assert_eq!(x("{{ index $labels \"job\" }}", 0.0), "api");
        assert_eq!(x("no actions", 0.0), "no actions");
    }

    #[test]
    fn go_float_printing() {
        assert_eq!(x("{{ $value }}", 1e6), "1e+06");
        assert_eq!(x("{{ $value }}", 123456.0), "123456");
        assert_eq!(x("{{ $value }}", 0.0001), "0.0001");
        assert_eq!(x("{{ $value }}", 0.00001), "1e-05");
        assert_eq!(x("{{ $value }}", 1.5e21), "1.5e+21");
        assert_eq!(x("{{ $value }}", f64::NAN), "NaN");
        assert_eq!(x("{{ $value }}", f64::INFINITY), "+Inf");
        assert_eq!(x("{{ $value }}", -2.25), "-2.25");
    }

    #[test]
    fn humanize_family() {
        assert_eq!(x("{{ $value | humanize }}", 1234.0), "1.234k");
        assert_eq!(x("{{ humanize $value }}", 5_678_000.0), "5.678M");
        assert_eq!(x("{{ $value | humanize }}", 0.0012), "1.2m");
        assert_eq!(x("{{ $value | humanize }}", 0.0), "0");
        assert_eq!(x("{{ $value | humanize }}", 12.0), "12");
        assert_eq!(x("{{ $value | humanize1024 }}", 2048.0), "2ki");
        assert_eq!(x("{{ $value | humanizePercentage }}", 0.1234), "12.34%");
        assert_eq!(x("{{ $value | humanizeDuration }}", 3661.0), "1h 1m 1s");
        assert_eq!(x("{{ $value | humanizeDuration }}", 90061.0), "1d 1h 1m 1s");
        assert_eq!(x("{{ $value | humanizeDuration }}", 1.5), "1.5s");
        assert_eq!(x("{{ $value | humanizeDuration }}", 0.25), "250ms");
        assert_eq!(x("{{ $value | humanizeDuration }}", 0.0), "0s");
        assert_eq!(
            x("{{ $value | humanizeTimestamp }}", 1_435_065_584.128),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
    }

    #[test]
    fn printf_and_strings() {
        assert_eq!(x("{{ printf \"%.2f\" $value }}", 1.23456), "1.23");
        assert_eq!(x("{{ printf \"%s=%d\" \"n\" 5 }}", 0.0), "n=5");
        assert_eq!(
            x("{{ printf \"%5.1f|%-4s|\" $value \"ab\" }}", 2.0),
            "  2.0|ab  |"
        );
        assert_eq!(
            x("{{ printf \"%g %e\" $value $value }}", 1234.5),
            "1234.5 1.234500e+03"
        );
        assert_eq!(x("{{ $value | printf \"%.0f%%\" }}", 99.6), "100%");
        assert_eq!(x("{{ $labels.job | toUpper }}", 0.0), "API");
        assert_eq!(x("{{ \"a b\" | title }}", 0.0), "A B");
        assert_eq!(x("{{ $labels.instance | stripPort }}", 0.0), "host");
        assert_eq!(
            x(
                "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}",
                0.0
            ),
            "host"
        );
        assert_eq!(x("{{ `raw \"q\"` }}", 0.0), "raw \"q\"");
    }

    #[test]
    fn trimming_and_comments() {
        assert_eq!(x("a  {{- $labels.job -}}  b", 0.0), "aapib");
        assert_eq!(x("a {{/* note */}}b", 0.0), "a b");
        assert_eq!(x("x\n  {{- \" y\" }}", 0.0), "x y");
    }

    #[test]
    fn control_flow_and_variables() {
        let src = "{{ if gt $value 10.0 }}high{{ else if gt $value 5.0 }}mid{{ else }}low{{ end }}";
        assert_eq!(x(src, 20.0), "high");
        assert_eq!(x(src, 7.0), "mid");
        assert_eq!(x(src, 1.0), "low");
        assert_eq!(
            x("{{ with $labels.job }}job={{ . }}{{ end }}{{ with $labels.nope }}x{{ else }}none{{ end }}", 0.0),
            "job=apinone"
        );
        assert_eq!(
            x(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                0.0
            ),
            "instance=host:9090;job=api;service=pay;"
        );
        assert_eq!(x("{{ $x := $labels.job }}{{ $x }}!", 0.0), "api!");
        assert_eq!(
            x(
                "{{ if and (eq $labels.job \"api\") (ne $labels.service \"x\") }}y{{ end }}",
                0.0
            ),
            "y"
        );
        assert_eq!(x("{{ len $labels }}", 0.0), "3");
        assert_eq!(x("{{ if match \"^a\" $labels.job }}m{{ end }}", 0.0), "m");
    }

    #[test]
    fn syntax_errors_are_reported_at_check() {
        for bad in [
            "{{ $labels.job ",
            "{{ if $value }}x",
            "{{ end }}",
            "{{ nosuchfunc $value }}",
            "{{ $undefined }}",
            "{{ \"unterminated }}",
            "{{ }}",
            "{{ define \"x\" }}{{ end }}",
        ] {
            assert!(check(bad).is_err(), "{bad} should not parse");
        }
        assert!(check("{{ $labels.job }} {{ humanize $value }}").is_ok());
        assert!(check("{{ query \"up\" }}").is_ok());
        assert!(expand(
            "{{ query \"up\" }}",
            &LabelSet::new(),
            0.0,
            &LabelSet::new(),
            ""
        )
        .is_err());
    }

    #[test]
    fn expansion_is_bounded() {
        let out = x("{{ printf \"%999999999.999999999f\" $value }}", 1.0);
        assert!(out.len() <= 2_100, "{}", out.len());
        assert!(expand(
            "{{ range 1000000000 }}x{{ end }}",
            &LabelSet::new(),
            0.0,
            &LabelSet::new(),
            ""
        )
        .is_err());
    }

    #[test]
    fn runtime_errors_are_errors() {
        assert!(expand(
            "{{ $value.x }}",
            &LabelSet::new(),
            1.0,
            &LabelSet::new(),
            ""
        )
        .is_err());
        assert!(expand(
            "{{ humanize \"abc\" }}",
            &LabelSet::new(),
            1.0,
            &LabelSet::new(),
            ""
        )
        .is_err());
    }
}
