//! The run's summary on stdout and the reject report of `validate`.

use super::*;

/// The human summary printed to stdout.
pub fn summary(c: &RunMeta, p: &Products, ratio: f64) -> String {
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(out, "run {}  as_of {}", c.run_id, c.as_of);
    let _ = writeln!(
        out,
        "input rows {}  rejects {} (ratio {:.6}, max {})",
        c.intake.rows_read,
        c.intake.rejects.len(),
        ratio,
        c.job.max_reject_ratio
    );
    let _ = writeln!(
        out,
        "transactions {}  disconnections {}  reconnections {}  estimates {}  external payments {}",
        p.n_transactions, p.n_disconnections, p.n_reconnections, p.n_estimates, p.n_payments
    );
    for (cur, t) in &p.totals {
        let m = minor_units(cur).unwrap_or(0);
        let f = |d: Decimal| with_minor_scale(d, m).to_string();
        // Usage credits (SPEC §9.3) shown only when there are some: v1 summaries unchanged.
        let usage_credits = if t.priced.usage_credits.is_zero() {
            String::new()
        } else {
            format!(" + usage credits {}", f(t.priced.usage_credits))
        };
        let _ = writeln!(
            out,
            "{cur}: opening {} + credits {}{usage_credits} - debits {} (post {} / one-time {} / pre {}) = closing {}  residual {}",
            f(t.opening),
            f(t.credits),
            f(t.debit_total()),
            f(t.debit(TxnKind::PostRate)),
            f(t.debit(TxnKind::OneTime)),
            f(t.debit(TxnKind::PreRate)),
            f(t.closing),
            super::manifest::residual_text(t.residual).as_str().unwrap_or("")
        );
    }
    for (reason, n) in &p.rejects_by_reason {
        let _ = writeln!(out, "  reject {reason}: {n}");
    }
    out
}

/// Rejects per table and reason with the first `examples` of each, for `billrun validate`.
pub fn reject_report(intake: &Intake, examples: usize) -> String {
    use std::fmt::Write;
    let mut groups: BTreeMap<(&str, &str), Vec<&crate::validate::Reject>> = BTreeMap::new();
    let mut order: Vec<&crate::validate::Reject> = intake.rejects.iter().collect();
    order.sort_by_key(|r| (r.file_ord, r.row));
    for r in order {
        groups.entry((r.table, r.reason.as_str())).or_default().push(r);
    }
    let mut out = String::new();
    let _ = writeln!(out, "rejects by table and reason:");
    for ((table, reason), rs) in &groups {
        let _ = writeln!(out, "  {table:<20} {reason:<26} {:>9}", rs.len());
        for r in rs.iter().take(examples) {
            let _ = writeln!(out, "      {} row {} key {:?}: {}", intake.file_of(r), r.row, r.key, r.detail);
        }
    }
    let _ = writeln!(out, "input rows per table:");
    let mut per_table: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &intake.files {
        *per_table.entry(f.table).or_default() += f.rows;
    }
    for (t, n) in per_table {
        let _ = writeln!(out, "  {t:<20} {n:>12}");
    }
    out
}
