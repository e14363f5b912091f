//! Each service's lines: the formats, the messages, the identifiers in them.

use std::fmt::Write as _;

use super::tally::{rare_word_at, RARE_WORDS};
use super::{
    severity_text, Generator, Kind, Request, Step, CART, CATALOG, CHECKOUT, DEBUG, ERROR, FATAL,
    FRONTEND, INFO, INVENTORY, PAYMENTS, RECS, SERVICES, SHIPPING, SMS, USERS, WARN,
};

pub(super) const USER_AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "okhttp/4.12.0",
    "shop-ios/5.14.2 (iPhone15,2; iOS 17.4.1)",
];
const SEARCH_QUERIES: [&str; 12] = [
    "blue running shoes",
    "wireless headphones",
    "coffee grinder",
    "kids rain jacket",
    "usb-c charger 65w",
    "yoga mat",
    "cast iron pan",
    "mechanical keyboard",
    "linen shirt",
    "camping tent 2 person",
    "water bottle",
    "desk lamp",
];
const CLASSES: [&str; 4] = [
    "OrderService",
    "CheckoutController",
    "PromotionEngine",
    "CartValidator",
];
const PROVIDERS: [&str; 3] = ["stripe", "adyen", "paypal"];
const WAREHOUSES: [&str; 4] = ["fra-1", "fra-2", "ams-1", "waw-1"];
const CARRIERS: [&str; 4] = ["dhl", "ups", "dpd", "gls"];
const COUNTRIES: [&str; 8] = ["DE", "FR", "NL", "PL", "AT", "CN", "IT", "ES"];
const OPERATORS: [&str; 3] = ["中国移动", "中国联通", "中国电信"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Broken-down UTC time.
struct Tm {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    nanos: u32,
}

fn tm(unix_nano: u64) -> Tm {
    let secs = (unix_nano / 1_000_000_000) as i64;
    let nanos = (unix_nano % 1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = store::timefmt::civil_from_days(days);
    Tm {
        year,
        month,
        day,
        hour: rem / 3600,
        min: rem / 60 % 60,
        sec: rem % 60,
        nanos,
    }
}

impl Generator {
    // ---- formatting helpers ----

    pub(super) fn hex(s: &mut String, bytes: &[u8]) {
        for b in bytes {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
    }

    fn uuid(s: &mut String, id: &[u8; 16]) {
        Self::hex(s, &id[..4]);
        s.push('-');
        Self::hex(s, &id[4..6]);
        s.push('-');
        Self::hex(s, &id[6..8]);
        s.push('-');
        Self::hex(s, &id[8..10]);
        s.push('-');
        Self::hex(s, &id[10..]);
    }

    /// `2025-11-21T10:15:02.123Z` (`frac` digits: 3 or 6).
    fn iso(s: &mut String, t: u64, frac: u32) {
        let x = tm(t);
        let _ = write!(
            s,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
            x.year, x.month, x.day, x.hour, x.min, x.sec
        );
        if frac == 6 {
            let _ = write!(s, "{:06}Z", x.nanos / 1000);
        } else {
            let _ = write!(s, "{:03}Z", x.nanos / 1_000_000);
        }
    }

    /// `2025-11-21 10:15:02.123` (or `,123` for Python).
    fn local(s: &mut String, t: u64, sep: char) {
        let x = tm(t);
        let _ = write!(
            s,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{sep}{:03}",
            x.year,
            x.month,
            x.day,
            x.hour,
            x.min,
            x.sec,
            x.nanos / 1_000_000
        );
    }

    fn user(s: &mut String, user: u64) {
        let _ = write!(s, "u-{:07}", 1_000_000 + user);
    }

    fn ip(s: &mut String, ip: u32) {
        let _ = write!(
            s,
            "{}.{}.{}.{}",
            [10, 172, 192, 100][(ip % 4) as usize],
            (ip >> 2) % 250 + 1,
            (ip >> 9) % 250 + 1,
            (ip >> 3) % 253 + 1
        );
    }

    fn sku(s: &mut String, product: u64) {
        let _ = write!(s, "SKU-{:06}", 100_000 + product);
    }

    fn millis(&mut self, lo: u64, hi: u64) -> f64 {
        // log-uniform-ish: most fast, a tail of slow ones
        let base = self.rng.range(lo, hi) as f64;
        let tail = if self.rng.chance(50) { 8.0 } else { 1.0 };
        (base * tail * 10.0 + self.rng.below(10) as f64) / 10.0
    }

    fn pod(s: &mut String, service: u8, instance: u8) {
        let _ = write!(
            s,
            "{}-7d9f8b6c4-{}",
            SERVICES[service as usize],
            ["x2k9p", "m4q7t", "z8w3n"][instance as usize % 3]
        );
    }

    // ---- request lines ----

    pub(super) fn render_step(
        &mut self,
        s: &mut String,
        t: u64,
        req: &Request,
        step: Step,
        span: &[u8; 8],
    ) -> u8 {
        use Step::*;
        match step {
            Access => self.access(s, t, req),
            CatalogProduct | CatalogSearch | CatalogSlowQuery => self.catalog(s, t, req, step),
            RecsScored => self.recs(s, t, req),
            CartAdded | CartLoaded => self.cart(s, t, req, step),
            InventoryReserved | InventoryConflict => self.inventory(s, t, req, step),
            CheckoutPlaced | CheckoutCoupon | CheckoutConfirmed | CheckoutFailed
            | UpstreamError => self.checkout(s, t, req, step, span),
            PaymentAuthorized | PaymentDeclined | PaymentTimeout | PaymentCaptured => {
                self.payments(s, t, req, step, span)
            }
            ShippingQuote | ShippingLabel => self.shipping(s, t, req, step),
            SmsSent | SmsRetry | SmsCode => self.sms(s, t, req, step),
            UsersLogin | UsersLoginFailed | UsersSession | UsersLocked => {
                self.users(s, t, req, step)
            }
        }
    }

    fn access(&mut self, s: &mut String, t: u64, req: &Request) -> u8 {
        let x = tm(t);
        Self::ip(s, req.ip);
        let _ = write!(
            s,
            " - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"",
            x.day,
            MONTHS[(x.month - 1) as usize],
            x.year,
            x.hour,
            x.min,
            x.sec
        );
        let user = 1_000_000 + req.user;
        let p = 100_000 + req.product;
        match req.kind {
            Kind::Browse => {
                let _ = write!(s, "GET /api/v1/products/{p}?ref=home");
            }
            Kind::Search => {
                let q = SEARCH_QUERIES[(req.product % SEARCH_QUERIES.len() as u64) as usize];
                let _ = write!(s, "GET /api/v1/search?q={}&page=1", q.replace(' ', "+"));
            }
            Kind::CartAdd => {
                let _ = write!(s, "POST /api/v1/cart/u-{user}/items");
            }
            Kind::Checkout => s.push_str("POST /api/v1/checkout"),
            Kind::Login => s.push_str("POST /api/v1/login"),
            Kind::Account => {
                let _ = write!(s, "GET /api/v1/users/u-{user}/profile");
            }
        }
        let bytes = if req.status == 200 {
            self.rng.range(300, 48_000)
        } else {
            self.rng.range(60, 400)
        };
        let rt = self.millis(2, 120) / 1000.0;
        let _ = write!(
            s,
            " HTTP/1.1\" {} {bytes} \"https://shop.example.com/\" \"{}\" rt={rt:.3} uct=0.001 upstream=10.{}.{}.{}:8080 upstream_status={} host=shop.example.com req_id=",
            req.status,
            USER_AGENTS[req.ua],
            req.instance + 40,
            req.product % 250,
            req.user % 250,
            if req.status == 504 { 0 } else { req.status }
        );
        Self::uuid(s, &req.request_id);
        s.push_str(" trace_id=");
        Self::hex(s, &req.trace_id);
        match req.status {
            200..=399 => INFO,
            400..=499 => WARN,
            _ => ERROR,
        }
    }

    fn spring_prefix(&mut self, s: &mut String, t: u64, level: u8, class: &str) {
        Self::local(s, t, '.');
        let thread = self.rng.range(1, 200);
        let logger = format!("c.s.checkout.service.{class}");
        let _ = write!(
            s,
            " {:>5} 1 --- [nio-8080-exec-{thread:<3}] {logger:<40} : ",
            severity_text(level)
        );
    }

    fn checkout(
        &mut self,
        s: &mut String,
        t: u64,
        req: &Request,
        step: Step,
        span: &[u8; 8],
    ) -> u8 {
        use Step::*;
        let level = match step {
            CheckoutFailed | UpstreamError => ERROR,
            CheckoutCoupon => WARN,
            _ => INFO,
        };
        let class = *self.rng.pick(&CLASSES);
        self.spring_prefix(s, t, level, class);
        s.push('[');
        Self::hex(s, &req.trace_id);
        s.push(',');
        Self::hex(s, span);
        s.push_str("] ");
        let items = self.rng.range(1, 7);
        let total = self.rng.range(500, 40_000) as f64 / 100.0;
        match step {
            CheckoutPlaced => {
                let _ = write!(s, "Order {} placed for user ", req.order);
                Self::user(s, req.user);
                let _ = write!(s, ": {items} items, total {total:.2} EUR, shipping to ");
                s.push_str(COUNTRIES[(req.user % 8) as usize]);
                s.push_str(", payment via ");
                s.push_str(PROVIDERS[(req.user % 3) as usize]);
                s.push_str(", cart ");
                Self::uuid(s, &req.request_id);
            }
            CheckoutCoupon => {
                let rare = self.rare_index();
                let word = rare_word_at(rare);
                let _ = write!(s, "Coupon code \"{word}\" rejected for user ");
                Self::user(s, req.user);
                s.push_str(": expired or not applicable to cart ");
                Self::uuid(s, &req.request_id);
            }
            CheckoutConfirmed => {
                let _ = write!(
                    s,
                    "Order {} confirmed, payment captured and shipment requested in {:.1} ms, confirmation e-mail queued for user ",
                    req.order,
                    self.millis(40, 400)
                );
                Self::user(s, req.user);
            }
            CheckoutFailed => {
                let _ = write!(
                    s,
                    "Unexpected exception while finalizing order {}: java.lang.IllegalStateException: payment for cart ",
                    req.order
                );
                Self::uuid(s, &req.request_id);
                s.push_str(" is in state PENDING after upstream timeout");
            }
            _ => {
                s.push_str("Request failed: upstream connect error or disconnect/reset before headers. reset reason: connection refused, upstream=");
                s.push_str(SERVICES[(2 + req.product % 7) as usize]);
                s.push_str(":8080");
            }
        }
        level
    }

    fn rare_index(&mut self) -> usize {
        self.rng.skewed(RARE_WORDS as u64) as usize
    }

    fn payments(
        &mut self,
        s: &mut String,
        t: u64,
        req: &Request,
        step: Step,
        span: &[u8; 8],
    ) -> u8 {
        use Step::*;
        let (level, msg) = match step {
            PaymentAuthorized => (INFO, "payment authorized"),
            PaymentCaptured => (INFO, "payment captured"),
            PaymentDeclined => (WARN, "card declined by issuer"),
            _ => (ERROR, "provider request failed: upstream timeout, retrying"),
        };
        s.push_str("time=");
        Self::iso(s, t, 3);
        let _ = write!(
            s,
            " level={} msg=\"{msg}\" order_id={} amount={:.2} currency=EUR provider={}",
            severity_text(level).to_ascii_lowercase(),
            req.order,
            self.rng.range(500, 40_000) as f64 / 100.0,
            PROVIDERS[(req.user % 3) as usize]
        );
        match step {
            PaymentDeclined => s.push_str(" decline_code=insufficient_funds"),
            PaymentTimeout => {
                let _ = write!(s, " attempt={}", self.rng.range(1, 3));
            }
            PaymentAuthorized => {
                let _ = write!(s, " idempotency_key=");
                Self::hex(s, &req.request_id[..8]);
            }
            _ => {}
        }
        let _ = write!(
            s,
            " card_brand={} three_ds=frictionless customer=u-{:07} duration_ms={:.1} host=",
            ["visa", "mastercard", "amex"][(req.user % 3) as usize],
            1_000_000 + req.user,
            self.millis(20, 300)
        );
        Self::pod(s, PAYMENTS, req.instance);
        s.push_str(" trace_id=");
        Self::hex(s, &req.trace_id);
        s.push_str(" span_id=");
        Self::hex(s, span);
        level
    }

    fn users(&mut self, s: &mut String, t: u64, req: &Request, step: Step) -> u8 {
        use Step::*;
        let (level, msg) = match step {
            UsersLogin => (INFO, "user logged in"),
            UsersSession => (INFO, "session refreshed"),
            UsersLoginFailed => (WARN, "login failed: invalid password"),
            _ => (WARN, "account locked after 5 failed login attempts"),
        };
        s.push_str("{\"timestamp\":\"");
        Self::iso(s, t, 3);
        let _ = write!(
            s,
            "\",\"level\":\"{}\",\"service\":\"users\",\"msg\":\"{msg}\",\"user_id\":\"",
            severity_text(level).to_ascii_lowercase()
        );
        Self::user(s, req.user);
        s.push_str("\",\"ip\":\"");
        Self::ip(s, req.ip);
        s.push_str("\",\"trace_id\":\"");
        Self::hex(s, &req.trace_id);
        s.push_str("\",\"request_id\":\"");
        Self::uuid(s, &req.request_id);
        let _ = write!(
            s,
            "\",\"client\":\"{}\",\"duration_ms\":{},\"hostname\":\"",
            ["web", "ios", "android"][req.ua % 3],
            self.rng.range(2, 90)
        );
        Self::pod(s, USERS, req.instance);
        s.push_str("\"}");
        level
    }

    fn catalog(&mut self, s: &mut String, t: u64, req: &Request, step: Step) -> u8 {
        use Step::*;
        let level = if step == CatalogSlowQuery { WARN } else { INFO };
        Self::local(s, t, ',');
        let _ = write!(
            s,
            " {} [catalog.search] [pid {}] [ThreadPoolExecutor-0_{}] ",
            severity_text(level),
            7 + req.instance,
            self.rng.below(16)
        );
        match step {
            CatalogProduct => {
                if self.rng.chance(200) {
                    s.push_str("cache miss for product ");
                    Self::sku(s, req.product);
                    let _ = write!(s, ", loaded from database in {:.1}ms", self.millis(3, 40));
                } else {
                    s.push_str("product ");
                    Self::sku(s, req.product);
                    let _ = write!(
                        s,
                        " served from cache, {} variants, price {:.2} EUR",
                        self.rng.range(1, 12),
                        self.rng.range(300, 30_000) as f64 / 100.0
                    );
                }
            }
            CatalogSearch => {
                let q = SEARCH_QUERIES[(req.product % SEARCH_QUERIES.len() as u64) as usize];
                let _ = write!(
                    s,
                    "query=\"{q}\" returned {} results in {:.1}ms page=1",
                    self.rng.range(0, 400),
                    self.millis(4, 60)
                );
            }
            _ => {
                let _ = write!(
                    s,
                    "slow query detected: SELECT id, name, price FROM products WHERE category_id = {} ORDER BY popularity DESC LIMIT 48 took {:.1}ms",
                    self.rng.range(1, 300),
                    self.millis(250, 2_000)
                );
            }
        }
        s.push_str(" request_id=");
        Self::uuid(s, &req.request_id);
        s.push_str(" user=");
        Self::user(s, req.user);
        let _ = write!(
            s,
            " client={} locale={}",
            ["web", "ios", "android"][req.ua % 3],
            ["de-DE", "fr-FR", "nl-NL", "pl-PL", "de-AT", "zh-CN", "it-IT", "es-ES"]
                [(req.user % 8) as usize]
        );
        s.push_str(" trace_id=");
        Self::hex(s, &req.trace_id);
        level
    }

    fn recs(&mut self, s: &mut String, t: u64, req: &Request) -> u8 {
        let slow = self.rng.chance(30);
        let level = if slow { WARN } else { INFO };
        s.push_str("{\"time\": \"");
        Self::iso(s, t, 3);
        let _ = write!(
            s,
            "\", \"levelname\": \"{}\", \"name\": \"recs.model\", \"message\": \"",
            if slow { "WARNING" } else { "INFO" }
        );
        if slow {
            let _ = write!(
                s,
                "feature store lookup slow ({:.0}ms), serving fallback ranking for user ",
                self.millis(200, 900)
            );
        } else {
            let _ = write!(
                s,
                "scored {} candidates in {:.1}ms for user ",
                self.rng.range(50, 500),
                self.millis(5, 60)
            );
        }
        Self::user(s, req.user);
        let _ = write!(
            s,
            "\", \"model_version\": \"v{}.{}\", \"product\": \"",
            3,
            self.rng.range(0, 9)
        );
        Self::sku(s, req.product);
        s.push_str("\", \"hostname\": \"");
        Self::pod(s, RECS, req.instance);
        s.push_str("\", \"trace_id\": \"");
        Self::hex(s, &req.trace_id);
        s.push_str("\"}");
        level
    }

    fn cart(&mut self, s: &mut String, t: u64, req: &Request, step: Step) -> u8 {
        let msg = if step == Step::CartAdded {
            "item added to cart"
        } else {
            "cart loaded"
        };
        s.push_str("ts=");
        Self::iso(s, t, 3);
        let _ = write!(
            s,
            " lvl=info caller=cart/store.go:{} msg=\"{msg}\" user_id=",
            self.rng.range(40, 220)
        );
        Self::user(s, req.user);
        s.push_str(" cart_id=");
        Self::uuid(s, &req.request_id);
        s.push_str(" sku=");
        Self::sku(s, req.product);
        let _ = write!(
            s,
            " items={} redis_latency_us={} client={} session_id=",
            self.rng.range(1, 9),
            self.rng.range(80, 3000),
            ["web", "ios", "android"][req.ua % 3]
        );
        Self::hex(s, &req.request_id[4..12]);
        s.push_str(" ip=");
        Self::ip(s, req.ip);
        s.push_str(" trace_id=");
        Self::hex(s, &req.trace_id);
        INFO
    }

    fn inventory(&mut self, s: &mut String, t: u64, req: &Request, step: Step) -> u8 {
        let conflict = step == Step::InventoryConflict;
        let level = if conflict { WARN } else { INFO };
        Self::iso(s, t, 3);
        let _ = write!(
            s,
            "\t{}\tinventory/reserve.go:{}\t{}\t{{\"sku\": \"",
            severity_text(level),
            if conflict { 131 } else { 88 },
            if conflict {
                "reservation conflict, retrying"
            } else {
                "stock reserved"
            }
        );
        Self::sku(s, req.product);
        let _ = write!(
            s,
            "\", \"qty\": {}, \"warehouse\": \"{}\", \"remaining\": {}",
            self.rng.range(1, 4),
            WAREHOUSES[(req.product % 4) as usize],
            self.rng.range(0, 900)
        );
        if conflict {
            let _ = write!(s, ", \"order_id\": {}", req.order);
        }
        s.push_str(", \"pod\": \"");
        Self::pod(s, INVENTORY, req.instance);
        s.push_str("\", \"request_id\": \"");
        Self::uuid(s, &req.request_id);
        s.push_str("\", \"trace_id\": \"");
        Self::hex(s, &req.trace_id);
        s.push_str("\"}");
        level
    }

    fn shipping(&mut self, s: &mut String, t: u64, req: &Request, step: Step) -> u8 {
        Self::iso(s, t, 6);
        let carrier = CARRIERS[(req.order % 4) as usize];
        if step == Step::ShippingQuote {
            let _ = write!(
                s,
                "  INFO shipping::quote: quote computed carrier={carrier} order_id={} destination={} weight_g={} cost={:.2} service_level={} eta_days={}",
                req.order,
                COUNTRIES[(req.user % 8) as usize],
                self.rng.range(100, 12_000),
                self.rng.range(390, 2_900) as f64 / 100.0,
                ["standard", "express"][(req.user % 2) as usize],
                self.rng.range(1, 5)
            );
        } else {
            let _ = write!(
                s,
                "  INFO shipping::labels: label created carrier={carrier} order_id={} tracking={}{:012} pages=1",
                req.order,
                carrier.to_ascii_uppercase(),
                self.rng.below(1_000_000_000_000)
            );
        }
        s.push_str(" pod=");
        Self::pod(s, SHIPPING, req.instance);
        s.push_str(" request_id=");
        Self::uuid(s, &req.request_id);
        s.push_str(" trace_id=");
        Self::hex(s, &req.trace_id);
        INFO
    }

    fn sms(&mut self, s: &mut String, t: u64, req: &Request, step: Step) -> u8 {
        Self::local(s, t, '.');
        let op = OPERATORS[(req.user % 3) as usize];
        if step == Step::SmsCode {
            s.push_str(" INFO [短信网关] 向用户 ");
            Self::user(s, req.user);
            let _ = write!(
                s,
                " 发送验证码成功, 模板 SMS_{}, 运营商 {op}, 耗时 {:.0}ms, request_id=",
                2025061 + req.user % 4,
                self.millis(30, 400)
            );
            Self::uuid(s, &req.request_id);
            s.push_str(" trace_id=");
            Self::hex(s, &req.trace_id);
            return INFO;
        }
        if step == Step::SmsRetry {
            let _ = write!(
                s,
                " WARN [短信网关] 发送失败, 正在重试 (第 {} 次): 运营商接口超时, 运营商 {op}, 用户 ",
                self.rng.range(1, 3)
            );
            Self::user(s, req.user);
            s.push_str(" request_id=");
            Self::uuid(s, &req.request_id);
            WARN
        } else {
            let _ = write!(
                s,
                " INFO [短信网关] 订单 {} 已发货通知已发送, 运营商 {op}, 耗时 {:.0}ms, 用户 ",
                req.order,
                self.millis(30, 400)
            );
            Self::user(s, req.user);
            s.push_str(", 实例 ");
            Self::pod(s, SMS, req.instance);
            s.push_str(" trace_id=");
            Self::hex(s, &req.trace_id);
            INFO
        }
    }

    // ---- background lines ----

    pub(super) fn render_background(&mut self, s: &mut String, t: u64, instance: u8) -> (u8, u8) {
        match self.rng.below(100) {
            0..=29 => {
                // kubelet probes
                Self::ip(s, self.rng.below(64) as u32);
                let x = tm(t);
                let _ = write!(
                    s,
                    " - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"GET /healthz HTTP/1.1\" 200 2 \"-\" \"kube-probe/1.29\" rt=0.000 uct=- upstream=- upstream_status=- host=- req_id=",
                    x.day,
                    MONTHS[(x.month - 1) as usize],
                    x.year,
                    x.hour,
                    x.min,
                    x.sec
                );
                let id = self.id128();
                Self::uuid(s, &id);
                (FRONTEND, INFO)
            }
            30..=41 => {
                self.spring_prefix(s, t, INFO, "GcMonitor");
                let before = self.rng.range(120, 900);
                let _ = write!(
                    s,
                    "GC pause (G1 Evacuation Pause) (young) {before}M->{}M(1024M) {:.3}ms, heap after {} regions, pod ",
                    before / 3,
                    self.millis(2, 40),
                    self.rng.range(40, 400)
                );
                Self::pod(s, CHECKOUT, instance);
                (CHECKOUT, INFO)
            }
            42..=53 => {
                s.push_str("time=");
                Self::iso(s, t, 3);
                let open = self.rng.range(10, 40);
                let in_use = self.rng.range(0, open);
                let exhausted = self.rng.chance(10);
                let _ = write!(
                    s,
                    " level={} msg=\"db pool stats\" pool=payments-primary open={open} in_use={in_use} idle={} wait_count={} wait_duration_ms={} max_open=40 host=",
                    if exhausted { "warn" } else { "info" },
                    open - in_use,
                    if exhausted { self.rng.range(1, 90) } else { 0 },
                    if exhausted { self.rng.range(10, 5_000) } else { 0 }
                );
                Self::pod(s, PAYMENTS, instance);
                (PAYMENTS, if exhausted { WARN } else { INFO })
            }
            54..=63 => {
                Self::local(s, t, ',');
                let hits = self.rng.range(10_000, 900_000);
                let misses = hits / self.rng.range(8, 60);
                let _ = write!(
                    s,
                    " INFO [catalog.cache] cache stats: hits={hits} misses={misses} hit_ratio={:.3} evicted={} size_mb={} pod=",
                    hits as f64 / (hits + misses) as f64,
                    self.rng.range(0, 5_000),
                    self.rng.range(200, 2_048)
                );
                Self::pod(s, CATALOG, instance);
                (CATALOG, INFO)
            }
            64..=69 => {
                Self::iso(s, t, 6);
                let rebalance = self.rng.chance(200);
                if rebalance {
                    let _ = write!(
                        s,
                        "  WARN shipping::consumer: consumer group rebalanced group=shipping-events topic=orders.v2 generation={} assigned=[{}, {}, {}] revoked=[{}]",
                        self.rng.range(100, 9_000),
                        self.rng.below(12),
                        self.rng.below(12) + 12,
                        self.rng.below(12) + 24,
                        self.rng.below(36)
                    );
                } else {
                    let _ = write!(
                        s,
                        " DEBUG shipping::consumer: committed offsets group=shipping-events topic=orders.v2 partition={} offset={} lag={}",
                        self.rng.below(36),
                        self.rng.range(1_000_000, 90_000_000),
                        self.rng.below(400)
                    );
                }
                (SHIPPING, if rebalance { WARN } else { DEBUG })
            }
            70..=81 => {
                s.push_str("ts=");
                Self::iso(s, t, 3);
                let exhausted = self.rng.chance(15);
                if exhausted {
                    let _ = write!(
                        s,
                        " lvl=error caller=cart/redis.go:{} msg=\"redis pool exhausted\" active={} idle=0 wait_ms={} addr=redis-cart-{}.cache.svc:6379 err=\"connection refused\"",
                        self.rng.range(60, 90),
                        64,
                        self.rng.range(100, 3_000),
                        self.rng.below(3)
                    );
                } else {
                    let _ = write!(
                        s,
                        " lvl=debug caller=cart/redis.go:{} msg=\"redis ping ok\" latency_us={} active={} idle={} addr=redis-cart-{}.cache.svc:6379",
                        self.rng.range(60, 90),
                        self.rng.range(60, 900),
                        self.rng.range(1, 64),
                        self.rng.range(0, 20),
                        self.rng.below(3)
                    );
                }
                (CART, if exhausted { ERROR } else { DEBUG })
            }
            82..=89 => {
                s.push_str("{\"timestamp\":\"");
                Self::iso(s, t, 3);
                let removed = self.rng.range(0, 4_000);
                let _ = write!(
                    s,
                    "\",\"level\":\"info\",\"service\":\"users\",\"msg\":\"expired sessions purged\",\"removed\":{removed},\"remaining\":{},\"took_ms\":{},\"pod\":\"",
                    self.rng.range(10_000, 400_000),
                    self.rng.range(1, 300)
                );
                Self::pod(s, USERS, instance);
                s.push_str("\"}");
                (USERS, INFO)
            }
            90..=92 => {
                Self::iso(s, t, 3);
                let deadlock = self.rng.chance(60);
                if deadlock {
                    let _ = write!(
                        s,
                        "\tERROR\tinventory/sync.go:214\twarehouse sync failed: deadlock detected, transaction rolled back\t{{\"warehouse\": \"{}\", \"batch\": {}, \"attempt\": {}}}",
                        WAREHOUSES[self.rng.below(4) as usize],
                        self.rng.range(1, 90_000),
                        self.rng.range(1, 5)
                    );
                } else {
                    let _ = write!(
                        s,
                        "\tINFO\tinventory/sync.go:190\twarehouse sync completed\t{{\"warehouse\": \"{}\", \"batch\": {}, \"updated\": {}, \"took_ms\": {}}}",
                        WAREHOUSES[self.rng.below(4) as usize],
                        self.rng.range(1, 90_000),
                        self.rng.range(0, 3_000),
                        self.rng.range(10, 4_000)
                    );
                }
                (INVENTORY, if deadlock { ERROR } else { INFO })
            }
            93..=97 => {
                Self::local(s, t, '.');
                let low = self.rng.chance(100);
                if low {
                    let _ = write!(
                        s,
                        " ERROR [短信网关] 短信余额不足, 剩余 {} 条, 请及时充值, 渠道 {}",
                        self.rng.range(0, 500),
                        OPERATORS[self.rng.below(3) as usize]
                    );
                } else {
                    let _ = write!(
                        s,
                        " INFO [短信网关] 通道健康检查通过, 运营商 {}, 延迟 {}ms, 队列长度 {}, 实例 ",
                        OPERATORS[self.rng.below(3) as usize],
                        self.rng.range(10, 300),
                        self.rng.range(0, 50)
                    );
                    Self::pod(s, SMS, instance);
                }
                (SMS, if low { ERROR } else { INFO })
            }
            _ => {
                s.push_str("{\"time\": \"");
                Self::iso(s, t, 3);
                let fatal = self.rng.chance(20);
                if fatal {
                    s.push_str("\", \"levelname\": \"CRITICAL\", \"name\": \"recs.worker\", \"message\": \"worker exited unexpectedly: out of memory while loading embeddings, restarting\", \"pid\": ");
                    let _ = write!(s, "{}}}", self.rng.range(100, 40_000));
                    (RECS, FATAL)
                } else {
                    let _ = write!(
                        s,
                        "\", \"levelname\": \"INFO\", \"name\": \"recs.refresh\", \"message\": \"embeddings refreshed: {} items, {} users, took {:.1}s\", \"model_version\": \"v3.{}\"}}",
                        self.rng.range(40_000, 60_000),
                        self.rng.range(100_000, 400_000),
                        self.rng.range(20, 900) as f64 / 10.0,
                        self.rng.below(10)
                    );
                    (RECS, INFO)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_calendar_dates() {
        // 2025-11-21T10:15:02.123456789Z
        let t = 1_763_720_102_123_456_789;
        let mut s = String::new();
        Generator::iso(&mut s, t, 6);
        assert_eq!(s, "2025-11-21T10:15:02.123456Z");
        s.clear();
        Generator::local(&mut s, t, ',');
        assert_eq!(s, "2025-11-21 10:15:02,123");
        let x = tm(951_782_400_000_000_000); // 2000-02-29
        assert_eq!((x.year, x.month, x.day), (2000, 2, 29));
    }
}
