//! The seeded synthetic log corpus: realistic ~300-byte lines from ten services of a small
//! shop, each writing in its own format, produced in chunks so gigabytes never sit in memory.
//!
//! Formats (one per service, as real fleets mix them): an nginx access log (`frontend`), Spring
//! Boot (`checkout`), Go logfmt (`payments`, `cart`), Node JSON (`users`), Python logging
//! (`catalog`), zap console with a JSON tail (`inventory`), Rust `tracing` (`shipping`), Python
//! JSON (`recommendations`) and Chinese messages (`sms-gateway`, a few percent of lines).
//!
//! Lines come from user requests (about three quarters) and background work (health checks, GC
//! pauses, pool and cache statistics, consumer rebalances). A request is a trace: 2 to 10
//! lines over the services it touches, all with its trace id (in the record, and in the text
//! of most formats), request id, user id, client IP; checkouts carry a 10-digit order id.
//! Many requests are in flight at once, so their lines interleave. Timestamps rise steadily
//! over the planned time span, so the corpus covers several hours.
//!
//! While generating, a [`Tally`] counts what the search benchmark needs to check answers
//! exactly: lines containing each query word and static phrase (tokenised the way Lookout's
//! body tokenizer does: lower-cased runs of ASCII letters, digits and `_`, each CJK character
//! a token of its own), lines per rare coupon word, and seeded samples of finished traces and
//! orders with their line counts.
//!
//! Files: this one holds the generator's state and the request mix, [`render`] writes each
//! service's lines, [`tally`] counts for the searches.
//!
//! Everything comes from one SplitMix64 stream seeded by `--seed`: the same seed gives the same
//! corpus, so the peers and Lookout index identical bytes in separate passes.

mod render;
mod tally;

use serde::Serialize;

use tally::{is_cjk, Sampled};
pub use tally::{tokens, Tally, COMMON_WORDS, STATIC_PHRASES};

pub use crate::rng::Rng;

pub const SERVICES: [&str; 10] = [
    "frontend",
    "checkout",
    "payments",
    "users",
    "catalog",
    "inventory",
    "shipping",
    "cart",
    "recommendations",
    "sms-gateway",
];
const FRONTEND: u8 = 0;
const CHECKOUT: u8 = 1;
const PAYMENTS: u8 = 2;
const USERS: u8 = 3;
const CATALOG: u8 = 4;
const INVENTORY: u8 = 5;
const SHIPPING: u8 = 6;
const CART: u8 = 7;
const RECS: u8 = 8;
const SMS: u8 = 9;
/// Instances (pods) per service.
pub const INSTANCES: u8 = 3;

/// OTLP severity numbers of the levels used.
pub const DEBUG: u8 = 5;
pub const INFO: u8 = 9;
pub const WARN: u8 = 13;
pub const ERROR: u8 = 17;
pub const FATAL: u8 = 21;

/// The level name as loggers print it.
pub fn severity_text(n: u8) -> &'static str {
    match n {
        DEBUG => "DEBUG",
        INFO => "INFO",
        WARN => "WARN",
        ERROR => "ERROR",
        _ => "FATAL",
    }
}

/// One line's place in its chunk and its structured fields (what an OTLP record carries
/// besides the body).
#[derive(Clone, Copy, Debug)]
pub struct LineMeta {
    /// Byte offset of the line in [`Chunk::text`] and its length without the newline.
    pub start: u32,
    pub len: u32,
    pub time_unix_nano: u64,
    pub severity: u8,
    pub service: u8,
    pub instance: u8,
    /// All zero when the line belongs to no trace.
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl LineMeta {
    pub fn has_trace(&self) -> bool {
        self.trace_id != [0; 16]
    }
}

/// Consecutive lines: the text as a log file holds it (each line ends with `\n`) and each
/// line's fields.
#[derive(Default)]
pub struct Chunk {
    pub text: String,
    pub lines: Vec<LineMeta>,
}

impl Chunk {
    pub fn line(&self, m: &LineMeta) -> &str {
        &self.text[m.start as usize..(m.start + m.len) as usize]
    }

    /// Raw bytes: the lines and their newlines.
    pub fn raw_bytes(&self) -> u64 {
        self.text.len() as u64
    }
}

/// What was generated.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CorpusStats {
    pub lines: u64,
    /// Lines plus their newlines: the size of the log file.
    pub raw_bytes: u64,
    pub lines_by_service: Vec<(String, u64)>,
    pub lines_by_severity: Vec<(String, u64)>,
    /// Lines belonging to a trace (the record carries its trace and span id).
    pub trace_lines: u64,
    pub traces: u64,
    /// Lines with CJK text, JSON objects, logfmt key=value pairs.
    pub cjk_lines: u64,
    pub json_lines: u64,
    pub logfmt_lines: u64,
    pub first_unix_nano: u64,
    pub last_unix_nano: u64,
    /// Wall seconds spent generating (all passes add up).
    pub generate_secs: f64,
}

impl CorpusStats {
    pub fn mean_line_bytes(&self) -> f64 {
        self.raw_bytes as f64 / self.lines.max(1) as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Browse,
    Search,
    CartAdd,
    Checkout,
    Login,
    Account,
}

/// One step of a request: which service writes which line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Access,
    CatalogProduct,
    CatalogSearch,
    CatalogSlowQuery,
    RecsScored,
    CartAdded,
    CartLoaded,
    InventoryReserved,
    InventoryConflict,
    CheckoutPlaced,
    CheckoutCoupon,
    CheckoutConfirmed,
    CheckoutFailed,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentTimeout,
    PaymentCaptured,
    ShippingQuote,
    ShippingLabel,
    SmsSent,
    SmsRetry,
    SmsCode,
    UsersLogin,
    UsersLoginFailed,
    UsersSession,
    UsersLocked,
    UpstreamError,
}

impl Step {
    fn service(self) -> u8 {
        use Step::*;
        match self {
            Access => FRONTEND,
            CatalogProduct | CatalogSearch | CatalogSlowQuery => CATALOG,
            RecsScored => RECS,
            CartAdded | CartLoaded => CART,
            InventoryReserved | InventoryConflict => INVENTORY,
            CheckoutPlaced | CheckoutCoupon | CheckoutConfirmed | CheckoutFailed => CHECKOUT,
            PaymentAuthorized | PaymentDeclined | PaymentTimeout | PaymentCaptured => PAYMENTS,
            ShippingQuote | ShippingLabel => SHIPPING,
            SmsSent | SmsRetry | SmsCode => SMS,
            UsersLogin | UsersLoginFailed | UsersSession | UsersLocked => USERS,
            UpstreamError => CHECKOUT,
        }
    }

    /// Whether the line prints the order id.
    fn mentions_order(self) -> bool {
        use Step::*;
        matches!(
            self,
            CheckoutPlaced
                | CheckoutConfirmed
                | CheckoutFailed
                | PaymentAuthorized
                | PaymentDeclined
                | PaymentTimeout
                | PaymentCaptured
                | ShippingQuote
                | ShippingLabel
                | SmsSent
                | InventoryConflict
        )
    }
}

struct Request {
    kind: Kind,
    trace_id: [u8; 16],
    request_id: [u8; 16],
    user: u64,
    ip: u32,
    ua: usize,
    product: u64,
    order: u64,
    /// 200, 4xx or 5xx: decides the access line and the error steps.
    status: u16,
    steps: Vec<Step>,
    next: usize,
    first_unix_nano: u64,
    order_lines: u32,
    instance: u8,
}

/// Requests in flight at once (their lines interleave).
const IN_FLIGHT: usize = 48;
/// Per mille of lines that are background work rather than request steps.
const BACKGROUND_PER_MILLE: u64 = 250;
/// Users, products and client addresses drawn from (skewed: some are busy).
const USERS_N: u64 = 400_000;
const PRODUCTS_N: u64 = 60_000;
const IPS_N: u64 = 80_000;

/// The generator; see the module docs.
pub struct Generator {
    rng: Rng,
    time: u64,
    step_nanos: u64,
    in_flight: Vec<Request>,
    next_order: u64,
    pub stats: CorpusStats,
    by_service: [u64; 10],
    by_severity: [u64; 25],
    pub tally: Option<Tally>,
    scratch: String,
}

/// The first order id: 10 digits, so no other number in the corpus (all shorter, or
/// hex/alphanumeric) can equal one.
const FIRST_ORDER: u64 = 7_000_000_000;

impl Generator {
    /// Lines start at `start_unix_nano`, one every `step_nanos` (jittered within the step).
    /// With `tally`, the [`Tally`] is kept (the first pass); later passes skip it.
    pub fn new(seed: u64, start_unix_nano: u64, step_nanos: u64, tally: bool) -> Self {
        let mut g = Generator {
            rng: Rng::new(seed),
            time: start_unix_nano,
            step_nanos: step_nanos.max(1),
            in_flight: Vec::with_capacity(IN_FLIGHT),
            next_order: FIRST_ORDER,
            stats: CorpusStats::default(),
            by_service: [0; 10],
            by_severity: [0; 25],
            tally: tally.then(|| Tally::new(seed)),
            scratch: String::with_capacity(512),
        };
        g.stats.first_unix_nano = start_unix_nano;
        for _ in 0..IN_FLIGHT {
            let r = g.new_request();
            g.in_flight.push(r);
        }
        g
    }

    /// Lines until the chunk holds at least `raw_bytes` bytes.
    pub fn chunk(&mut self, raw_bytes: u64) -> Chunk {
        let started = std::time::Instant::now();
        let mut c = Chunk {
            text: String::with_capacity(raw_bytes as usize + 4096),
            lines: Vec::with_capacity((raw_bytes / 250) as usize),
        };
        while (c.text.len() as u64) < raw_bytes {
            self.one_line(&mut c);
        }
        self.finish_stats(started);
        c
    }

    /// The remaining lines of the requests still in flight, so every trace is complete.
    pub fn finish(&mut self) -> Chunk {
        let started = std::time::Instant::now();
        let mut c = Chunk::default();
        while let Some(mut req) = self.in_flight.pop() {
            while req.next < req.steps.len() {
                self.request_line(&mut req, &mut c);
            }
            self.request_done(&req);
        }
        self.finish_stats(started);
        c
    }

    fn finish_stats(&mut self, started: std::time::Instant) {
        self.stats.generate_secs += started.elapsed().as_secs_f64();
        self.stats.lines_by_service = SERVICES
            .iter()
            .zip(self.by_service)
            .map(|(s, n)| (s.to_string(), n))
            .collect();
        self.stats.lines_by_severity = [DEBUG, INFO, WARN, ERROR, FATAL]
            .iter()
            .map(|&s| {
                (
                    severity_text(s).to_ascii_lowercase(),
                    self.by_severity[s as usize],
                )
            })
            .collect();
        if let Some(t) = &self.tally {
            self.stats.traces = t.traces.seen;
        }
    }

    fn one_line(&mut self, c: &mut Chunk) {
        if self.rng.chance(BACKGROUND_PER_MILLE) {
            self.background_line(c);
            return;
        }
        let i = self.rng.below(self.in_flight.len() as u64) as usize;
        let placeholder = self.placeholder();
        let mut req = std::mem::replace(&mut self.in_flight[i], placeholder);
        self.request_line(&mut req, c);
        if req.next >= req.steps.len() {
            self.request_done(&req);
            req = self.new_request();
        }
        self.in_flight[i] = req;
    }

    fn placeholder(&self) -> Request {
        Request {
            kind: Kind::Browse,
            trace_id: [0; 16],
            request_id: [0; 16],
            user: 0,
            ip: 0,
            ua: 0,
            product: 0,
            order: 0,
            status: 200,
            steps: Vec::new(),
            next: 0,
            first_unix_nano: 0,
            order_lines: 0,
            instance: 0,
        }
    }

    fn request_done(&mut self, req: &Request) {
        if let Some(t) = &mut self.tally {
            t.traces.offer(Sampled {
                id: req.trace_id,
                lines: req.steps.len() as u32,
                first_unix_nano: req.first_unix_nano,
            });
            if req.kind == Kind::Checkout {
                t.orders.offer(Sampled {
                    id: req.order,
                    lines: req.order_lines,
                    first_unix_nano: req.first_unix_nano,
                });
            }
        }
    }

    fn id128(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        // never all zero (that means "no trace")
        id[8..].copy_from_slice(&(self.rng.next_u64() | 1).to_be_bytes());
        id
    }

    fn new_request(&mut self) -> Request {
        use Step::*;
        let r = &mut self.rng;
        let roll = r.below(100);
        let kind = match roll {
            0..=39 => Kind::Browse,
            40..=59 => Kind::Search,
            60..=74 => Kind::CartAdd,
            75..=82 => Kind::Checkout,
            83..=94 => Kind::Login,
            _ => Kind::Account,
        };
        // 2 % of requests fail upstream (5xx), some more are client errors (4xx)
        let fail = r.chance(20);
        let mut status = 200;
        let mut steps = Vec::with_capacity(10);
        match kind {
            Kind::Browse => {
                steps.push(CatalogProduct);
                if r.chance(300) {
                    steps.push(CatalogSlowQuery);
                }
                steps.push(RecsScored);
            }
            Kind::Search => {
                steps.push(CatalogSearch);
                if r.chance(150) {
                    steps.push(CatalogSlowQuery);
                }
            }
            Kind::CartAdd => {
                steps.push(CartLoaded);
                steps.push(InventoryReserved);
                if r.chance(40) {
                    steps.push(InventoryConflict);
                    steps.push(InventoryReserved);
                }
                steps.push(CartAdded);
            }
            Kind::Checkout => {
                steps.push(CartLoaded);
                if r.chance(100) {
                    steps.push(CheckoutCoupon);
                }
                steps.push(CheckoutPlaced);
                steps.push(InventoryReserved);
                if fail {
                    steps.push(PaymentTimeout);
                    steps.push(PaymentTimeout);
                    steps.push(CheckoutFailed);
                } else if r.chance(60) {
                    steps.push(PaymentDeclined);
                    status = 402;
                } else {
                    steps.push(PaymentAuthorized);
                    steps.push(PaymentCaptured);
                    steps.push(ShippingQuote);
                    steps.push(ShippingLabel);
                    if r.chance(600) {
                        if r.chance(150) {
                            steps.push(SmsRetry);
                        }
                        steps.push(SmsSent);
                    }
                    steps.push(CheckoutConfirmed);
                }
            }
            Kind::Login => {
                if r.chance(120) {
                    steps.push(UsersLoginFailed);
                    status = 401;
                    if r.chance(100) {
                        steps.push(UsersLocked);
                        status = 423;
                    }
                } else {
                    steps.push(UsersLogin);
                    // two-factor logins get a verification code by SMS
                    if r.chance(400) {
                        steps.push(SmsCode);
                    }
                }
            }
            Kind::Account => steps.push(UsersSession),
        }
        if fail && kind != Kind::Checkout {
            steps.push(UpstreamError);
        }
        if fail {
            status = if r.chance(500) { 502 } else { 504 };
        }
        // the access log line is written when the response is sent
        steps.push(Access);
        let order = if kind == Kind::Checkout {
            self.next_order += 1;
            self.next_order
        } else {
            0
        };
        let r = &mut self.rng;
        let user = r.skewed(USERS_N);
        let ip = r.skewed(IPS_N) as u32;
        let ua = r.below(render::USER_AGENTS.len() as u64) as usize;
        let product = r.skewed(PRODUCTS_N);
        let instance = r.below(u64::from(INSTANCES)) as u8;
        let order_lines = steps.iter().filter(|s| s.mentions_order()).count() as u32;
        Request {
            kind,
            trace_id: self.id128(),
            request_id: self.id128(),
            user,
            ip,
            ua,
            product,
            order,
            status,
            steps,
            next: 0,
            first_unix_nano: 0,
            order_lines,
            instance,
        }
    }

    fn advance_time(&mut self) -> u64 {
        self.time += self.step_nanos;
        // jitter inside the step keeps the times distinct and rising
        self.time + self.rng.below(self.step_nanos)
    }

    fn request_line(&mut self, req: &mut Request, c: &mut Chunk) {
        let t = self.advance_time();
        if req.next == 0 {
            req.first_unix_nano = t;
        }
        let step = req.steps[req.next];
        req.next += 1;
        let mut span = [0u8; 8];
        span.copy_from_slice(&(self.rng.next_u64() | 1).to_be_bytes());
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        let severity = self.render_step(&mut s, t, req, step, &span);
        self.push(
            c,
            &s,
            t,
            severity,
            step.service(),
            req.instance,
            req.trace_id,
            span,
        );
        self.scratch = s;
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        c: &mut Chunk,
        line: &str,
        t: u64,
        severity: u8,
        service: u8,
        instance: u8,
        trace_id: [u8; 16],
        span_id: [u8; 8],
    ) {
        let start = c.text.len() as u32;
        c.text.push_str(line);
        c.text.push('\n');
        c.lines.push(LineMeta {
            start,
            len: line.len() as u32,
            time_unix_nano: t,
            severity,
            service,
            instance,
            trace_id,
            span_id,
        });
        let st = &mut self.stats;
        st.lines += 1;
        st.raw_bytes += line.len() as u64 + 1;
        st.last_unix_nano = t;
        if trace_id != [0; 16] {
            st.trace_lines += 1;
        }
        if line.starts_with('{') || line.ends_with('}') {
            st.json_lines += 1;
        }
        if line.contains(" level=") || line.contains(" lvl=") {
            st.logfmt_lines += 1;
        }
        if line.chars().any(is_cjk) {
            st.cjk_lines += 1;
        }
        self.by_service[service as usize] += 1;
        self.by_severity[severity.min(24) as usize] += 1;
        if let Some(tally) = &mut self.tally {
            tally.line(line);
        }
    }

    fn background_line(&mut self, c: &mut Chunk) {
        let t = self.advance_time();
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        let instance = self.rng.below(u64::from(INSTANCES)) as u8;
        let (service, severity) = self.render_background(&mut s, t, instance);
        self.push(c, &s, t, severity, service, instance, [0; 16], [0; 8]);
        self.scratch = s;
    }
}

/// Lower-case hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    Generator::hex(&mut s, bytes);
    s
}

/// Mean line bytes of a seeded sample (to plan the time step before the real run).
pub fn sample_mean_line_bytes(seed: u64, lines: usize) -> f64 {
    let mut g = Generator::new(seed, 1_700_000_000_000_000_000, 1_000_000, false);
    let mut c = Chunk::default();
    for _ in 0..lines {
        g.one_line(&mut c);
    }
    c.text.len() as f64 / lines.max(1) as f64
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    pub(super) fn corpus(seed: u64, bytes: u64) -> (Generator, Chunk) {
        let mut g = Generator::new(seed, 1_763_700_000_000_000_000, 1_000_000, true);
        let mut c = g.chunk(bytes);
        let tail = g.finish();
        let base = c.text.len() as u32;
        c.text.push_str(&tail.text);
        c.lines.extend(tail.lines.iter().map(|m| LineMeta {
            start: m.start + base,
            ..*m
        }));
        (g, c)
    }

    #[test]
    fn same_seed_same_corpus() {
        let (_, a) = corpus(7, 200_000);
        let (_, b) = corpus(7, 200_000);
        let (_, c) = corpus(8, 200_000);
        assert_eq!(a.text, b.text);
        assert_ne!(a.text, c.text);
    }

    #[test]
    fn shape_of_the_corpus() {
        let (g, c) = corpus(42, 3_000_000);
        let st = &g.stats;
        assert_eq!(st.lines as usize, c.lines.len());
        assert_eq!(st.raw_bytes, c.raw_bytes());
        let mean = st.mean_line_bytes();
        assert!((230.0..=370.0).contains(&mean), "mean line {mean} bytes");
        let frac = |n: u64| n as f64 / st.lines as f64;
        assert!(
            (0.01..=0.06).contains(&frac(st.cjk_lines)),
            "cjk {}",
            frac(st.cjk_lines)
        );
        assert!(frac(st.json_lines) > 0.05, "json {}", frac(st.json_lines));
        assert!(
            frac(st.logfmt_lines) > 0.05,
            "logfmt {}",
            frac(st.logfmt_lines)
        );
        assert!(
            (0.6..=0.85).contains(&frac(st.trace_lines)),
            "trace lines {}",
            frac(st.trace_lines)
        );
        for (s, n) in &st.lines_by_service {
            assert!(*n > 0, "no line from {s}");
        }
        let sev: HashMap<_, _> = st.lines_by_severity.iter().cloned().collect();
        assert!(frac(sev["info"]) > 0.6);
        assert!(sev["warn"] > 0 && sev["error"] > 0 && sev["debug"] > 0 && sev["fatal"] > 0);
        // lines rise in time, the metadata points at the text
        for w in c.lines.windows(2) {
            assert!(w[0].time_unix_nano < w[1].time_unix_nano);
        }
        for m in &c.lines {
            let line = c.line(m);
            assert!(!line.contains('\n') && !line.is_empty());
            assert_eq!(c.text.as_bytes()[(m.start + m.len) as usize], b'\n');
            if m.has_trace() && m.service != SMS {
                // every format prints the trace id (the SMS retry line does not)
                assert!(line.contains(&hex(&m.trace_id)), "{line}");
            }
        }
    }
}
