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
@@PRICING@@


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
