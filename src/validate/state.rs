//! The validated state: services, wallets, subscriptions and items with their indexes and
//! carried-through rejects, then the credits and events matched against it.

use super::*;

/// Item status after validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemState {
    Billable,
    /// Listed as a reject and carried through unchanged.
    Carried(Reason),
}

/// The validated state: every row that parsed, with indices for lookups.
pub struct State {
    pub services: Vec<Service>,
    pub service_idx: HashMap<Text, usize>,
    /// Whether the service is billable (not rejected `INVALID_TIERS`, SPEC §9.1).
    pub service_ok: Vec<bool>,
    /// The §9.1 tables: tiers, tax rates, discounts.
    pub pricing: super::pricing::PriceTables,
    pub wallets: Vec<Wallet>,
    wallet_by_id: IdIndex,
    pub subs: Vec<Subscription>,
    /// Whether the subscription is billable (not rejected as UNKNOWN_WALLET).
    pub sub_ok: Vec<bool>,
    /// The wallet of the subscription's account ([`NO_WALLET`] when it has none).
    sub_wallet: Vec<u32>,
    sub_by_id: IdIndex,
    pub items: Vec<Item>,
    pub item_state: Vec<ItemState>,
    /// The item's subscription and service ([`NONE`] when unknown; see [`State::item_sub`]).
    item_sub: Vec<u32>,
    pub(super) item_service: Vec<u32>,
    /// Per subscription: its POST_RATE items (billable or CURRENCY_MISMATCH), at most one per
    /// service, as CSR arrays (see [`State::post_items`]).
    post_item_idx: Vec<u32>,
    post_item_at: Vec<u32>,
}

/// The last row a lookup found, and whether the hits move forward through the table. Rows
/// that name the same subscription tend to come together (usage sorted by subscription, or
/// by time within one; items grouped by subscription), and files exported in id order name
/// the rows of a table in id order: comparing with the last hit's id, and while the hits move
/// forward with the next row's, is a compare in cache where a lookup hashes the id, probes a
/// table of millions and compares the id of a row at random (two cache misses).
#[derive(Clone, Copy, Debug, Default)]
pub struct LastHit {
    last: Option<usize>,
    forward: bool,
}

/// How far past the last hit a lookup may land for the hits to count as moving forward (the
/// gaps: subscriptions without usage, say).
const FORWARD_GAP: usize = 8;

/// How many rows after the last hit are compared before a lookup, while the hits move
/// forward. Two: in the 1M dataset's usage, of the 1,150,029 changes to a known
/// subscription, the next one is the row after the last in 1,007,872 and the row after that
/// in 124,541 (a subscription without POST_RATE items between them); further ones are rare.
const FORWARD_PROBE: usize = 2;

impl LastHit {
    /// Row `last`, or one of the [`FORWARD_PROBE`] rows after it (of a table of `n` rows)
    /// while the hits move forward, if `is_it` says it is the row looked for; else
    /// `lookup()`, remembered when found.
    pub fn find(
        &mut self,
        n: usize,
        is_it: impl Fn(usize) -> bool,
        lookup: impl FnOnce() -> Option<usize>,
    ) -> Option<usize> {
        if let Some(l) = self.last {
            if is_it(l) {
                return Some(l);
            }
            if self.forward {
                if let Some(next) = (l + 1..n.min(l + 1 + FORWARD_PROBE)).find(|&r| is_it(r)) {
                    self.last = Some(next);
                    return self.last;
                }
            }
        }
        let found = lookup();
        if let Some(f) = found {
            self.forward = self.last.is_some_and(|l| f > l && f - l <= FORWARD_GAP);
            self.last = Some(f);
        }
        found
    }
}

/// The last subscription and service the usage checks found (see [`LastHit`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Recent {
    sub: LastHit,
    service: LastHit,
    /// The last pricing period a usage row fell in: (item, its bounds in micros, its start).
    /// An item's rows tend to come together and to share a period.
    pub(super) period: Option<(usize, Micros, Micros, chrono::NaiveDate)>,
}

const NO_WALLET: u32 = u32::MAX;
/// No subscription or service: a link of an item whose reference is unknown.
const NONE: u32 = u32::MAX;

/// The subscription with this id in `subs` (indexed by `by_id`), trying `last` first: the
/// one lookup of [`State::sub_of`] and of `validate_state` (before the `State` exists).
fn sub_lookup(subs: &[Subscription], by_id: &IdIndex, id: &str, last: &mut LastHit) -> Option<usize> {
    last.find(
        subs.len(),
        |s| subs[s].subscription_id == id,
        || by_id.get(id_hash(id), |s| subs[s].subscription_id == id),
    )
}

/// The hash of a single id as [`Intake::dedupe`] indexes it (as the key `(id, 0)`).
fn id_hash(id: &str) -> u64 {
    hash_key(&(id, 0i64))
}

impl State {
    /// The POST_RATE items of subscription `si`.
    pub fn post_items(&self, si: usize) -> &[u32] {
        &self.post_item_idx[self.post_item_at[si] as usize..self.post_item_at[si + 1] as usize]
    }

    /// The wallet with this `wallet_id`.
    pub fn wallet_of(&self, wallet_id: &str) -> Option<usize> {
        self.wallet_by_id.get(id_hash(wallet_id), |w| self.wallets[w].wallet_id == wallet_id)
    }

    /// The subscription with this `subscription_id`.
    pub fn sub_of(&self, subscription_id: &str) -> Option<usize> {
        sub_lookup(&self.subs, &self.sub_by_id, subscription_id, &mut LastHit::default())
    }

    /// [`State::sub_of`], trying `recent`'s last subscription first.
    pub fn sub_of_recent(&self, subscription_id: &str, recent: &mut Recent) -> Option<usize> {
        sub_lookup(&self.subs, &self.sub_by_id, subscription_id, &mut recent.sub)
    }

    /// The service with this `service_id`, trying `recent`'s last service first.
    pub fn service_of_recent(&self, service_id: &str, recent: &mut Recent) -> Option<usize> {
        recent.service.find(
            self.services.len(),
            |v| self.services[v].service_id == service_id,
            || self.service_idx.get(service_id).copied(),
        )
    }

    /// The subscription of item `ii`, if known.
    pub fn item_sub(&self, ii: usize) -> Option<usize> {
        Some(self.item_sub[ii]).filter(|&s| s != NONE).map(|s| s as usize)
    }

    /// The service of item `ii`, if known.
    pub fn item_service(&self, ii: usize) -> Option<usize> {
        Some(self.item_service[ii]).filter(|&s| s != NONE).map(|s| s as usize)
    }

    /// Whether rating item `ii` needs its usage rows, not only their sum (SPEC §9.2–9.3).
    pub fn item_needs_rows(&self, ii: usize) -> bool {
        self.item_service(ii).is_some_and(|v| self.services[v].needs_usage_rows())
    }

    /// The wallet of subscription `si`'s account.
    pub fn wallet_of_sub(&self, si: usize) -> Option<usize> {
        Some(self.sub_wallet[si]).filter(|&w| w != NO_WALLET).map(|w| w as usize)
    }
}

/// Group `members` (member index, group) into CSR arrays over `groups` groups, members of
/// a group in the order of `members`.
pub(crate) fn group_csr(groups: usize, members: impl Iterator<Item = (u32, usize)> + Clone) -> (Vec<u32>, Vec<u32>) {
    let mut at = vec![0u32; groups + 1];
    for (_, g) in members.clone() {
        at[g + 1] += 1;
    }
    for g in 0..groups {
        at[g + 1] += at[g];
    }
    let mut next = at.clone();
    let mut idx = vec![0u32; at[groups] as usize];
    for (m, g) in members {
        idx[next[g] as usize] = m;
        next[g] += 1;
    }
    (idx, at)
}

pub struct StateSources<'a> {
    pub services: Option<&'a TableSource>,
    pub wallets: Option<&'a TableSource>,
    pub subscriptions: Option<&'a TableSource>,
    pub items: Option<&'a TableSource>,
    pub price_tiers: Option<&'a TableSource>,
    pub tax_rates: Option<&'a TableSource>,
    pub discounts: Option<&'a TableSource>,
    /// The run's as_of: the tax rates in effect.
    pub as_of: chrono::NaiveDate,
}

fn load_opt<T: Send>(
    intake: &mut Intake,
    src: Option<&TableSource>,
    specs: &[ColSpec],
    parse: impl Fn(&Row) -> Result<T, Fail> + Sync,
) -> Result<Loaded<T>> {
    match src {
        Some(s) => intake.load(s, specs, parse),
        None => Ok(Loaded::default()),
    }
}

pub fn validate_state(intake: &mut Intake, src: &StateSources) -> Result<State> {
    use rayon::prelude::*;
    let services = load_opt(intake, src.services, SERVICES, parse_service)?;
    let (mut services, _) = intake.dedupe("services", services, |s| (&s.service_id, 0));
    let service_idx: HashMap<Text, usize> =
        services.rows.iter().enumerate().map(|(i, s)| (s.service_id.clone(), i)).collect();
    let mut service_ok = vec![true; services.len()];
    let tiers = super::pricing::check_tiers(intake, src.price_tiers, &mut services, &service_idx, &mut service_ok)?;
    let services: Vec<Service> = services.rows;
    let taxes = super::pricing::load_tax_rates(intake, src.tax_rates, src.as_of)?;
    let tax_at = &taxes.1;

    // The three big tables are read side by side: a table of one row group decodes on one
    // thread, and three tables' row groups share the pool better than waves of one table.
    let (mut w_in, mut s_in, mut i_in) = (intake.fork(), intake.fork(), intake.fork());
    let (wallets, (subs, items)) = rayon::join(
        || load_opt(&mut w_in, src.wallets, WALLETS, parse_wallet),
        || {
            rayon::join(
                || load_opt(&mut s_in, src.subscriptions, SUBSCRIPTIONS, parse_subscription),
                || load_opt(&mut i_in, src.items, ITEMS, parse_item),
            )
        },
    );
    let wallets = intake.adopt(w_in, wallets)?;
    let subs = intake.adopt(s_in, subs)?;
    let items = intake.adopt(i_in, items)?;
    let (wallets, mut wallet_by_id) = intake.dedupe("wallets", wallets, |w| (&w.wallet_id, 0));
    // A second wallet for an account is a duplicate too.
    let (mut wallet_by_account, second) = IdIndex::build(wallets.len(), |i| Some(wallets.rows[i].account_id.as_str()));
    let (wallets, dropped, new_of) = wallets.split(&second);
    if !second.is_empty() {
        wallet_by_id.renumber(&new_of);
        wallet_by_account.renumber(&new_of);
    }
    for (w, o) in dropped {
        let detail = format!("account {} already has a wallet; the first occurrence wins", w.account_id);
        intake.reject("wallets", o, w.wallet_id.clone(), Reason::DuplicateKey, detail);
    }
    let wallets: Vec<Wallet> = wallets.rows;
    let wallet_of_account =
        |account: &str| wallet_by_account.get(hash_key(account), |w| wallets[w].account_id == account);

    let (subs, sub_by_id) = intake.dedupe("subscriptions", subs, |s| (&s.subscription_id, 0));
    // An account's subscriptions tend to come together: try the last one's wallet first.
    let sub_wallet: Vec<u32> = subs
        .rows
        .par_iter()
        .with_min_len(4096)
        .map_init(LastHit::default, |last, s| {
            last.find(wallets.len(), |w| wallets[w].account_id == s.account_id, || wallet_of_account(&s.account_id))
                .map_or(NO_WALLET, |w| w as u32)
        })
        .collect();
    let sub_ok: Vec<bool> =
        subs.rows.par_iter().zip(&sub_wallet).map(|(s, &w)| !s.is_internal() || w != NO_WALLET).collect();
    for ((s, o), _) in subs.iter().zip(&sub_ok).filter(|(_, ok)| !**ok) {
        let detail = format!("account {} has no wallet", s.account_id);
        intake.reject("subscriptions", o, s.subscription_id.clone(), Reason::UnknownWallet, detail);
    }
    let subs: Vec<Subscription> = subs.rows;
    drop(wallet_by_account);

    let (items, _) = intake.dedupe("subscription_items", items, |i| (&i.subscription_id, i.item_no));
    // A second item for the same POST_RATE service of a subscription is a duplicate.
    let is_post = |it: &Item| {
        service_idx.get(&it.service_id).is_some_and(|&k| services[k].billing_method == BillingMethod::PostRate)
    };
    let service_of = |id: &str| service_idx.get(id).copied().filter(|&v| service_ok[v]);
    let (_, second) = IdIndex::build(items.len(), |i| {
        let it = &items.rows[i];
        is_post(it).then(|| (it.subscription_id.as_str(), it.service_id.as_str()))
    });
    let (items, dropped, _) = items.split(&second);
    for (it, o) in dropped {
        let detail =
            format!("subscription {} already has an item for POST_RATE service {}", it.subscription_id, it.service_id);
        intake.reject("subscription_items", o, it.key(), Reason::DuplicateKey, detail);
    }
    // Each item's subscription, service and state, decided in parallel.
    let links: Vec<(Option<u32>, Option<u32>, ItemState)> = items
        .rows
        .par_iter()
        .with_min_len(4096)
        .map_init(LastHit::default, |last, it| {
            let si = sub_lookup(&subs, &sub_by_id, &it.subscription_id, last);
            let sv = service_of(&it.service_id);
            let state = match (si, sv) {
                (None, _) => ItemState::Carried(Reason::UnknownSubscription),
                (Some(s), _) if !sub_ok[s] => ItemState::Carried(Reason::UnknownSubscription),
                (_, None) => ItemState::Carried(Reason::UnknownService),
                (Some(s), Some(v)) => {
                    let w = sub_wallet[s];
                    let mismatch =
                        subs[s].is_internal() && w != NO_WALLET && wallets[w as usize].currency != services[v].currency;
                    let svc = &services[v];
                    if mismatch {
                        ItemState::Carried(Reason::CurrencyMismatch)
                    } else if subs[s].is_internal() && it.custom_price.is_some() && svc.model().tiered() {
                        ItemState::Carried(Reason::PricingMismatch)
                    } else if subs[s].is_internal()
                        && it.tax_code().or(svc.tax_code()).is_some_and(|c| !tax_at.contains_key(c))
                    {
                        ItemState::Carried(Reason::UnknownTaxCode)
                    } else {
                        ItemState::Billable
                    }
                }
            };
            (si.map(|x| x as u32), sv.map(|x| x as u32), state)
        })
        .collect();
    // The rejects (rare) and the POST_RATE items in one pass that reads the items in place;
    // then the links become columns (in parallel), and the items stay where they were parsed
    // into (moving millions of items into a new vector cost one thread the faulting in of
    // the new vector's pages).
    let mut post_items: Vec<(u32, usize)> = Vec::new();
    for (idx, ((it, o), &(si, sv, state))) in items.iter().zip(&links).enumerate() {
        if let ItemState::Carried(reason) = state {
            let detail = match reason {
                Reason::UnknownSubscription => {
                    format!("subscription {} is unknown or rejected", it.subscription_id)
                }
                Reason::UnknownService => {
                    format!("service {} is unknown or rejected", it.service_id)
                }
                Reason::PricingMismatch => format!(
                    "custom_price {} on {} service {}: a negotiated tier set is a service of its own",
                    it.custom_price.unwrap_or_default(),
                    services[sv.unwrap() as usize].model().as_str(),
                    it.service_id
                ),
                Reason::UnknownTaxCode => format!(
                    "tax code {} has no rate in effect at {}",
                    it.tax_code().or(services[sv.unwrap() as usize].tax_code()).unwrap_or_default(),
                    src.as_of
                ),
                _ => {
                    let w = &wallets[sub_wallet[si.unwrap() as usize] as usize];
                    format!(
                        "service {} is in {}, wallet {} in {}",
                        it.service_id,
                        services[sv.unwrap() as usize].currency,
                        w.wallet_id,
                        w.currency
                    )
                }
            };
            intake.reject("subscription_items", o, it.key(), reason, detail);
        }
        if let (Some(s), Some(v)) = (si, sv) {
            if services[v as usize].billing_method == BillingMethod::PostRate
                && matches!(
                    state,
                    ItemState::Billable
                        | ItemState::Carried(
                            Reason::CurrencyMismatch | Reason::PricingMismatch | Reason::UnknownTaxCode
                        )
                )
            {
                post_items.push((idx as u32, s as usize));
            }
        }
    }
    let item_state: Vec<ItemState> = links.par_iter().map(|l| l.2).collect();
    let item_sub: Vec<u32> = links.par_iter().map(|l| l.0.unwrap_or(NONE)).collect();
    let item_service: Vec<u32> = links.par_iter().map(|l| l.1.unwrap_or(NONE)).collect();
    drop(links);
    let items_out: Vec<Item> = items.rows;
    let (post_item_idx, post_item_at) = group_csr(subs.len(), post_items.iter().copied());
    let discounts = {
        // Each subscription's items (CSR, 4 bytes an item), for the discounts that name one.
        let (by_sub, at) = match src.discounts {
            Some(_) => group_csr(
                subs.len(),
                item_sub.iter().enumerate().filter(|(_, &s)| s != NONE).map(|(i, &s)| (i as u32, s as usize)),
            ),
            None => (Vec::new(), vec![0; subs.len() + 1]),
        };
        let has_item = |s: usize, no: i64| {
            by_sub[at[s] as usize..at[s + 1] as usize].iter().any(|&i| items_out[i as usize].item_no == no)
        };
        super::pricing::check_discounts(
            intake,
            src.discounts,
            &subs,
            &sub_ok,
            |id| sub_lookup(&subs, &sub_by_id, id, &mut LastHit::default()),
            has_item,
        )?
    };
    let has = |t: Option<&TableSource>, names: &[&str]| -> Result<bool> {
        t.map_or(Ok(false), |t| crate::io::read::has_any_column(&t.files, names))
    };
    let pricing = super::pricing::price_tables(
        tiers,
        taxes,
        discounts,
        has(src.services, SERVICE_V2_COLUMNS)?,
        has(src.items, &["tax_code"])?,
    );
    Ok(State {
        services,
        service_idx,
        service_ok,
        pricing,
        wallets,
        wallet_by_id,
        subs,
        sub_ok,
        sub_wallet,
        sub_by_id,
        items: items_out,
        item_state,
        item_sub,
        item_service,
        post_item_idx,
        post_item_at,
    })
}

/// Credits: parsed, deduplicated on `credit_id`, and matched to their wallet
/// (`UNKNOWN_WALLET` otherwise). Returns the credits and their wallet indices.
pub fn validate_credits(intake: &mut Intake, src: Option<&TableSource>, st: &State) -> Result<ValidCredits> {
    use rayon::prelude::*;
    let Some(src) = src else { return Ok((Vec::new(), Vec::new())) };
    let rows = intake.load(src, CREDITS, parse_credit)?;
    let rows = intake.dedupe("credits", rows, |c| (&c.credit_id, 0)).0;
    // The wallets looked up on the pool; the credits stay where they were read (millions of
    // rows at 10M accounts: no second copy into fresh pages), the unknown ones taken out.
    let found: Vec<Option<usize>> =
        rows.rows.par_iter().with_min_len(4096).map(|c| st.wallet_of(&c.wallet_id)).collect();
    let unknown: Vec<usize> = found.iter().enumerate().filter(|(_, w)| w.is_none()).map(|(i, _)| i).collect();
    let (kept, _) = intake.reject_rows("credits", rows, &unknown, |c| {
        let detail = format!("wallet {} is unknown or rejected", c.wallet_id);
        (c.credit_id, Reason::UnknownWallet, detail)
    });
    Ok((kept.rows, found.into_iter().flatten().collect()))
}

/// Valid credits, and the wallet row of each.
pub type ValidCredits = (Vec<Credit>, Vec<usize>);
/// Valid store events, and the subscription row of each.
pub type ValidEvents = (Vec<Event>, Vec<usize>);

/// [`validate_credits`] and [`validate_events`] side by side (each table's files are one or
/// few row groups, and each ends in a sequential dedupe): files and rejects come out
/// numbered and ordered as running the two one after the other would.
pub fn validate_credits_and_events(
    intake: &mut Intake,
    credits: Option<&TableSource>,
    events: &[&TableSource],
    st: &State,
) -> Result<(ValidCredits, ValidEvents)> {
    let (mut c_in, mut e_in) = (intake.fork(), intake.fork());
    let (c, e) = rayon::join(|| validate_credits(&mut c_in, credits, st), || validate_events(&mut e_in, events, st));
    intake.adopt_files(c_in);
    let c = c?;
    intake.adopt_files(e_in);
    Ok((c, e?))
}

/// Store events from `deferred_events` then the new files: parsed, deduplicated on
/// `event_id` across both, and matched to an externally managed subscription of the same
/// source (`UNKNOWN_SUBSCRIPTION`, `SOURCE_MISMATCH` otherwise). Returns the events with
/// their subscription rows. Each file's events stay where they were read (the subscriptions
/// looked up on the pool, the rejected rows taken out): events are wide rows, and copying
/// millions of them into fresh pages was most of this step at 10M accounts.
pub fn validate_events(intake: &mut Intake, sources: &[&TableSource], st: &State) -> Result<ValidEvents> {
    use rayon::prelude::*;
    let (mut events, mut subs) = (Vec::new(), Vec::new());
    let mut seen = HashSet::default();
    for src in sources {
        let rows = intake.load(src, EVENTS, parse_event)?;
        seen.reserve(rows.len());
        let found: Vec<Option<usize>> = rows
            .rows
            .par_iter()
            .with_min_len(4096)
            .map(|e| st.sub_of(&e.subscription_id).filter(|&s| st.sub_ok[s]))
            .collect();
        // Each row's fate in read order (the first occurrence of an event_id wins, across
        // the sources too): the rejected rows' positions with their reasons.
        let mut failed: Vec<usize> = Vec::new();
        let mut why: Vec<(Reason, String)> = Vec::new();
        for (i, (e, s)) in rows.rows.iter().zip(&found).enumerate() {
            let fail = if !seen.insert(e.event_id.clone()) {
                Some((Reason::DuplicateKey, format!("duplicate event_id {}; the first occurrence wins", e.event_id)))
            } else {
                match *s {
                    None => Some((
                        Reason::UnknownSubscription,
                        format!("subscription {} is unknown or rejected", e.subscription_id),
                    )),
                    Some(s) if st.subs[s].is_internal() || st.subs[s].source != e.source => Some((
                        Reason::SourceMismatch,
                        format!(
                            "event source {} but subscription {} is {}",
                            e.source, e.subscription_id, st.subs[s].source
                        ),
                    )),
                    Some(s) => {
                        subs.push(s);
                        None
                    }
                }
            };
            if let Some(f) = fail {
                failed.push(i);
                why.push(f);
            }
        }
        let mut why = why.into_iter();
        let (kept, _) = intake.reject_rows(src.table, rows, &failed, |e| {
            let (reason, detail) = why.next().expect("a reason per row taken out");
            (e.event_id, reason, detail)
        });
        if events.is_empty() {
            events = kept.rows;
        } else {
            events.extend(kept.rows);
        }
    }
    Ok((events, subs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_csr_keeps_member_order_within_groups() {
        let (idx, at) = group_csr(3, [(10u32, 2usize), (11, 0), (12, 2), (13, 0)].into_iter());
        assert_eq!(at, vec![0, 2, 2, 4]);
        assert_eq!(idx, vec![11, 13, 10, 12]);
    }

    #[test]
    fn last_hit_answers_as_the_lookup_does() {
        let ids = ["a", "b", "c"];
        let lookups = std::cell::Cell::new(0);
        let lookup = |id: &str| {
            lookups.set(lookups.get() + 1);
            ids.iter().position(|&x| x == id)
        };
        let run = |asked: &[&str]| {
            lookups.set(0);
            let mut last = LastHit::default();
            let found: Vec<_> = asked.iter().map(|&id| last.find(ids.len(), |i| ids[i] == id, || lookup(id))).collect();
            assert_eq!(found, asked.iter().map(|&id| ids.iter().position(|&x| x == id)).collect::<Vec<_>>());
            lookups.get()
        };
        // Looked up: the first "a", the three unknown "zz", the first "b", the last "a"; a
        // miss ("zz") keeps the last hit, so the "a" and "b" after it are not looked up, and
        // "c" is the row after "b", which followed "a".
        assert_eq!(run(&["a", "a", "zz", "a", "b", "b", "zz", "zz", "b", "c", "a"]), 6);
        // In table order: "a" and "b" are looked up, then the hits move forward and "c" is
        // the row after "b" (the end of the table is never read past).
        assert_eq!(run(&["a", "a", "b", "b", "c", "c", "zz"]), 3);
        // A jump back ends the moving forward: "c" after "a" is looked up again.
        assert_eq!(run(&["a", "b", "a", "c"]), 4);
    }
}
