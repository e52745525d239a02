//! `billrun generate`: deterministic synthetic datasets in the SPEC §3 schemas, full of the
//! edge cases the rating handles (every billing method, weekly/daily/monthly/quarterly
//! periods, custom prices, month ends, late and deferred usage, negative and zero
//! balances, disconnected and terminated subscriptions, store-managed subscriptions with
//! events, a few bad rows, retransmitted usage) and skewed (a few accounts are huge).
//!
//! Same arguments, same bytes: the PRNG is a fixed SplitMix64 (not a crate whose stream
//! may change between versions) and accounts are generated in chunks written in order.

use crate::domain::job::OutputFormat;
use crate::domain::{midnight, Micros};
use crate::error::{Error, Result};
use crate::io::write::{OutTable, TableWriter};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::path::Path;

/// SplitMix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    /// True with probability `pct`/100.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

struct Cur {
    code: &'static str,
    minor: u32,
    pre: &'static [&'static str],
    post: &'static [&'static str],
    one: &'static str,
}

const CURRENCIES: &[Cur] = &[
    Cur { code: "EUR", minor: 2, pre: &["GOLD", "WEEKLY"], post: &["PPV"], one: "STARTUP" },
    Cur { code: "USD", minor: 2, pre: &["BASIC", "ANNUAL"], post: &["DATA"], one: "SETUP" },
    Cur { code: "JPY", minor: 0, pre: &["DAILY"], post: &["CALLS"], one: "ACTIVATION" },
    Cur { code: "KWD", minor: 3, pre: &["QUARTER"], post: &["SMS"], one: "KWD_SETUP" },
];

/// (service_id, method, price, currency, rate_period, advance_period, unit_size)
type ServiceRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);
const SERVICES: &[ServiceRow] = &[
    ("ANNUAL", "PRE_RATE", "99.00", "USD", Some("12 months"), Some("1 month"), None),
    ("ACTIVATION", "ONE_TIME", "500", "JPY", None, None, None),
    ("BASIC", "PRE_RATE", "9.99", "USD", Some("1 month"), Some("0 days"), None),
    ("CALLS", "POST_RATE", "3", "JPY", None, None, Some("60")),
    ("DAILY", "PRE_RATE", "120", "JPY", Some("1 day"), Some("1 day"), None),
    ("DATA", "POST_RATE", "0.75", "USD", None, None, Some("1024")),
    ("GOLD", "PRE_RATE", "30.00", "EUR", Some("1 month"), Some("7 days"), None),
    ("KWD_SETUP", "ONE_TIME", "1.500", "KWD", None, None, None),
    ("PPV", "POST_RATE", "4.99", "EUR", None, None, None),
    ("QUARTER", "PRE_RATE", "12.345", "KWD", Some("3 months"), Some("1 month"), None),
    ("SETUP", "ONE_TIME", "19.90", "USD", None, None, None),
    ("SMS", "POST_RATE", "0.015", "KWD", None, None, None),
    ("STARTUP", "ONE_TIME", "10.00", "EUR", None, None, None),
    ("WEEKLY", "PRE_RATE", "4.50", "EUR", Some("1 week"), Some("1 week"), None),
];

/// `generate --pricing`: SPEC v2 §9.1's columns per service — (service_id, pricing_model,
/// free_units, pricing_period, txn_fee, txn_min, txn_max, tax_code, price_includes_tax).
/// Every model, gross and net prices; the services not listed stay v1.
type PricingRow = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<bool>,
);
const PRICING: &[PricingRow] = &[
    ("ANNUAL", "VOLUME", None, None, None, None, None, Some("US-TX"), Some(false)),
    ("BASIC", "GRADUATED", None, None, None, None, None, Some("US-TX"), Some(false)),
    ("CALLS", "PACKAGE", Some("60"), None, None, None, None, None, None),
    ("DATA", "VOLUME", Some("512"), Some("1 month"), None, None, None, Some("US-TX"), Some(false)),
    ("GOLD", "PER_UNIT", None, None, None, None, None, Some("VAT-DE"), Some(true)),
    ("PPV", "GRADUATED", None, Some("1 month"), None, None, None, Some("VAT-DE"), Some(true)),
    ("QUARTER", "PER_UNIT", None, None, None, None, None, Some("KW-VAT"), Some(false)),
    ("SETUP", "PER_UNIT", None, None, None, None, None, Some("US-TX"), Some(false)),
    ("SMS", "PERCENTAGE", None, None, Some("0.005"), Some("0.010"), Some("0.250"), None, None),
    ("STARTUP", "PACKAGE", None, None, None, None, None, Some("VAT-DE"), Some(true)),
];

/// (service_id, tier_no, up_to, unit_price, flat_fee).
type TierSpec = (&'static str, i64, Option<&'static str>, &'static str, Option<&'static str>);
/// The tiers of the tiered services.
const TIERS: &[TierSpec] = &[
    ("ANNUAL", 1, Some("1"), "99.00", None),
    ("ANNUAL", 2, None, "89.00", Some("10.00")),
    ("BASIC", 1, Some("1"), "9.99", None),
    ("BASIC", 2, None, "7.99", None),
    ("DATA", 1, Some("10240"), "0.75", None),
    ("DATA", 2, Some("102400"), "0.50", Some("1.00")),
    ("DATA", 3, None, "0.25", Some("5.00")),
    ("PPV", 1, Some("10"), "4.99", None),
    ("PPV", 2, Some("50"), "3.99", Some("0.50")),
    ("PPV", 3, None, "2.99", None),
];

const STORES: &[&str] = &["APPLE", "GOOGLE", "ROKU", "SAMSUNG", "AMAZON", "CARRIER"];

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn money(rng: &mut Rng, lo: i64, hi: i64, minor: u32) -> Decimal {
    let scale = 10i64.pow(minor);
    Decimal::new(rng.range(lo * scale, hi * scale), minor)
}

#[derive(Default)]
struct Chunk {
    w: [Vec<Option<String>>; 3],
    w_bal: Vec<Option<Decimal>>,
    w_upd: Vec<Option<Micros>>,
    s: [Vec<Option<String>>; 4],
    s_exp: Vec<Option<Micros>>,
    i_sub: Vec<Option<String>>,
    i_no: Vec<Option<i64>>,
    i_svc: Vec<Option<String>>,
    i_qty: Vec<Option<Decimal>>,
    i_cp: Vec<Option<Decimal>>,
    i_dates: [Vec<Option<NaiveDate>>; 3],
    u: [Vec<Option<String>>; 3],
    u_t: Vec<Option<Micros>>,
    u_q: Vec<Option<Decimal>>,
    c: [Vec<Option<String>>; 3],
    c_amt: Vec<Option<Decimal>>,
    c_t: Vec<Option<Micros>>,
    e: [Vec<Option<String>>; 4],
    e_t: Vec<Option<Micros>>,
    e_exp: Vec<Option<Micros>>,
    e_to: Vec<Option<String>>,
    e_amt: Vec<Option<Decimal>>,
    e_cur: Vec<Option<String>>,
    e_ps: Vec<Option<String>>,
}

const DAY: i64 = 86_400_000_000;

fn gen_account(rng: &mut Rng, a: u64, as_of: NaiveDate, n_accounts: u64, c: &mut Chunk) {
    let cut = midnight(as_of);
    let day = |off: i64| as_of + chrono::TimeDelta::days(off);
    let cur = &CURRENCIES[rng.below(CURRENCIES.len() as u64) as usize];
    let acc = format!("A{a:09}");
    let wid = format!("W{a:09}");
    c.w[0].push(Some(wid.clone()));
    c.w[1].push(Some(acc.clone()));
    c.w[2].push(Some(cur.code.to_string()));
    let bal = match rng.below(10) {
        0 => Decimal::ZERO,
        1 => -money(rng, 0, 5, cur.minor),
        2 => money(rng, 0, 2, cur.minor),
        _ => money(rng, 0, if cur.code == "JPY" { 20_000 } else { 200 }, cur.minor),
    };
    c.w_bal.push(Some(bal));
    c.w_upd.push(if rng.pct(30) { Some(cut - rng.range(0, 3 * DAY)) } else { None });
    if rng.pct(20) {
        for k in 0..=rng.below(2) {
            c.c[0].push(Some(format!("C{a:09}-{k}")));
            c.c[1].push(Some(wid.clone()));
            c.c[2].push(Some(if rng.pct(80) { "TOP_UP" } else { "PAYMENT" }.to_string()));
            c.c_amt.push(Some(money(rng, 1, if cur.code == "JPY" { 5000 } else { 50 }, cur.minor)));
            c.c_t.push(Some(cut - rng.range(0, DAY)));
        }
    }
    // Skew: about one account in 5000 is huge.
    let huge = n_accounts > 100 && a % 4999 == 7;
    let n_subs = if huge {
        60
    } else if rng.pct(30) {
        2
    } else {
        1
    };
    for k in 0..n_subs {
        let sid = format!("S{a:09}-{k}");
        let external = rng.pct(8);
        let source = if external { *rng.pick(STORES) } else { "INTERNAL" };
        let status = match rng.below(100) {
            0..=79 => "ACTIVE",
            80..=94 => "DISCONNECTED",
            _ => "TERMINATED",
        };
        c.s[0].push(Some(sid.clone()));
        c.s[1].push(Some(acc.clone()));
        c.s[2].push(Some(source.to_string()));
        c.s[3].push(Some(status.to_string()));
        c.s_exp.push(if external { Some(cut + rng.range(-10 * DAY, 30 * DAY)) } else { None });
        if external {
            for e in 0..rng.below(4) {
                let et =
                    *rng.pick(&["PURCHASED", "RENEWED", "REVIVED", "CANCELLED", "EXPIRED", "REVOKED", "TRANSFERRED"]);
                let when = cut - rng.range(-DAY / 2, 2 * DAY);
                c.e[0].push(Some(format!("E{a:09}-{k}-{e}")));
                c.e[1].push(Some(sid.clone()));
                c.e[2].push(Some(source.to_string()));
                c.e[3].push(Some(et.to_string()));
                c.e_t.push(Some(when));
                c.e_exp.push(if matches!(et, "PURCHASED" | "RENEWED" | "REVIVED") {
                    Some(when + rng.range(-DAY, 40 * DAY))
                } else {
                    None
                });
                c.e_to.push(if et == "TRANSFERRED" {
                    Some(format!("A{:09}", rng.below(n_accounts.max(1))))
                } else {
                    None
                });
                let paid = matches!(et, "PURCHASED" | "RENEWED") || rng.pct(10);
                c.e_amt.push(if paid { Some(money(rng, 1, 15, 2)) } else { None });
                c.e_cur.push(if paid { Some(cur.code.to_string()) } else { None });
                c.e_ps.push(if paid {
                    Some(rng.pick(&["CAPTURED", "CAPTURED", "CAPTURED", "REJECTED", "REFUNDED"]).to_string())
                } else {
                    None
                });
            }
        }
        // Items: one pre-rated, one post-rated, sometimes a one-time fee.
        let mut no = 0;
        let mut item = |c: &mut Chunk,
                        rng: &mut Rng,
                        svc: &str,
                        start: NaiveDate,
                        billed: Option<NaiveDate>,
                        end: Option<NaiveDate>| {
            no += 1;
            c.i_sub.push(Some(sid.clone()));
            c.i_no.push(Some(no));
            c.i_svc.push(Some(svc.to_string()));
            c.i_qty.push(if rng.pct(10) { Some(Decimal::from(rng.range(2, 3))) } else { None });
            c.i_cp.push(if rng.pct(10) {
                // A negotiated price: 50–120 % of the list price.
                let list = dec(SERVICES.iter().find(|x| x.0 == svc).map_or("0", |x| x.2));
                Some((list * Decimal::new(rng.range(50, 120), 2)).round_dp(cur.minor + 1))
            } else {
                None
            });
            c.i_dates[0].push(Some(start));
            c.i_dates[1].push(end);
            c.i_dates[2].push(billed);
        };
        let pre = *rng.pick(cur.pre);
        let start = day(-rng.range(-2, 120));
        let billed = match rng.below(10) {
            0 => None,
            _ => Some(day(rng.range(-5, 10)).max(start)),
        };
        let end = if rng.pct(10) { Some(day(rng.range(-3, 40))) } else { None };
        item(c, rng, pre, start, billed, end);
        let post = *rng.pick(cur.post);
        let pstart = day(-rng.range(1, 60));
        let pbilled = if rng.pct(90) { Some(day(-rng.range(1, 3))) } else { None };
        let pend = if rng.pct(5) { Some(day(rng.range(-1, 5))) } else { None };
        item(c, rng, post, pstart, pbilled, pend);
        if rng.pct(25) {
            let ostart = day(rng.range(-3, 2));
            let obilled = if rng.pct(30) { Some(ostart) } else { None };
            item(c, rng, cur.one, ostart, obilled, None);
        }
        // Usage: ~15 rows on the post-rated item.
        let window_start = midnight(pbilled.unwrap_or(pstart));
        // Store-managed and terminated subscriptions get usage only by mistake.
        let n_usage = if external || status == "TERMINATED" {
            if rng.pct(2) {
                1
            } else {
                0
            }
        } else {
            rng.range(10, 20)
        };
        for u in 0..n_usage {
            let t = match rng.below(100) {
                0..=1 => window_start - rng.range(1, DAY), // late
                2..=6 => cut + rng.range(0, DAY),          // deferred
                _ => window_start + rng.range(0, (cut - window_start).max(1) - 1),
            };
            let max_q = match post {
                "PPV" => 1,
                "DATA" => 4_000,
                "CALLS" => 600,
                _ => 10,
            };
            let q = if rng.below(1000) < 2 { Decimal::from(-1) } else { Decimal::from(rng.range(0, max_q)) };
            let (usid, svc) = if rng.below(1000) < 2 { (format!("S{a:09}-X"), post) } else { (sid.clone(), post) };
            // About one row in a thousand is sent again under the id of the row before it
            // (a retransmission; no draw from the PRNG, so the other rows stay as they were).
            let again = u > 0 && (a * 7 + k as u64 * 13 + u as u64).is_multiple_of(997);
            c.u[0].push(Some(format!("U{a:09}-{k}-{}", if again { u - 1 } else { u })));
            c.u[1].push(Some(usid));
            c.u[2].push(Some(svc.to_string()));
            c.u_t.push(Some(t));
            c.u_q.push(Some(q));
        }
    }
}

struct Writers {
    wallets: TableWriter,
    subs: TableWriter,
    items: TableWriter,
    usage: TableWriter,
    credits: TableWriter,
    events: TableWriter,
}

fn tables(c: Chunk) -> [OutTable; 6] {
    let [w0, w1, w2] = c.w;
    let [s0, s1, s2, s3] = c.s;
    let [d0, d1, d2] = c.i_dates;
    let [u0, u1, u2] = c.u;
    let [c0, c1, c2] = c.c;
    let [e0, e1, e2, e3] = c.e;
    [
        OutTable::new("wallets")
            .str("wallet_id", false, w0)
            .str("account_id", false, w1)
            .str("currency", false, w2)
            .dec("balance", false, c.w_bal)
            .ts("updated_at", true, c.w_upd),
        OutTable::new("subscriptions")
            .str("subscription_id", false, s0)
            .str("account_id", false, s1)
            .str("source", false, s2)
            .str("status", false, s3)
            .ts("expires_at", true, c.s_exp),
        OutTable::new("subscription_items")
            .str("subscription_id", false, c.i_sub)
            .int("item_no", false, c.i_no)
            .str("service_id", false, c.i_svc)
            .dec("quantity", true, c.i_qty)
            .dec("custom_price", true, c.i_cp)
            .date("start_date", false, d0)
            .date("end_date", true, d1)
            .date("billed_through", true, d2),
        OutTable::new("usage")
            .str("usage_id", false, u0)
            .str("subscription_id", false, u1)
            .str("service_id", false, u2)
            .ts("event_time", false, c.u_t)
            .dec("quantity", false, c.u_q),
        OutTable::new("credits")
            .str("credit_id", false, c0)
            .str("wallet_id", false, c1)
            .dec("amount", false, c.c_amt)
            .str("transaction_type", false, c2)
            .ts("received_at", false, c.c_t),
        OutTable::new("external_events")
            .str("event_id", false, e0)
            .str("subscription_id", false, e1)
            .str("source", false, e2)
            .str("event_type", false, e3)
            .ts("event_time", false, c.e_t)
            .ts("expires_at", true, c.e_exp)
            .str("to_account_id", true, c.e_to)
            .dec("amount", true, c.e_amt)
            .str("currency", true, c.e_cur)
            .str("payment_status", true, c.e_ps),
    ]
}

/// Accounts generated per chunk (bounded memory whatever the size).
const CHUNK_ACCOUNTS: u64 = 20_000;

/// The names `generate` writes into its `--out` directory and its `state/`, in either
/// format: a directory holding anything else is not written into (issue 34).
const OWN: [&str; 8] = [
    "state",
    "job.toml",
    "usage.parquet",
    "usage.csv",
    "credits.parquet",
    "credits.csv",
    "events.parquet",
    "events.csv",
];
const OWN_STATE: [&str; 14] = [
    "price_tiers.parquet",
    "price_tiers.csv",
    "tax_rates.parquet",
    "tax_rates.csv",
    "discounts.parquet",
    "discounts.csv",
    "services.parquet",
    "services.csv",
    "wallets.parquet",
    "wallets.csv",
    "subscriptions.parquet",
    "subscriptions.csv",
    "subscription_items.parquet",
    "subscription_items.csv",
];

/// With `--pricing`: the tiered services' items lose their negotiated prices (a custom price
/// on a tiered plan is a reject, SPEC §9.1), and about one INTERNAL subscription in eight
/// gets a discount (PERCENT or AMOUNT, the subscription's or one item's, dated around
/// `as_of`). Drawn from a stream of their own: the rest of the data is what it is without.
fn add_pricing(c: &mut Chunk, rng: &mut Rng, as_of: NaiveDate, d: &mut Discounts) {
    let tiered = |svc: &str| PRICING.iter().any(|p| p.0 == svc && matches!(p.1, "GRADUATED" | "VOLUME"));
    for (svc, cp) in c.i_svc.iter().zip(c.i_cp.iter_mut()) {
        if svc.as_deref().is_some_and(tiered) {
            *cp = None;
        }
    }
    let minor_of: std::collections::HashMap<&str, u32> = c.w[1]
        .iter()
        .zip(&c.w[2])
        .filter_map(|(a, cur)| {
            let cur = CURRENCIES.iter().find(|x| Some(x.code) == cur.as_deref())?;
            Some((a.as_deref()?, cur.minor))
        })
        .collect();
    for k in 0..c.s[0].len() {
        if c.s[2][k].as_deref() != Some("INTERNAL") || !rng.pct(12) {
            continue;
        }
        let sid = c.s[0][k].clone().unwrap_or_default();
        let minor = c.s[1][k].as_deref().and_then(|a| minor_of.get(a)).copied().unwrap_or(2);
        let start = as_of - chrono::TimeDelta::days(rng.range(0, 60));
        d.id.push(Some(format!("D{}", &sid[1..])));
        d.sub.push(Some(sid));
        d.item.push(if rng.pct(30) { Some(rng.range(1, 2)) } else { None });
        if rng.pct(60) {
            d.kind.push(Some("PERCENT".into()));
            d.value.push(Some(Decimal::from(*rng.pick(&[5, 10, 20, 50]))));
            d.remaining.push(None);
        } else {
            let value = money(rng, 1, 20, minor).max(Decimal::new(1, minor));
            d.kind.push(Some("AMOUNT".into()));
            d.remaining.push(if rng.pct(50) {
                None
            } else {
                Some((value * Decimal::new(rng.range(0, 100), 2)).round_dp(minor))
            });
            d.value.push(Some(value));
        }
        d.start.push(Some(start));
        d.end.push(if rng.pct(50) { None } else { Some(start + chrono::TimeDelta::days(rng.range(1, 120))) });
    }
}

/// The discounts `--pricing` generates, as columns.
#[derive(Default)]
struct Discounts {
    id: Vec<Option<String>>,
    sub: Vec<Option<String>>,
    item: Vec<Option<i64>>,
    kind: Vec<Option<String>>,
    value: Vec<Option<Decimal>>,
    remaining: Vec<Option<Decimal>>,
    start: Vec<Option<NaiveDate>>,
    end: Vec<Option<NaiveDate>>,
}

/// Write `--pricing`'s state tables: the services' pricing columns come with `services`;
/// here the tiers, the tax rates (VAT-DE changes 16 → 19 % a month before `as_of` and to
/// 20 % two months after it) and the discounts.
fn write_pricing_tables(state: &Path, format: OutputFormat, as_of: NaiveDate, d: Discounts) -> Result<()> {
    OutTable::new("price_tiers")
        .str("service_id", false, TIERS.iter().map(|t| Some(t.0)))
        .int("tier_no", false, TIERS.iter().map(|t| Some(t.1)))
        .dec("up_to", true, TIERS.iter().map(|t| t.2.map(dec)))
        .dec("unit_price", false, TIERS.iter().map(|t| Some(dec(t.3))))
        .dec("flat_fee", true, TIERS.iter().map(|t| t.4.map(dec)))
        .write(state, format)?;
    let day = |off: i64| as_of + chrono::TimeDelta::days(off);
    let old = NaiveDate::from_ymd_opt(2020, 1, 1).expect("a date");
    let rates = [
        ("KW-VAT", "0", old),
        ("US-TX", "6.25", old),
        ("VAT-DE", "16", old),
        ("VAT-DE", "19", day(-30)),
        ("VAT-DE", "20", day(60)),
    ];
    OutTable::new("tax_rates")
        .str("tax_code", false, rates.iter().map(|r| Some(r.0)))
        .dec("rate", false, rates.iter().map(|r| Some(dec(r.1))))
        .date("valid_from", false, rates.iter().map(|r| Some(r.2)))
        .write(state, format)?;
    OutTable::new("discounts")
        .str("discount_id", false, d.id)
        .str("subscription_id", false, d.sub)
        .int("item_no", true, d.item)
        .str("kind", false, d.kind)
        .dec("value", false, d.value)
        .dec("remaining", true, d.remaining)
        .date("start_date", false, d.start)
        .date("end_date", true, d.end)
        .write(state, format)?;
    Ok(())
}

pub fn generate_to(
    out: &Path,
    accounts: u64,
    seed: u64,
    as_of: NaiveDate,
    format: OutputFormat,
    pricing: bool,
) -> Result<String> {
    crate::io::guard::check_only_own(out, &OWN)?;
    crate::io::guard::check_only_own(&out.join("state"), &OWN_STATE)?;
    let state = out.join("state");
    std::fs::create_dir_all(&state).map_err(|e| Error::io(format!("creating {}", state.display()), e))?;
    let ext = format.ext();
    let services = OutTable::new("services")
        .str("service_id", false, SERVICES.iter().map(|s| Some(s.0.to_string())))
        .str("billing_method", false, SERVICES.iter().map(|s| Some(s.1.to_string())))
        .dec("price", false, SERVICES.iter().map(|s| Some(dec(s.2))))
        .str("currency", false, SERVICES.iter().map(|s| Some(s.3.to_string())))
        .str("rate_period", true, SERVICES.iter().map(|s| s.4.map(str::to_string)))
        .str("advance_period", true, SERVICES.iter().map(|s| s.5.map(str::to_string)))
        .dec("unit_size", true, SERVICES.iter().map(|s| s.6.map(dec)));
    let services = if pricing {
        let p = |id: &str| PRICING.iter().find(|p| p.0 == id);
        let col = |f: fn(&PricingRow) -> Option<&'static str>| SERVICES.iter().map(move |s| p(s.0).and_then(f));
        services
            .str("pricing_model", true, SERVICES.iter().map(|s| p(s.0).map(|p| p.1)))
            .dec("free_units", true, col(|p| p.2).map(|x| x.map(dec)))
            .str("pricing_period", true, col(|p| p.3))
            .dec("txn_fee", true, col(|p| p.4).map(|x| x.map(dec)))
            .dec("txn_min", true, col(|p| p.5).map(|x| x.map(dec)))
            .dec("txn_max", true, col(|p| p.6).map(|x| x.map(dec)))
            .str("tax_code", true, col(|p| p.7))
            .bool("price_includes_tax", true, SERVICES.iter().map(|s| p(s.0).and_then(|p| p.8)))
    } else {
        services
    };
    services.write(&state, format)?;
    let mut pricing_rng = Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut discounts = Discounts::default();

    let mut rng = Rng::new(seed);
    let mut writers: Option<Writers> = None;
    let mut counts = [0usize; 6];
    let mut start = 0;
    loop {
        let end = (start + CHUNK_ACCOUNTS).min(accounts);
        let mut c = Chunk::default();
        for acc in start..end {
            gen_account(&mut rng, acc, as_of, accounts, &mut c);
        }
        if pricing {
            add_pricing(&mut c, &mut pricing_rng, as_of, &mut discounts);
        }
        let ts = tables(c);
        if writers.is_none() {
            let mk = |dir: &Path, t: &OutTable| {
                TableWriter::create(&dir.join(format!("{}.{ext}", t.name)), &t.schema(), format)
            };
            writers = Some(Writers {
                wallets: mk(&state, &ts[0])?,
                subs: mk(&state, &ts[1])?,
                items: mk(&state, &ts[2])?,
                usage: mk(out, &ts[3])?,
                credits: mk(out, &ts[4])?,
                events: TableWriter::create(&out.join(format!("events.{ext}")), &ts[5].schema(), format)?,
            });
        }
        let w = writers.as_mut().unwrap();
        for (k, (t, wr)) in ts
            .iter()
            .zip([&mut w.wallets, &mut w.subs, &mut w.items, &mut w.usage, &mut w.credits, &mut w.events])
            .enumerate()
        {
            if t.rows() > 0 {
                wr.append(t)?;
            }
            counts[k] += t.rows();
        }
        start = end;
        if start >= accounts {
            break;
        }
    }
    let w = writers.unwrap();
    for wr in [w.wallets, w.subs, w.items, w.usage, w.credits, w.events] {
        wr.finish()?;
    }
    if pricing {
        write_pricing_tables(&state, format, as_of, discounts)?;
    }
    let job = format!(
        "# Generated by `billrun generate --accounts {accounts} --seed {seed} --as-of {as_of}`\n\
         name = \"generated-{seed}\"\nrecurrence = \"1 day\"\nthreads = 2\ndebit_transaction_type = \"NORMAL_DEBIT\"\n\
         rounding = \"half_up\"\noutput_format = \"{ext}\"\nmax_reject_ratio = 0.05\n\n[steps]\nstart_service = true\n\
         reconnection_threshold = \"0\"\nstop_service = true\ndisconnection_threshold = \"0\"\nwallet_estimation = \"changed\"\nlow_balance_days = 3\n"
    );
    std::fs::write(out.join("job.toml"), job).map_err(|e| Error::io("writing job.toml", e))?;
    Ok(format!(
        "generated {} accounts as of {as_of} in {}: wallets {}, subscriptions {}, items {}, usage {}, credits {}, events {}\n",
        accounts,
        out.display(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        counts[5]
    ))
}
