//! Criterion benchmarks of the hot kernels: `charge(from, to)`, decimal rating of a usage
//! line, usage classification + aggregation, and one whole account through `rate_account`.
//! Run: `cargo bench --bench kernels`.

use billrun::domain::job::{Estimation, Steps};
use billrun::domain::*;
use billrun::rating::pricing::line::Applied;
use billrun::rating::{charge_exact, rate_account, AccountIn, ItemIn, RateCtx, SubIn};
use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rust_decimal::Decimal;
use std::hint::black_box;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn kernels(c: &mut Criterion) {
    let month = Period::parse("1 month").unwrap();
    let p: Decimal = "30.00".parse().unwrap();
    let mut g = c.benchmark_group("charge");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one day of a month", |b| {
        b.iter(|| charge_exact(black_box(d("2026-12-01")), black_box(d("2026-12-02")), month, black_box(p)))
    });
    g.bench_function("13 months + 17 days across month ends", |b| {
        b.iter(|| charge_exact(black_box(d("2026-01-31")), black_box(d("2027-03-20")), month, black_box(p)))
    });
    g.finish();

    let mut g = c.benchmark_group("decimal");
    g.throughput(Throughput::Elements(1));
    let q: Decimal = "1360000".parse().unwrap();
    let price: Decimal = "5.75".parse().unwrap();
    let unit: Decimal = "1000".parse().unwrap();
    g.bench_function("usage line round(q * price / unit)", |b| {
        b.iter(|| Rounding::HalfUp.round(black_box(q) * black_box(price) / black_box(unit), 2))
    });
    let amounts: Vec<Decimal> = (0..1000).map(|i| Decimal::new(i * 7 + 13, 2)).collect();
    g.throughput(Throughput::Elements(amounts.len() as u64));
    g.bench_function("aggregate 1000 usage quantities", |b| {
        b.iter(|| black_box(&amounts).iter().copied().sum::<Decimal>())
    });
    g.finish();

    // One typical account: a credit, a post-rated item, a pre-rated item.
    let steps = Steps {
        start_service: true,
        reconnection_threshold: Decimal::ZERO,
        stop_service: true,
        disconnection_threshold: Decimal::ZERO,
        wallet_estimation: Estimation::All,
        low_balance_days: 3,
    };
    let ctx = RateCtx {
        as_of: d("2026-11-22"),
        steps: &steps,
        rounding: Rounding::HalfUp,
        debit_type: "NORMAL_DEBIT",
        recurrence: Period::parse("1 day").unwrap(),
        prev_cutoff: 0,
    };
    let wallet = Wallet {
        wallet_id: "W1".into(),
        account_id: "A1".into(),
        currency: "EUR".into(),
        minor: 2,
        balance: "50.00".parse().unwrap(),
        updated_at: None,
    };
    let credit = Credit {
        credit_id: "C1".into(),
        wallet_id: "W1".into(),
        amount: "10.00".parse().unwrap(),
        transaction_type: "TOP_UP".into(),
        received_at: 0,
    };
    let sub = Subscription {
        subscription_id: "S1".into(),
        account_id: "A1".into(),
        source: "INTERNAL".into(),
        status: Status::Active,
        expires_at: None,
    };
    let gold = Service {
        service_id: "GOLD".into(),
        billing_method: BillingMethod::PreRate,
        price: p,
        currency: "EUR".into(),
        minor: 2,
        rate_period: Some(PeriodText { period: month, text: "1 month".into() }),
        advance_period: Some(PeriodText { period: Period::parse("7 days").unwrap(), text: "7 days".into() }),
        unit_size: None,
        pricing: None,
    };
    let ppv = Service {
        service_id: "PPV".into(),
        billing_method: BillingMethod::PostRate,
        price: "4.99".parse().unwrap(),
        currency: "EUR".into(),
        minor: 2,
        rate_period: None,
        advance_period: None,
        unit_size: None,
        pricing: None,
    };
    let item = |no: i64, svc: &str, billed: &str| Item {
        subscription_id: "S1".into(),
        item_no: no,
        service_id: svc.into(),
        quantity: None,
        custom_price: None,
        start_date: d("2026-10-01"),
        end_date: None,
        billed_through: Some(d(billed)),
        ext: None,
    };
    let (i1, i2) = (item(1, "GOLD", "2026-11-28"), item(2, "PPV", "2026-11-21"));
    let mut g = c.benchmark_group("rate_account");
    g.throughput(Throughput::Elements(1));
    // The priced account's (SPEC v2 §9.4, §9.5): a 20 % discount on the subscription and
    // 19 % VAT on both lines.
    let launch = Discount {
        discount_id: "D1".into(),
        subscription_id: "S1".into(),
        item_no: None,
        kind: DiscountKind::Percent,
        value: Decimal::from(20),
        remaining: None,
        start_date: d("2026-11-01"),
        end_date: None,
    };
    let vat = Some(("VAT", Decimal::from(19)));
    // The account: a credit, a pre-rated and a post-rated item; priced, with the discount
    // and the tax.
    let account = |priced: bool| {
        let (discounts, tax) = if priced { (vec![Applied { idx: 0, d: &launch }], vat) } else { (Vec::new(), None) };
        let items = vec![
            ItemIn { idx: 0, item: &i1, service: &gold, usage_qty: Decimal::ZERO, usage: None, tax },
            ItemIn { idx: 1, item: &i2, service: &ppv, usage_qty: Decimal::from(3), usage: None, tax },
        ];
        AccountIn {
            wallet: &wallet,
            wallet_idx: 0,
            credits: vec![&credit],
            subs: vec![SubIn { idx: 0, sub: &sub, items, discounts }],
        }
    };
    g.bench_function("credit + post-rate + pre-rate + estimate", |b| {
        b.iter(|| black_box(rate_account(&ctx, &account(false)).unwrap().closing))
    });
    g.bench_function("the same with a discount and a tax", |b| {
        b.iter(|| black_box(rate_account(&ctx, &account(true)).unwrap().closing))
    });
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
