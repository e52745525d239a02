#!/usr/bin/env python3
"""mutate.py SRC DST SEED [--pricing] [--as-of YYYY-MM-DD]: copy a dataset from
`billrun generate --format csv`, injecting edge cases (unparsable and out-of-domain values,
duplicates, second wallets, unknown references, currency mismatches, other timestamp forms and
offsets, events of the wrong store, transfers) and extra services (2-week periods, a 0-day
period, unit_size 0, half-cent prices), and writing a job with random steps, thresholds,
rounding, recurrence and estimation mode. Deterministic for a seed.

--pricing: on top of that, a SPEC v2 §9 pricing dataset: the services' §9.1 columns (all five
models, free units, pricing periods, transaction fees, tax codes, gross prices), price_tiers,
tax_rates and discounts state tables, the items' tax_code and period_* columns, and items and
usage of extra services of every model; with rows that must come out INVALID_VALUE,
INVALID_TIERS, UNKNOWN_SERVICE, PRICING_MISMATCH, UNKNOWN_TAX_CODE, UNKNOWN_ITEM,
SOURCE_MISMATCH... It draws from its own generator, so the v1 part of the output is the same
bytes with or without it. The dates are placed around the run's as_of: `--as-of`, else the
`--as-of` of the generator's command line in SRC/job.toml's comment."""
import csv, os, random, re, sys, shutil

src, dst, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
opts = sys.argv[4:]
PRICING = '--pricing' in opts
AS_OF = opts[opts.index('--as-of') + 1] if '--as-of' in opts else None
R = random.Random(seed)
shutil.rmtree(dst, ignore_errors=True)
os.makedirs(dst + '/state')


def load(p):
    with open(p, newline='') as f:
        r = list(csv.reader(f))
    return r[0], r[1:]


def save(p, h, rows):
    with open(p, 'w', newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        w.writerow(h)
        w.writerows(rows)


T = {}
for n in ['services', 'wallets', 'subscriptions', 'subscription_items']:
    T[n] = load(f'{src}/state/{n}.csv')
for n in ['usage', 'credits', 'events']:
    T[n] = load(f'{src}/{n}.csv')

P = 0.01  # per-row mutation probability


def col(h, name):
    return h.index(name)


def bad_dec():
    return R.choice(['1.', '.5', 'abc', '1e3', '--1', '1,5', ' 1', '12345678901234567890123456789.5', '0.0000000000000000001'])


def bad_date():
    return R.choice(['2026-02-30', '2026-13-01', '26-11-01', '2026/11/01', '2026-11-1', 'x'])


def bad_ts():
    return R.choice(['2026-11-21', '2026-11-21T25:00:00Z', '2026-11-21T10:00', 'yesterday', '2026-11-21T10:00:00+0100'])


def good_ts_variant(s):
    # rewrite a timestamp in another accepted form with the same instant
    if not s or 'T' not in s:
        return s
    d, t = s.rstrip('Z').split('T')
    choice = R.randrange(4)
    if choice == 0:
        return f'{d} {t}'
    if choice == 1:
        return f'{d}T{t}+00:00'
    if choice == 2:
        # +01:00 offset: shift hour
        import datetime as dt
        base = dt.datetime.fromisoformat(d + 'T' + t)
        loc = base + dt.timedelta(hours=1)
        return loc.isoformat() + '+01:00'
    return f'{d}T{t.split(".")[0]}'


h, rows = T['services']
# an extra service with a custom edge: weekly 2 weeks, and a service with unit_size 0 (invalid), and a duplicate
rows.append(['BIWEEK', 'PRE_RATE', '7.77', 'USD', '2 weeks', '3 days', ''])
rows.append(['ZERO', 'POST_RATE', '1', 'USD', '', '', '0'])
rows.append(['NOPERIOD', 'PRE_RATE', '1', 'USD', '', '', ''])
rows.append(['BADCUR', 'ONE_TIME', '1', 'XYZ', '', '', ''])
rows.append(['QTR_EUR', 'PRE_RATE', '100', 'EUR', '1 month', '2 months', ''])
rows.append([rows[0][0]] + rows[0][1:])  # duplicate
rows.append(['DAYS0', 'PRE_RATE', '5', 'EUR', '0 days', '', ''])
rows.append(['HALF', 'POST_RATE', '0.005', 'USD', '', '', '1'])
rows.append(['JPYHALF', 'POST_RATE', '0.5', 'JPY', '', '', '1'])
svc_all = [r[0] for r in rows]

def put(c, f):
    """A mutation setting column `c` (an index, or a function drawing one) to `f(r)`."""
    def case(r):
        v = f(r)
        r[c() if callable(c) else c] = v
    return case


def when(cond, case):
    """`case` for rows where `cond(r)` holds; other rows fall through to the next band."""
    return lambda r: case(r) if cond(r) else False


def mutate(name, bands, extras):
    """Rewrite table `name` row by row: one draw x picks the first band (upper bound, case)
    with x below its bound whose case applies (a case returning False does not); then each
    (probability, make) of `extras` appends make(row) with that probability."""
    h, rows = T[name]
    new = []
    for r in rows:
        r = list(r)
        x = R.random()
        for bound, case in bands:
            if x < bound and case(r) is not False:
                break
        new.append(r)
        for p, make in extras:
            if R.random() < p:
                new.append(make(r))
    T[name] = (h, new)
    return new


def bands(width, *cases):
    return [((i + 1) * width, c) for i, c in enumerate(cases)]


dup = (P, list)  # the same row again: a duplicate key

accts = [r[1] for r in T['wallets'][1]]
mutate('wallets', bands(
    P,
    put(3, lambda r: bad_dec()),
    put(lambda: R.choice([0, 1, 2, 3]), lambda r: ''),
    put(2, lambda r: 'ABC'),
    when(lambda r: r[4], put(4, lambda r: good_ts_variant(r[4]))),
    put(4, lambda r: R.choice(['2026-11-21T06:00:00Z', '2026-11-20T23:59:59Z', '2026-11-22 00:00:00'])),
), [(P, lambda r: [r[0] + 'x', r[1], r[2], '5', '']),  # second wallet for the account
    dup])

new = mutate('subscriptions', bands(
    P,
    put(3, lambda r: R.choice(['active', 'PAUSED', ''])),
    put(1, lambda r: 'A-NOWALLET-' + r[1]),
    put(4, lambda r: bad_ts()),
    put(3, lambda r: R.choice(['ACTIVE', 'DISCONNECTED', 'TERMINATED'])),
    when(lambda r: r[4], put(4, lambda r: good_ts_variant(r[4]))),
), [(P / 2, list)])
sub_src = {r[0]: r[2] for r in new}


def other_item_no(r):
    """The same service under another item_no."""
    rr = list(r)
    rr[1] = str(int(r[1]) + 50) if r[1].isdigit() else '77'
    return rr


new = mutate('subscription_items', bands(
    P,
    put(1, lambda r: R.choice(['0', '-1', 'x', '1.5', ''])),
    put(2, lambda r: R.choice(svc_all + ['NOPE'])),
    put(3, lambda r: R.choice(['-1', '2', '0', '3', bad_dec()])),
    put(4, lambda r: R.choice(['0', '1.23', '0.001', '-2', bad_dec()])),
    put(5, lambda r: R.choice([bad_date(), '', '2026-11-22', '2026-11-23', '2026-01-31'])),
    put(6, lambda r: R.choice([bad_date(), '2026-11-22', '2026-11-21', '2026-11-23', '2026-12-31'])),
    put(7, lambda r: R.choice([bad_date(), '', '2026-11-22', '2026-11-23', '2026-10-31', '2027-01-31'])),
    put(0, lambda r: 'S-UNKNOWN-' + r[0]),
), [dup, (P, other_item_no)])
# some extra items of new services on random internal subs
internal = [s for s, src_ in sub_src.items() if src_ == 'INTERNAL']
for s in R.sample(internal, min(len(internal), 60)):
    sv = R.choice(['BIWEEK', 'ZERO', 'NOPERIOD', 'BADCUR', 'QTR_EUR', 'DAYS0', 'HALF', 'JPYHALF', 'GOLD', 'WEEKLY', 'DAILY'])
    new.append([s, str(R.randint(90, 99)), sv, R.choice(['', '1', '2', '0.5']), R.choice(['', '', '3.333']),
                R.choice(['2026-10-31', '2026-11-22', '2026-01-30', '2026-11-25']), R.choice(['', '', '2026-12-05', '2026-11-22']),
                R.choice(['', '', '2026-11-22', '2026-11-30', '2026-11-01'])])

new = mutate('usage', bands(
    P,
    put(2, lambda r: R.choice(svc_all + ['NOPE'])),
    put(3, lambda r: R.choice([bad_ts(), good_ts_variant(r[3]), '2026-11-22T00:00:00Z', '2026-11-21T23:59:59.999999Z'])),
    put(4, lambda r: R.choice(['-1', '0', bad_dec(), '0.5', '1000000'])),
    put(lambda: R.randrange(5), lambda r: ''),
    put(3, lambda r: good_ts_variant(r[3])),
), [dup])
# usage for the new post-rate services
for s in R.sample(internal, min(len(internal), 60)):
    new.append([f'UX-{s}-{R.randrange(10**6)}', s, R.choice(['HALF', 'JPYHALF', 'ZERO', 'DATA', 'PPV', 'GOLD']),
                R.choice(['2026-11-21T10:00:00Z', '2026-11-10T00:00:00Z', '2026-11-22T01:00:00Z']), R.choice(['1', '3', '0.1', '7'])])

mutate('credits', [
    (2 * P, put(2, lambda r: R.choice(['0', '-5', bad_dec(), '0.001']))),
    (3 * P, put(1, lambda r: 'W-UNKNOWN')),
    (4 * P, put(lambda: R.randrange(5), lambda r: '')),
    (5 * P, put(4, lambda r: R.choice([good_ts_variant(r[4]), '2026-11-25T00:00:00Z', bad_ts()]))),
], [dup])


def transfer(r):
    r[3] = 'TRANSFERRED'
    r[6] = R.choice(['', 'A-NEW', accts[0]])


subs_all = list(sub_src)
mutate('events', bands(
    3 * P,
    put(1, lambda r: R.choice(subs_all)),
    put(3, lambda r: R.choice(['PURCHASED', 'RENEWED', 'REVIVED', 'CANCELLED', 'EXPIRED', 'REVOKED', 'TRANSFERRED', 'PAUSED'])),
    put(5, lambda r: ''),
    put(9, lambda r: R.choice(['CAPTURED', 'REJECTED', 'REFUNDED', 'PENDING', ''])),
    transfer,
    put(4, lambda r: R.choice([good_ts_variant(r[4]), '2026-11-22T00:00:00Z', '2026-11-21T23:59:59Z', bad_ts()])),
    put(2, lambda r: R.choice(['APPLE', 'GOOGLE', 'INTERNAL'])),
), [dup])



# ---------------------------------------------------------------- SPEC v2 §9 (--pricing)
def add_pricing(T, seed, as_of_text):
    """Turns the (already mutated) v1 tables into a SPEC §9 pricing dataset, drawing from a
    generator of its own; writes price_tiers, tax_rates and discounts to DST/state."""
    import calendar
    import datetime as dt
    from decimal import Decimal, ROUND_HALF_UP
    from fractions import Fraction
    RP = random.Random(f'pricing-{seed}')
    A0 = dt.date.fromisoformat(as_of_text)
    MINOR = {'USD': 2, 'EUR': 2, 'JPY': 0, 'KWD': 3}

    def day(k):
        return str(A0 + dt.timedelta(days=k))

    def dec(x, places=4):
        """Decimal text (SPEC §3's form: no exponent, no trailing zeros) of x to `places`."""
        d = Decimal(str(x)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP).normalize()
        return format(d, 'f')

    def parse_date(s):
        try:
            return dt.date.fromisoformat(s) if len(s) == 10 else None
        except ValueError:
            return None

    def add_months(d, n):
        y, m = divmod(d.month - 1 + n, 12)
        return dt.date(d.year + y, m + 1, min(d.day, calendar.monthrange(d.year + y, m + 1)[1]))

    def grid(start, per, d):
        """The pricing period [ps, pe) of the grid anchored at `start` that holds day d."""
        n, u = per

        def g(k):
            if u == 'month':
                return add_months(start, k * n)
            return start + dt.timedelta(days=k * n * (7 if u == 'week' else 1))
        k = 0
        while g(k) > d:
            k -= 1
        while g(k + 1) <= d:
            k += 1
        return g(k), g(k + 1)

    def period_of(text):
        m = re.match(r'^(\d+) (day|week|month)s?$', text)
        return (int(m[1]), m[2]) if m and int(m[1]) >= 1 else None      # else the service is rejected

    def list_amount(sv, q):
        """A(q) of a POST_RATE service (SPEC §9.2), to make a consistent period_charged."""
        q, P, s = Fraction(q), Fraction(sv['price']), Fraction(sv['unit_size'])
        b = max(Fraction(0), q - Fraction(sv['free'] or 0))
        if sv['model'] == 'PACKAGE':
            return -((-b / s).numerator // (b / s).denominator) * P if b else Fraction(0)
        if sv['model'] in ('GRADUATED', 'VOLUME'):
            tiers = [(None if u == '' else Fraction(u), Fraction(p), Fraction(f or 0)) for u, p, f in sv['tiers']]
            if sv['model'] == 'VOLUME':
                for u, p, f in tiers:
                    if u is None or b <= u:
                        return f + b * p / s
            total, lower = Fraction(0), Fraction(0)
            for i, (u, p, f) in enumerate(tiers):
                if i > 0 and not b > lower:
                    break
                top = b if u is None else min(b, u)
                total += f + max(Fraction(0), top - lower) * p / s
                if u is None:
                    break
                lower = u
            return total
        return b * P / s

    def rounded(x, cur):
        m = 10 ** MINOR.get(cur, 2)
        return dec(Decimal((x * m).numerator) / Decimal((x * m).denominator) / m, MINOR.get(cur, 2))

    # ---- what the v1 tables hold: wallet currencies, subscriptions, usage scales
    wcur = {}
    for r in T['wallets'][1]:
        wcur.setdefault(r[1], r[2])
    subs = {}
    for r in T['subscriptions'][1]:
        subs.setdefault(r[0], r)
    by_cur = {}
    for sid, r in subs.items():
        if r[2] == 'INTERNAL' and r[3] in ('ACTIVE', 'DISCONNECTED') and wcur.get(r[1]) in MINOR:
            by_cur.setdefault(wcur[r[1]], []).append(sid)
    externals = [sid for sid, r in subs.items() if r[2] != 'INTERNAL']
    nowallet = [sid for sid, r in subs.items() if r[1].startswith('A-NOWALLET-')]
    per_svc = {}
    for r in T['usage'][1]:
        if re.match(r'^\d{1,7}(\.\d+)?$', r[4]):       # the plausible ones, not the mutated
            per_svc.setdefault(r[2], []).append(Decimal(r[4]))
    # A window's usage is a few rows: tiers are placed around 3 rows' worth.
    scale = {k: max(Decimal(1), 3 * sum(v) / len(v)) for k, v in per_svc.items()}

    def tier_set(model, price, sc):
        n = RP.choice([1, 2, 3, 3, 4])
        ups = []
        for f in sorted(RP.sample([0.2, 0.5, 1, 2, 3, 5, 10], n - 1)):
            u = dec(Decimal(str(f)) * sc, 3)
            if not ups or Decimal(u) > Decimal(ups[-1]):
                ups.append(u)
        ups.append('')
        fac = [1, 0.8, 0.6, 0.5] if model == 'GRADUATED' else [1.2, 0.7, 0.4, 0.2]
        return [(u, dec(price * Decimal(str(fac[i]))), RP.choice(['', '', '0', dec(price / 10), '1.5']))
                for i, u in enumerate(ups)]

    # ---- services: the eight §9.1 columns on every row, models at random
    h, rows = T['services']
    V2 = ['pricing_model', 'free_units', 'pricing_period', 'txn_fee', 'txn_min', 'txn_max', 'tax_code', 'price_includes_tax']
    T['services'] = (h + V2, rows)
    PERIODS = ['1 month', '1 month', '1 week', '1 day', '10 days', '2 months', '3 days']
    TAXES = ['', '', '', 'VAT', 'VAT_R', 'GST', 'ZERO', 'SALES']
    spec = {}        # service_id -> what A needs, for the first row of each id (the one billed)
    tiers = []       # price_tiers rows
    for r in rows:
        bm = r[1]
        try:
            price = Decimal(r[2])
        except Exception:
            price = Decimal(1)
        models = ['', 'PER_UNIT', 'GRADUATED', 'VOLUME', 'PACKAGE'] + (['PERCENTAGE'] if bm == 'POST_RATE' else [])
        model = RP.choice(models) if bm in ('POST_RATE', 'PRE_RATE', 'ONE_TIME') else ''
        sc = scale.get(r[0], Decimal(3)) if bm == 'POST_RATE' else Decimal(2)
        free = RP.choice(['0', '1', '2.5', dec(sc / 4, 2)]) if model != 'PERCENTAGE' and RP.random() < 0.3 else ''
        period = RP.choice(PERIODS) if bm == 'POST_RATE' and model != 'PERCENTAGE' and RP.random() < 0.5 else ''
        fee = lo = hi = ''
        if model == 'PERCENTAGE':
            fee, lo, hi = RP.choice(['', '0.30', '0']), RP.choice(['', '0.5', '1.75']), RP.choice(['', '12', '100'])
        r += [model, free, period, fee, lo, hi, RP.choice(TAXES), RP.choice(['', 'false', 'true'])]
        if r[0] in spec:
            continue
        spec[r[0]] = dict(bm=bm, model=model or 'PER_UNIT', price=price, cur=r[3], unit_size=r[6] or '1',
                          free=free, period=period_of(period), tiers=[])
        if model in ('GRADUATED', 'VOLUME'):
            ts = tier_set(model, price, sc)
            spec[r[0]]['tiers'] = ts
            tiers += [[r[0], str(i + 1), u, p, f] for i, (u, p, f) in enumerate(ts)]

    # Services of their own for every model, and ones that must be rejected.
    cur_of = lambda: RP.choice(sorted(by_cur)) if by_cur else 'USD'
    T_ = lambda: RP.choice(TAXES)
    INCL = lambda: RP.choice(['', 'false', 'true'])
    own = [  # id, method, model, price, rate_period, advance, unit_size, free, period, fee, min, max, tax, incl, tiers
        ('P_GRAD_M', 'POST_RATE', 'GRADUATED', '0', '', '', '', RP.choice(['', '5']), '1 month', '', '', '', T_(), INCL(),
         [('10', '1.15', '2.50'), ('50', '0.7', '1'), ('', '0.25', '')]),
        ('P_GRAD_W', 'POST_RATE', 'GRADUATED', '1', '', '', '2', '', '1 week', '', '', '', T_(), INCL(),
         [('5', '2', ''), ('', '1.5', '0.5')]),
        ('P_GRAD_N', 'POST_RATE', 'GRADUATED', '0', '', '', '', '', '', '', '', '', T_(), INCL(),
         [('0', '0', '3'), ('20', '0.9', ''), ('', '0.45', '2')]),
        ('P_VOL_M', 'POST_RATE', 'VOLUME', '0', '', '', '', '', '1 month', '', '', '', T_(), INCL(),
         [('20', '3.33', ''), ('60', '1.5', '4'), ('', '0.5', '10')]),
        ('P_VOL_D', 'POST_RATE', 'VOLUME', '0', '', '', '', RP.choice(['', '1']), '3 days', '', '', '', T_(), INCL(),
         [('8', '2', '1'), ('', '0.75', '')]),
        ('P_VOL_N', 'POST_RATE', 'VOLUME', '0', '', '', '', '', '', '', '', '', T_(), INCL(),
         [('15', '1', ''), ('', '0.6', '3')]),
        ('P_PKG_M', 'POST_RATE', 'PACKAGE', '4.99', '', '', '10', '5', '1 month', '', '', '', T_(), INCL(), None),
        ('P_PKG_N', 'POST_RATE', 'PACKAGE', '1.25', '', '', '3', '', '', '', '', '', T_(), INCL(), None),
        ('P_PU_M', 'POST_RATE', 'PER_UNIT', '0.333', '', '', '', '2', '1 month', '0.5', '', '', T_(), INCL(), None),
        ('P_PCT', 'POST_RATE', 'PERCENTAGE', '2.99', '', '', '', '', '', '0.30', '1.75', '12', T_(), INCL(), None),
        ('P_PCT2', 'POST_RATE', 'PERCENTAGE', '1.5', '', '', '', '', '', '', '', '', 'VAT', 'true', None),
        ('P_PRE_G', 'PRE_RATE', 'GRADUATED', '0', '1 month', '7 days', '', '', '1 month', '', '', '', T_(), INCL(),
         [('1', '9.99', ''), ('3', '7.5', '1'), ('', '5', '')]),
        ('P_PRE_V', 'PRE_RATE', 'VOLUME', '0', '1 week', '1 week', '', '', '', '', '', '', T_(), INCL(),
         [('2', '4.5', ''), ('', '3', '2')]),
        ('P_PRE_P', 'PRE_RATE', 'PACKAGE', '6', '1 month', '0 days', '5', '', '', '', '', '', T_(), INCL(), None),
        ('P_PRE_U', 'PRE_RATE', 'PER_UNIT', '2.99', '1 day', '2 days', '', '1', '', '', '', '', 'GST', 'true', None),
        ('P_ONE_G', 'ONE_TIME', 'GRADUATED', '0', '', '', '', '', '', '', '', '', T_(), INCL(),
         [('1', '50', '5'), ('', '30', '')]),
        ('P_ONE_V', 'ONE_TIME', 'VOLUME', '0', '', '', '', RP.choice(['', '1']), '', '', '', '', T_(), INCL(),
         [('2', '20', ''), ('10', '15', ''), ('', '10', '25')]),
        ('P_ONE_P', 'ONE_TIME', 'PACKAGE', '19.9', '', '', '3', '', '', '', '', '', T_(), INCL(), None),
        # rejected: INVALID_VALUE (R1) ...
        ('X_MODEL', 'POST_RATE', 'TIERED', '1', '', '', '', '', '', '', '', '', '', '', None),
        ('X_PCT_PRE', 'PRE_RATE', 'PERCENTAGE', '1', '1 month', '', '', '', '', '', '', '', '', '', None),
        ('X_PCT_FREE', 'POST_RATE', 'PERCENTAGE', '1', '', '', '', '0', '', '', '', '', '', '', None),
        ('X_PCT_PER', 'POST_RATE', 'PERCENTAGE', '1', '', '', '', '', '1 month', '', '', '', '', '', None),
        ('X_MINMAX', 'POST_RATE', 'PERCENTAGE', '1', '', '', '', '', '', '', '5', '1', '', '', None),
        ('X_BOOL', 'POST_RATE', 'PER_UNIT', '1', '', '', '', '', '', '', '', '', 'VAT', 'TRUE', None),
        ('X_FREE', 'POST_RATE', 'PACKAGE', '1', '', '', '', '-1', '', '', '', '', '', '', None),
        ('X_PER0', 'POST_RATE', 'GRADUATED', '1', '', '', '', '', '0 months', '', '', '', '', '', None),
        ('X_PERBAD', 'POST_RATE', '', '1', '', '', '', '', 'monthly', '', '', '', '', '', None),
        ('X_FEE', 'POST_RATE', 'PER_UNIT', '1', '', '', '', '', '', 'abc', '', '', '', '', None),
        ('X_NEGFEE', 'POST_RATE', 'PER_UNIT', '1', '', '', '', '', '', '', '-1', '', '', '', None),
        # ... and INVALID_TIERS (R2), and a tax code with no rate yet (items UNKNOWN_TAX_CODE)
        ('X_TIERS_DEC', 'POST_RATE', 'GRADUATED', '1', '', '', '', '', '', '', '', '', '', '',
         [('10', '1', ''), ('5', '1', ''), ('', '1', '')]),
        ('X_TIERS_NOLAST', 'POST_RATE', 'VOLUME', '1', '', '', '', '', '', '', '', '', '', '', [('10', '1', ''), ('20', '1', '')]),
        ('X_TIERS_MIDNULL', 'PRE_RATE', 'GRADUATED', '1', '1 month', '', '', '', '', '', '', '', '', '',
         [('', '1', ''), ('10', '1', ''), ('', '1', '')]),
        ('X_TIERS_NONE', 'POST_RATE', 'VOLUME', '1', '', '', '', '', '', '', '', '', '', '', []),
        ('X_TIERS_NEG', 'ONE_TIME', 'GRADUATED', '1', '', '', '', '', '', '', '', '', '', '', [('-5', '1', ''), ('', '1', '')]),
        ('X_TIERS_EQ', 'POST_RATE', 'VOLUME', '1', '', '', '', '', '1 week', '', '', '', '', '',
         [('10', '1', ''), ('10', '2', ''), ('', '1', '')]),
        ('X_TAX_FUT', 'POST_RATE', 'PER_UNIT', '0.5', '', '', '', '', '', '', '', '', 'FUTURE', 'false', None),
        # ignored columns, domains checked and fine: a PRE_RATE with a pricing period, fees on PER_UNIT
        ('P_IGNORED', 'PRE_RATE', 'PER_UNIT', '3', '1 week', '', '', '', '2 weeks', '1', '0', '1', T_(), INCL(), None),
    ]
    own_cur = {}
    for sid, bm, model, price, rp, adv, us, free, period, fee, lo, hi, tax, incl, ts in own:
        cur = cur_of()
        own_cur[sid] = cur
        rows.append([sid, bm, price, cur, rp, adv, us, model, free, period, fee, lo, hi, tax, incl])
        spec[sid] = dict(bm=bm, model=model or 'PER_UNIT', price=Decimal(price), cur=cur, unit_size=us or '1',
                         free=free, period=period_of(period), tiers=ts or [])
        if ts:
            nos = [1, 2, 3, 4] if RP.random() < 0.7 else [1, 3, 7, 9]     # tier_no gaps are fine
            tiers += [[sid, str(nos[i]), u, p, f] for i, (u, p, f) in enumerate(ts)]
    # Tiers of an unknown service, of a rejected one (UNKNOWN_SERVICE), of flat models
    # (INVALID_TIERS, that row only: the service is billed).
    # (tier_no 98, 99: never a generated tier set's, whose keys must stay unique)
    tiers += [['NOPE_SVC', '99', '', '1', ''], ['ZERO', '99', '', '1', ''], ['X_MODEL', '99', '', '2', '1'],
              ['P_PU_M', '99', '', '1', ''], ['P_PCT', '98', '10', '1', ''], ['P_PCT', '99', '', '1', '']]
    RP.shuffle(tiers)        # the file's order is not tier_no order

    # ---- tax_rates: a change before as_of and one after, one on as_of, a code not valid yet
    rates = [['VAT', '19', day(-400)], ['VAT', '20', day(-10)], ['VAT', '21', day(10)],
             ['VAT_R', '7', '2000-01-01'], ['GST', '8.875', day(-30)], ['GST', '9.125', day(0)],
             ['ZERO', '0', '2000-01-01'], ['SALES', '12.5', day(-1)], ['FUTURE', '5', day(1)]]
    RP.shuffle(rates)

    # ---- items: tax_code overrides and period_* state on the v1 items
    hi_, irows = T['subscription_items']
    T['subscription_items'] = (hi_ + ['tax_code', 'period_start', 'period_quantity', 'period_charged'], irows)
    ITAX = ['VAT', 'ZERO', 'VAT_R', 'SALES', 'GST', 'NOPE_TAX', 'FUTURE']

    def period_state(sv, start, ws, sid, matched=0.4):
        """period_start/quantity/charged: with probability `matched` the period of the window
        start (the state a run leaves), else the period before it, a day later (off the grid,
        or with a 1-day period the next period: a state no run writes), or none; charged
        consistent with A most of the time."""
        rest = 1 - matched
        how = RP.choices(['matched', 'before', 'day_later', 'none'], [matched, rest / 3, rest / 6, rest / 2])[0]
        if how == 'none':
            return ['', '', '']
        ps, _ = grid(start, sv['period'], ws)
        if how == 'before':
            ps, _ = grid(start, sv['period'], ps - dt.timedelta(days=1))
        elif how == 'day_later':
            ps = ps + dt.timedelta(days=1)
        sc = scale.get(sid, Decimal(10))
        pq = RP.choice(['0', '1', dec(sc / 2, 1), dec(sc, 0), dec(sc * 3, 2)])
        bounds = [Decimal(u) for u, _, _ in sv['tiers'] if u != '' and Decimal(u) > 0]
        if sv['model'] == 'VOLUME' and bounds and RP.random() < 0.6:
            # just below a tier bound: more usage moves the whole quantity to a cheaper tier,
            # a usage credit (SPEC §9.3)
            pq = dec(max(Decimal(0), RP.choice(bounds) - Decimal(RP.choice(['0.5', '1', '2', '3']))), 3)
        try:
            pc = rounded(list_amount(sv, pq), sv['cur'])
        except (ArithmeticError, ValueError):      # a service that is rejected anyway
            pc = '0'
        if RP.random() < 0.15:
            pc = rounded(Fraction(Decimal(pc)) + RP.choice([1, 5, -1]), sv['cur'])
            if Decimal(pc) < 0:
                pc = '0'
        return [str(ps), pq, pc]

    for r in irows:
        extra = [RP.choice(ITAX) if RP.random() < 0.05 else '', '', '', '']
        sv = spec.get(r[2])
        start, bt = parse_date(r[5]), parse_date(r[7]) if r[7] else None
        if sv and sv['period'] and start and (bt or not r[7]) and RP.random() < 0.3:
            extra[1:] = period_state(sv, start, bt or start, r[2])
        elif RP.random() < 0.02:
            extra[1:] = [day(-3), '2', '1.5']          # no pricing period: kept as read
        r += extra

    # ---- items and usage of the services of their own
    urows = T['usage'][1]
    items_of = {}          # subscription_id -> the item_nos added to it
    QTY = {'PERCENTAGE': ['0', '5', '10', '80', '250', '10000', '33.33']}
    for n, (sid_, bm, model, *_rest) in enumerate(own):
        cur = own_cur[sid_]
        sv = spec[sid_]
        pool = by_cur.get(cur, [])
        if not pool:
            continue
        k = 3 if sid_.startswith('X_') else RP.randint(6, 14)
        for sub in RP.sample(pool, min(k, len(pool))):
            no = 100 + n
            start = A0 + dt.timedelta(days=RP.choice([-70, -40, -33, -20, -9, -3, -1, 0, 2]))
            end = RP.choice([''] * 8 + [day(-2), day(5)])
            qty = custom = bt = ''
            tiered = model in ('GRADUATED', 'VOLUME')
            if bm == 'POST_RATE':
                bt = RP.choice(['', day(-1), day(-1), day(-2), day(-8), day(-31), day(-45), day(0)])
            elif bm == 'PRE_RATE':
                bt = RP.choice(['', day(-3), day(0), day(2), day(10)])
                qty = RP.choice(['', '1', '2', '3', '0', '0.5', '12'])
            else:
                bt = RP.choice(['', '', '', day(-5)])
                qty = RP.choice(['', '1', '2', '3', '0', '7'])
            if (tiered and RP.random() < 0.08) or (not tiered and RP.random() < 0.2):
                custom = RP.choice(['0.8', '2.25', '0'])        # on a tiered plan: PRICING_MISMATCH
            tax = RP.choice([''] * 8 + ['VAT', 'ZERO', 'GST', 'NOPE_TAX', 'FUTURE'])
            per = ['', '', '']
            ws = dt.date.fromisoformat(bt) if bt else start
            if bm == 'POST_RATE' and sv['period']:
                per = period_state(sv, start, ws, sid_, 0.7 if model == 'VOLUME' else 0.4)
            irows.append([sub, str(no), sid_, qty, custom, str(start), end, bt, tax] + per)
            items_of.setdefault(sub, []).append(no)
            if bm != 'POST_RATE':
                continue
            # usage from a little before the window (LATE_USAGE) to after the cutoff (deferred)
            span = (A0 - ws).days + 3
            if per[0] and model == 'VOLUME' and ws < A0:
                # usage early in the window: it lands in the period of the state
                urows.append([f'UP-{sub}-{no}-early', sub, sid_, f'{ws}T06:00:00Z', RP.choice(['1', '3', '5', '8'])])
            for j in range(RP.choice([0, 1, 2, 3, 5, 8])):
                d = ws + dt.timedelta(days=RP.randrange(-2, max(span, 1)))
                t = f'{d}T00:00:00Z' if RP.random() < 0.15 else \
                    f'{d}T{RP.randrange(24):02d}:{RP.randrange(60):02d}:{RP.randrange(60):02d}Z'
                q = RP.choice(QTY.get(model, ['0', '1', '2', '3.5', '5', '10', '25', '0.25']))
                urows.append([f'UP-{sub}-{no}-{j}', sub, sid_, t, q])

    # ---- discounts
    hd = ['discount_id', 'subscription_id', 'item_no', 'kind', 'value', 'remaining', 'start_date', 'end_date']
    first_items = {}
    for r in irows:
        if r[1].isdigit():
            first_items.setdefault(r[0], []).append(r[1])
    targets = sorted(items_of)
    others = sorted(s for s in first_items if s in subs and subs[s][2] == 'INTERNAL')
    targets += RP.sample(others, min(40, len(others)))
    drows = []
    for sub in targets:
        nos = sorted(set(first_items.get(sub, [])))
        for _ in range(RP.choice([0, 1, 1, 2, 3])):
            kind = RP.choice(['PERCENT', 'AMOUNT'])
            no = RP.choice(nos + ['', '']) if nos else ''
            if kind == 'PERCENT':
                value = RP.choice(['10', '12.5', '33.333', '50', '100', '5'])
                rem = RP.choice([''] * 6 + ['3', '500'])          # ignored on PERCENT
            else:
                value = RP.choice(['5', '0.5', '2.345', '20', '100', '1000'])
                rem = RP.choice(['', '', dec(Decimal(value) / 2, 4), '0', value, dec(Decimal(value) / 3, 5)])
            start = RP.choice([day(-100), day(-10), day(0), day(1)])
            end = RP.choice(['', '', '', day(0), day(1), day(30)])
            if end and end <= start:
                end = ''
            drows.append([sub, no, kind, value, rem, start, end])
    some = targets[0] if targets else 'S-NONE'
    drows += [
        ['S-NOPE-1', '', 'PERCENT', '10', '', day(-5), ''],                      # UNKNOWN_SUBSCRIPTION
        [externals[0] if externals else 'S-EXT', '', 'PERCENT', '10', '', day(-5), ''],   # SOURCE_MISMATCH
        [nowallet[0] if nowallet else 'S-NOPE-2', '', 'AMOUNT', '5', '', day(-5), ''],
        [some, '999', 'AMOUNT', '5', '', day(-5), ''],                            # UNKNOWN_ITEM
        [some, '', 'PERCENT', '0', '', day(-5), ''],                              # out of domain ...
        [some, '', 'PERCENT', '100.5', '', day(-5), ''],
        [some, '', 'AMOUNT', '0', '', day(-5), ''],
        [some, '', 'AMOUNT', '-3', '', day(-5), ''],
        [some, '', 'AMOUNT', '5', '7', day(-5), ''],
        [some, '', 'AMOUNT', '5', '-1', day(-5), ''],
        [some, '', 'PERCENT', '10', '', day(0), day(0)],
        [some, '', 'PERCENT', '10', '', day(3), day(1)],
        [some, '', 'FIXED', '10', '', day(-5), ''],
        [some, '0', 'PERCENT', '10', '', day(-5), ''],
        [some, 'x', 'PERCENT', '10', '', day(-5), ''],
        [some, '', 'PERCENT', 'abc', '', day(-5), ''],
        [some, '', 'PERCENT', '10', 'abc', day(-5), ''],
        [some, '', 'PERCENT', '10', '', '', ''],                                  # MISSING_REQUIRED
        [some, '', 'AMOUNT', '', '', day(-5), ''],
        [some, '', 'PERCENT', '10', '', '2026-02-30', ''],
    ]
    ids = RP.sample(range(10000, 99999), len(drows))
    out = [[f'DSC-{i}'] + r for i, r in zip(ids, drows)]
    out.insert(RP.randrange(len(out)), ['', some, '', 'PERCENT', '10', '', day(-5), ''])   # no id
    for _ in range(3):                                         # DUPLICATE_KEY: first wins
        d = list(RP.choice(out))
        d[4] = '1' if d[3] == 'PERCENT' else d[4]
        out.append(d)
    RP.shuffle(out)

    for name, hh, rr in [('price_tiers', ['service_id', 'tier_no', 'up_to', 'unit_price', 'flat_fee'], tiers),
                         ('tax_rates', ['tax_code', 'rate', 'valid_from'], rates), ('discounts', hd, out)]:
        save(f'{dst}/state/{name}.csv', hh, rr)


if PRICING:
    if AS_OF is None:
        m = re.search(r'--as-of (\d{4}-\d{2}-\d{2})', open(f'{src}/job.toml').read())
        if not m:
            sys.exit('mutate.py --pricing: no as_of (give --as-of YYYY-MM-DD)')
        AS_OF = m[1]
    add_pricing(T, seed, AS_OF)

for n in ['services', 'wallets', 'subscriptions', 'subscription_items']:
    save(f'{dst}/state/{n}.csv', *T[n])
for n in ['usage', 'credits', 'events']:
    save(f'{dst}/{n}.csv', *T[n])

thr = lambda: R.choice(['0', '0', '5', '-1', '2.5'])
job = f'''name = "mut-{seed}"
recurrence = "{R.choice(['1 day', '1 day', '1 week', '1 month', '2 days'])}"
threads = 2
debit_transaction_type = "{R.choice(['NORMAL_DEBIT', 'USAGE'])}"
rounding = "{R.choice(['half_up', 'half_even'])}"
output_format = "csv"
max_reject_ratio = 1.0

[steps]
start_service = {R.choice(['true', 'false', 'true'])}
reconnection_threshold = "{thr()}"
stop_service = {R.choice(['true', 'false', 'true'])}
disconnection_threshold = "{thr()}"
wallet_estimation = "{R.choice(['off', 'changed', 'all'])}"
low_balance_days = {R.choice([0, 3, 10])}
'''
open(f'{dst}/job.toml', 'w').write(job)
