//! Property tests of SPEC v2 §9.3's pricing periods, on whole chained runs: for random tiers
//! and random usage split into random runs, a period's list amounts (usage credits negative)
//! add up to `round(A(total))`, daily runs bill what one monthly run bills, and money is
//! conserved with discounts, taxes and usage credits. `A` is computed here from SPEC §9.2's
//! text, independently of the engine.

mod util;
use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};
use std::path::Path;
use util::*;

/// A random price plan of one POST_RATE service with a monthly pricing period.
#[derive(Clone, Debug)]
struct PlanCase {
    model: &'static str,
    free_units: u32,
    unit_size: u32,
    price: Decimal,
    /// (up_to, unit_price, flat_fee), the last unbounded.
    tiers: Vec<(Option<u32>, Decimal, Decimal)>,
}

fn cents(c: u32) -> Decimal {
    Decimal::new(c as i64, 2)
}

fn plan() -> impl Strategy<Value = PlanCase> {
    let tiers = prop::collection::vec((1u32..40, 0u32..900, 0u32..500), 1..4).prop_map(|raw| {
        let mut up = 0;
        let n = raw.len();
        raw.into_iter()
            .enumerate()
            .map(|(i, (step, p, f))| {
                up += step;
                (if i + 1 == n { None } else { Some(up) }, cents(p), cents(f))
            })
            .collect::<Vec<_>>()
    });
    (prop::sample::select(vec!["GRADUATED", "VOLUME", "PACKAGE", "PER_UNIT"]), 0u32..6, 1u32..4, 1u32..900, tiers)
        .prop_map(|(model, free_units, unit_size, p, tiers)| PlanCase {
            model,
            free_units,
            unit_size,
            price: cents(p),
            tiers,
        })
}

/// SPEC §9.2's `A(q)`, exact.
fn list_amount(p: &PlanCase, q: Decimal) -> Decimal {
    let b = (q - Decimal::from(p.free_units)).max(Decimal::ZERO);
    let s = Decimal::from(p.unit_size);
    match p.model {
        "PER_UNIT" => b * p.price / s,
        "PACKAGE" => (b / s).ceil() * p.price,
        "VOLUME" => {
            let t = p.tiers.iter().find(|t| t.0.is_none_or(|u| b <= Decimal::from(u))).unwrap();
            t.2 + b * t.1 / s
        }
        _ => {
            let mut a = Decimal::ZERO;
            let mut lower = Decimal::ZERO;
            for (i, t) in p.tiers.iter().enumerate() {
                if i > 0 && b <= lower {
                    break;
                }
                let upper = t.0.map_or(b, |u| Decimal::from(u).min(b));
                a += t.2 + (upper - lower).max(Decimal::ZERO) * t.1 / s;
                lower = t.0.map_or(lower, Decimal::from);
            }
            a
        }
    }
}

fn round(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// A state of one wallet (balance 100000.00 EUR) and one subscription whose item 1 is priced
/// by `p` over a `1 month` pricing period from 2026-11-01; `extras` adds a discount and a tax.
fn write_state(dir: &Path, p: &PlanCase, extras: bool) {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let w = |name: &str, text: String| std::fs::write(dir.join("state").join(name), text).unwrap();
    let (tax, incl) = if extras { ("VAT", "true") } else { ("", "") };
    w(
        "services.csv",
        format!(
            "service_id,billing_method,price,currency,rate_period,unit_size,pricing_model,free_units,pricing_period,tax_code,price_includes_tax\n\
             USE,POST_RATE,{},EUR,,{},{},{},1 month,{tax},{incl}\n\
             FEE,PRE_RATE,9.90,EUR,1 month,,,,,{tax},false\n",
            p.price, p.unit_size, p.model, p.free_units
        ),
    );
    let mut tiers = String::from("service_id,tier_no,up_to,unit_price,flat_fee\n");
    if matches!(p.model, "GRADUATED" | "VOLUME") {
        for (i, t) in p.tiers.iter().enumerate() {
            tiers.push_str(&format!(
                "USE,{},{},{},{}\n",
                i + 1,
                t.0.map(|u| u.to_string()).unwrap_or_default(),
                t.1,
                t.2
            ));
        }
    }
    w("price_tiers.csv", tiers);
    w("tax_rates.csv", "tax_code,rate,valid_from\nVAT,19,2026-01-01\n".into());
    let discounts = if extras {
        "discount_id,subscription_id,item_no,kind,value,remaining,start_date,end_date\n\
         D1,S1,1,PERCENT,15,,2026-11-01,\nD2,S1,,AMOUNT,30.00,,2026-11-01,\n"
    } else {
        "discount_id,subscription_id,item_no,kind,value,remaining,start_date,end_date\n"
    };
    w("discounts.csv", discounts.into());
    w("wallets.csv", "wallet_id,account_id,currency,balance,updated_at\nW1,A1,EUR,100000.00,\n".into());
    w("subscriptions.csv", "subscription_id,account_id,source,status,expires_at\nS1,A1,INTERNAL,ACTIVE,\n".into());
    w(
        "subscription_items.csv",
        "subscription_id,item_no,service_id,quantity,custom_price,start_date,end_date,billed_through\n\
         S1,1,USE,,,2026-11-01,,2026-11-01\nS1,2,FEE,,,2026-11-01,,2026-11-01\n"
            .into(),
    );
    std::fs::write(
        dir.join("job.toml"),
        "name = \"periods\"\nrecurrence = \"1 day\"\nthreads = 2\noutput_format = \"csv\"\nmax_reject_ratio = 0.0\n\
         [steps]\nstop_service = false\nstart_service = false\nwallet_estimation = \"all\"\n",
    )
    .unwrap();
}

fn write_usage(path: &Path, rows: &[(u32, u32)]) {
    let mut t = String::from("usage_id,subscription_id,service_id,event_time,quantity\n");
    for (k, (day, q)) in rows.iter().enumerate() {
        t.push_str(&format!("U{k},S1,USE,2026-11-{day:02}T12:00:00Z,{q}\n"));
    }
    std::fs::write(path, t).unwrap();
}

/// Run on `state` at `as_of` with `usage` into `out`.
fn run_on(dir: &Path, state: &Path, usage: &Path, as_of: &str, out: &Path) {
    let job = dir.join("job.toml");
    billrun([
        "run",
        "--job",
        job.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--usage",
        usage.to_str().unwrap(),
        "--as-of",
        as_of,
        "--output",
        out.to_str().unwrap(),
    ])
    .ok();
}

/// The USE lines of a run: (signed list amount, signed amount), CREDIT-direction negative.
fn use_lines(out: &Path) -> Vec<(Decimal, Decimal)> {
    let (h, rows) = csv_table(&out.join("wallet_transactions.csv"));
    let c = |n: &str| h.iter().position(|x| x == n).unwrap();
    rows.iter()
        .filter(|r| r[c("service_id")] == "USE")
        .map(|r| {
            let sign = if r[c("direction")] == "CREDIT" { -Decimal::ONE } else { Decimal::ONE };
            (sign * r[c("list_amount")].parse::<Decimal>().unwrap(), sign * r[c("amount")].parse::<Decimal>().unwrap())
        })
        .collect()
}

/// Opening + usage credits − debits = closing, from the files alone.
fn conserved(opening: Decimal, out: &Path) {
    let (h, rows) = csv_table(&out.join("wallet_transactions.csv"));
    let c = |n: &str| h.iter().position(|x| x == n).unwrap();
    let mut bal = opening;
    for r in &rows {
        let a: Decimal = r[c("amount")].parse().unwrap();
        bal += if r[c("direction")] == "CREDIT" { a } else { -a };
        assert_eq!(bal, r[c("balance_after")].parse::<Decimal>().unwrap(), "balance_after chain");
    }
    let closing: Decimal = csv_lookup(&out.join("wallets.csv"), "wallet_id", "W1", "balance")[0].parse().unwrap();
    assert_eq!(bal, closing, "opening + credits - debits = closing");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Usage on random days of November, billed by runs on random days (each the next
    /// night's state from the last), adds up to `round(A(total))`; one monthly run on the
    /// same usage bills the same in one line; with a discount, a tax and the budget refilled
    /// by credits, money is conserved on every night.
    #[test]
    fn a_periods_charges_add_up_whatever_the_runs(
        p in plan(),
        usage in prop::collection::vec((1u32..30, 0u32..60), 1..12),
        cuts in prop::collection::btree_set(2u32..30, 0..6),
        extras in any::<bool>(),
    ) {
        let s = Scratch::new();
        let dir = s.path("case");
        write_state(&dir, &p, extras);
        let total: u32 = usage.iter().map(|u| u.1).sum();
        let want = round(list_amount(&p, Decimal::from(total)));

        // The runs: as_of each cut, then 2026-12-01 (the period's end); each run's usage file
        // holds the rows of its window.
        let mut bounds: Vec<u32> = cuts.into_iter().collect();
        bounds.push(31);
        let (mut state, mut from, mut lines) = (dir.join("state"), 1u32, Vec::new());
        let mut opening = Decimal::new(10000000, 2);
        for (k, &to) in bounds.iter().enumerate() {
            let rows: Vec<(u32, u32)> = usage.iter().copied().filter(|u| u.0 >= from && u.0 < to).collect();
            let file = dir.join(format!("usage-{k}.csv"));
            write_usage(&file, &rows);
            let out = s.path(&format!("run-{k}"));
            let as_of = if to == 31 { "2026-12-01".to_string() } else { format!("2026-11-{to:02}") };
            run_on(&dir, &state, &file, &as_of, &out);
            conserved(opening, &out);
            opening = csv_lookup(&out.join("wallets.csv"), "wallet_id", "W1", "balance")[0].parse().unwrap();
            lines.extend(use_lines(&out));
            state = out;
            from = to;
        }
        let billed: Decimal = lines.iter().map(|l| l.0).sum();
        prop_assert_eq!(billed, want, "{} runs billed {:?}", bounds.len(), lines);

        // One run over the whole month.
        let file = dir.join("usage-all.csv");
        write_usage(&file, &usage);
        let out = s.path("monthly");
        run_on(&dir, &dir.join("state"), &file, "2026-12-01", &out);
        let monthly = use_lines(&out);
        prop_assert_eq!(monthly.iter().map(|l| l.0).sum::<Decimal>(), want);
        prop_assert!(monthly.len() <= 1, "one line a month: {:?}", monthly);
    }
}
