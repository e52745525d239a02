#!/usr/bin/env python3
"""A second, independent implementation of SPEC.md, for differential tests.

    reference.py JOB STATE USAGE CREDITS EVENTS AS_OF OUTDIR
    reference.py --selftest

Reads a CSV state and CSV inputs (a missing path reads as no rows), computes the run from the
text of SPEC.md (and, where the spec leaves room, the readings in docs/DECISIONS.md and the
lead's readings R1-R12 of §9), then compares with billrun's CSV output directory OUTDIR table
by table: every row's values (decimals compared as numbers, timestamps as instants), rejects
by (table, file, row) with their key and reason (the file by its name without extension, so a
state written as Parquet compares with its CSV twin), the next state (services, items,
price_tiers, discounts, tax_rates) and the manifest's totals per currency (opening, credits,
debits, closing, list, discounts, taxes, taxes_by_code, usage_credits and the three rounding
residuals). Prints the differences and `TOTAL MISMATCHES n`; exits 1 when n > 0. A bad
configuration table (price_tiers, tax_rates: a row unreadable, out of its domain or repeating
its key) or a missing required column is reported and exits 2, as billrun does.

`--selftest` asserts SPEC §9.2's figures and §9.5's inclusive-tax example, and a few
properties of pricing periods, on the functions below.

Written in plain Python (decimal, fractions, datetime) and sharing no code or design with
the Rust engine: day fractions, list amounts, discounts, taxes and estimates are exact
`Fraction`s, rounded once where the spec rounds.
"""
import csv, os, re, sys, json, tomllib
from decimal import Decimal, getcontext
from datetime import date, datetime, timedelta, timezone
import calendar
from fractions import Fraction

getcontext().prec = 80

MINOR = {'USD': 2, 'EUR': 2, 'JPY': 0, 'KWD': 3, 'GBP': 2, 'CHF': 2, 'BHD': 3, 'KRW': 0,
         'CAD': 2, 'AUD': 2, 'INR': 2, 'BRL': 2, 'SEK': 2, 'NOK': 2, 'DKK': 2, 'CNY': 2,
         'JOD': 3, 'OMR': 3, 'TND': 3, 'CLP': 0, 'ISK': 0, 'VND': 0, 'MXN': 2, 'PLN': 2}

DEC_RE = re.compile(r'^-?\d+(\.\d+)?$')
DATE_RE = re.compile(r'^(\d{4})-(\d{2})-(\d{2})$')
TS_RE = re.compile(r'^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$')
INT_RE = re.compile(r'^-?\d+$')
PER_RE = re.compile(r'^(\d+) (day|days|week|weeks|month|months)$')


class Bad(Exception):
    def __init__(self, reason, detail=''):
        self.reason = reason
        self.detail = detail


def p_dec(s):
    if not DEC_RE.match(s):
        raise Bad('INVALID_VALUE', 'dec')
    d = Decimal(s)
    ip, _, fp = s.lstrip('-').partition('.')
    if len(fp) > 18 or len((ip.lstrip('0') + fp).lstrip('0')) > 28 or len(ip.lstrip('0')) + len(fp) > 28:
        raise Bad('INVALID_VALUE', 'range')
    return d


def p_date(s):
    m = DATE_RE.match(s)
    if not m:
        raise Bad('INVALID_VALUE', 'date')
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise Bad('INVALID_VALUE', 'date')


def p_ts(s):
    m = TS_RE.match(s)
    if not m:
        raise Bad('INVALID_VALUE', 'ts')
    try:
        d = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), tzinfo=timezone.utc)
    except ValueError:
        raise Bad('INVALID_VALUE', 'ts')
    frac = m[7] or ''
    us = int((frac[1:] + '000000')[:6]) if frac else 0
    d = d + timedelta(microseconds=us)
    off = m[8]
    if off and off != 'Z':
        sign = 1 if off[0] == '+' else -1
        hh, mm = int(off[1:3]), int(off[4:6])
        d = d - sign * timedelta(hours=hh, minutes=mm)
    return d


def p_int(s):
    if not INT_RE.match(s):
        raise Bad('INVALID_VALUE', 'int')
    return int(s)


def p_period(s):
    m = PER_RE.match(s)
    if not m:
        raise Bad('INVALID_VALUE', 'period')
    u = m[2].rstrip('s')
    return (int(m[1]), u)


def p_str(s):
    return s


def add_months(d, n):
    y, m = divmod(d.month - 1 + n, 12)
    y += d.year
    m += 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def add_period(d, per):
    n, u = per
    if u == 'day':
        return d + timedelta(days=n)
    if u == 'week':
        return d + timedelta(days=7 * n)
    return add_months(d, n)


def days_of(as_of, per):
    return (add_period(as_of, per) - as_of).days


def rnd(x, cur, mode):
    x = Fraction(x)
    m = 10 ** MINOR.get(cur, 0)
    y = x * m
    sign = -1 if y < 0 else 1
    a = abs(y)
    fl = a.numerator // a.denominator
    rem = a - fl
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and (mode == 'half_up' or fl % 2 == 1)):
        fl += 1
    return Decimal(sign * fl) / m


def rnd6(x):
    y = x * 10**6
    fl = y.numerator // y.denominator
    if y - fl >= Fraction(1, 2):
        fl += 1
    return Decimal(fl) / 10**6


def charge_exact(frm, to, per, p):
    n, u = per
    p = Fraction(p)
    total = Fraction(0)
    if u == 'month':
        k = 0
        while add_months(frm, (k + 1) * n) <= to:
            k += 1
        anchor = add_months(frm, k * n)
        d = anchor
        while d < to:
            total += p / (n * calendar.monthrange(d.year, d.month)[1])
            d += timedelta(days=1)
        return k * p + total
    unit = 7 * n if u == 'week' else n
    days = (to - frm).days
    k = days // unit
    rem = days - k * unit
    return k * p + p * rem / unit


def trunc_minor(x, cur):
    """x rounded toward zero to the currency's minor unit (SPEC §9.4, AMOUNT discounts)."""
    x = Fraction(x)
    m = 10 ** MINOR.get(cur, 0)
    y = abs(x) * m
    fl = y.numerator // y.denominator
    return Decimal(fl if x >= 0 else -fl) / m


def ceil_frac(x):
    return -((-x.numerator) // x.denominator)


# ---------------------------------------------------------------- SPEC §9.2: A(q)
def list_amount(model, q, P=0, s=1, free=0, tiers=(), rows=(), fee=None, lo=None, hi=None):
    """The exact list amount A(q) of SPEC §9.2.
    model: PER_UNIT, PACKAGE, GRADUATED, VOLUME or PERCENTAGE; q the quantity; P the price
    (custom_price ?? price); s the unit size (the caller passes 1 where the spec says so);
    free the free units; tiers [(up_to or None, unit_price, flat_fee)] in tier_no order;
    PERCENTAGE: rows the quantities of the line's usage rows, fee/lo/hi txn_fee/min/max."""
    P, s = Fraction(P), Fraction(s)
    if model == 'PERCENTAGE':
        total = Fraction(0)
        for qr in rows:
            qr = Fraction(qr)
            if qr == 0:           # a row of quantity 0 costs nothing, not even the txn fee
                continue
            f = qr * P / 100 + Fraction(fee or 0)
            if lo is not None:
                f = max(f, Fraction(lo))
            if hi is not None:
                f = min(f, Fraction(hi))
            total += f
        return total
    b = max(Fraction(0), Fraction(q) - Fraction(free))   # the billable units
    if model == 'PER_UNIT':
        return b * P / s
    if model == 'PACKAGE':
        return ceil_frac(b / s) * P                      # a started package is a whole one
    if model == 'GRADUATED':
        total, lower = Fraction(0), Fraction(0)          # lower = u_(i-1)
        for i, (up, price, flat) in enumerate(tiers):
            if i > 0 and not b > lower:                  # tier i > 1 is reached when b > u_(i-1)
                break
            top = b if up is None else min(b, Fraction(up))
            n = max(Fraction(0), top - lower)
            total += Fraction(flat) + n * Fraction(price) / s
            if up is None:
                break
            lower = Fraction(up)
        return total
    if model == 'VOLUME':
        for up, price, flat in tiers:                    # the first tier with b <= u_t
            if up is None or b <= Fraction(up):
                return Fraction(flat) + b * Fraction(price) / s
        raise AssertionError('a tier set ends with an unbounded tier')
    raise AssertionError(model)


def grid_period(start, per, d):
    """SPEC §9.3: the pricing period [ps, pe) of the grid anchored at `start` (steps of `per`,
    months added to `start` in one step and clamped) that holds day d; k may be negative."""
    n, u = per

    def g(k):
        if u == 'month':
            return add_months(start, k * n)
        return start + timedelta(days=k * n * (7 if u == 'week' else 1))
    if u == 'month':
        k = ((d.year - start.year) * 12 + d.month - start.month) // n   # a guess, then adjust
    else:
        k = (d - start).days // (n * (7 if u == 'week' else 1))
    while g(k) > d:
        k -= 1
    while g(k + 1) <= d:
        k += 1
    return g(k), g(k + 1)


def window_parts(start, per, ws, we):
    """The window [ws, we) split at the pricing-period boundaries: [(ps, pe, a, b)], the
    part [a, b) lying in the period [ps, pe), in date order."""
    parts = []
    a = ws
    while a < we:
        ps, pe = grid_period(start, per, a)
        b = min(pe, we)
        parts.append((ps, pe, a, b))
        a = b
    return parts


class ConfigError(Exception):
    """A configuration table (price_tiers, tax_rates) that stops the run, or a missing
    required column: billrun exits 2."""


def read_table(path):
    """The rows of a CSV file as (file name, 1-based data row, {column: raw text}); a field
    missing at the end of a short row reads as empty (null). No file: no rows."""
    if path is None or not os.path.exists(path):
        return []
    out = []
    with open(path, newline='', encoding='utf-8-sig') as f:
        r = csv.reader(f)
        header = next(r)
        for i, rec in enumerate(r, 1):
            d = {}
            for j, h in enumerate(header):
                d[h] = rec[j] if j < len(rec) else ''
            out.append((os.path.basename(path), i, d))
    return out


def find(dirpath, name):
    p = os.path.join(dirpath, name + '.csv')
    return p if os.path.exists(p) else None


def header_of(path):
    if path is None or not os.path.exists(path):
        return None
    with open(path, newline='', encoding='utf-8-sig') as f:
        return next(csv.reader(f), [])


def need_columns(path, required):
    """§3: a missing required column stops the run (exit 2)."""
    h = header_of(path)
    if h is None:
        return
    missing = [c for c in required if c not in h]
    if missing:
        raise ConfigError(f'{path}: missing required column(s) {missing}')


PRICING_MODELS = ('PER_UNIT', 'GRADUATED', 'VOLUME', 'PACKAGE', 'PERCENTAGE')
# SPEC §9.1's service columns, in the spec's order (R12: all eight written back when the
# services input had any of them).
SVC_V2_COLS = ['pricing_model', 'free_units', 'pricing_period', 'txn_fee', 'txn_min', 'txn_max',
               'tax_code', 'price_includes_tax']
SVC_V1_COLS = ['service_id', 'billing_method', 'price', 'currency', 'rate_period', 'advance_period', 'unit_size']
ITEM_V1_COLS = ['subscription_id', 'item_no', 'service_id', 'quantity', 'custom_price', 'start_date',
                'end_date', 'billed_through']
ITEM_PERIOD_COLS = ['period_start', 'period_quantity', 'period_charged']
TIER_COLS = ['service_id', 'tier_no', 'up_to', 'unit_price', 'flat_fee']
DISC_COLS = ['discount_id', 'subscription_id', 'item_no', 'kind', 'value', 'remaining', 'start_date', 'end_date']
RATE_COLS = ['tax_code', 'rate', 'valid_from']


def p_bool(s):
    if s not in ('true', 'false'):
        raise Bad('INVALID_VALUE', 'bool')
    return s == 'true'


def p_model(s):
    if s not in PRICING_MODELS:
        raise Bad('INVALID_VALUE', 'pricing_model')
    return s


class Ref:
    def __init__(self, job, state, usage, credits, events, as_of):
        self.job = tomllib.load(open(job, 'rb'))
        self.as_of = date.fromisoformat(as_of)
        self.cutoff = datetime(self.as_of.year, self.as_of.month, self.as_of.day, tzinfo=timezone.utc)
        self.run_id = f"{self.job['name']}-{as_of}"
        st = self.job.get('steps', {})
        self.start_on = st.get('start_service', True)
        self.stop_on = st.get('stop_service', True)
        self.rec_thr = Decimal(st.get('reconnection_threshold', '0'))
        self.dis_thr = Decimal(st.get('disconnection_threshold', '0'))
        self.est = st.get('wallet_estimation', 'changed')
        self.low_days = st.get('low_balance_days', 3)
        self.mode = self.job.get('rounding', 'half_up')
        self.debit_type = self.job.get('debit_transaction_type', 'NORMAL_DEBIT')
        self.recurrence = p_period(self.job.get('recurrence', '1 day'))
        self.rejects = []
        self.carried_subs, self.carried_items = [], []   # rejected state rows carried through
        self.item_keys, self.mismatch_items = set(), {}
        # Per currency: the manifest's totals as the reference computes them (Fractions for the
        # residuals, Decimals for money), see `tot`.
        self.totals = {}
        self.state, self.usage_p, self.credits_p, self.events_p = state, usage, credits, events

    def tot(self, cur):
        t = self.totals.get(cur)
        if t is None:
            t = self.totals[cur] = dict(opening=Decimal(0), credits=Decimal(0), closing=Decimal(0),
                                        debits={}, list=Decimal(0), discounts=Decimal(0), taxes=Decimal(0),
                                        taxes_by_code={}, usage_credits=Decimal(0),
                                        rounding_residual=Fraction(0), discount_rounding_residual=Fraction(0),
                                        tax_rounding_residual=Fraction(0))
        return t

    def reject(self, table, fname, row, key, reason, detail=''):
        self.rejects.append((table, row, fname, key, reason, detail))

    def parse(self, table, rows, cols, keyf, domain=None, late=(), late_domain=None, config=False):
        """cols: list of (name, parser, required); `domain(vals)` raises Bad. `late` columns
        (SPEC §9.1's, R1) are parsed after the v1 columns and domain, then `late_domain`.
        Returns list of (fname,row,raw,parsed) accepted. config: a failing row stops the run."""
        ok = []
        for fname, i, raw in rows:
            vals = {}
            try:
                for group, dom in ((cols, domain), (late, late_domain)):
                    for name, parser, req in group:
                        s = raw.get(name, '')
                        if s == '':
                            if req is True or (callable(req) and req(vals)):
                                raise Bad('MISSING_REQUIRED', name)
                            vals[name] = None
                        else:
                            try:
                                vals[name] = parser(s)
                            except Bad as e:
                                raise Bad(e.reason, f'{name} {s!r}')
                    if dom:
                        dom(vals)
            except Bad as e:
                if config:
                    raise ConfigError(f'{table} {fname} row {i}: {e.reason} ({e.detail}); a configuration '
                                      f'table is never applied with a row missing')
                self.reject(table, fname, i, keyf(raw), e.reason, e.detail)
                continue
            ok.append((fname, i, raw, vals))
        return ok

    def run(self):
        S = self.state
        need_columns(find(S, 'services'), ['service_id', 'billing_method', 'price', 'currency'])
        need_columns(find(S, 'wallets'), ['wallet_id', 'account_id', 'currency', 'balance'])
        need_columns(find(S, 'subscriptions'), ['subscription_id', 'account_id', 'source', 'status'])
        need_columns(find(S, 'subscription_items'), ['subscription_id', 'item_no', 'service_id', 'start_date'])
        need_columns(find(S, 'price_tiers'), ['service_id', 'tier_no', 'unit_price'])
        need_columns(find(S, 'tax_rates'), RATE_COLS)
        need_columns(find(S, 'discounts'), ['discount_id', 'subscription_id', 'kind', 'value', 'start_date'])
        # ---- services
        def svc_dom(v):
            if v['price'] < 0:
                raise Bad('INVALID_VALUE', 'price')
            if v['billing_method'] == 'PRE_RATE' and v['rate_period'][0] < 1:
                raise Bad('INVALID_VALUE', 'rate_period')
            if v['unit_size'] is not None and v['unit_size'] <= 0:
                raise Bad('INVALID_VALUE', 'unit_size')

        def svc_dom2(v):
            # R1: SPEC §9.1's domains, after v1's; every failure is INVALID_VALUE.
            if v['free_units'] is not None and v['free_units'] < 0:
                raise Bad('INVALID_VALUE', 'free_units')
            if v['pricing_period'] is not None and v['pricing_period'][0] < 1:
                raise Bad('INVALID_VALUE', 'pricing_period')
            for c in ('txn_fee', 'txn_min', 'txn_max'):
                if v[c] is not None and v[c] < 0:
                    raise Bad('INVALID_VALUE', c)
            if v['txn_min'] is not None and v['txn_max'] is not None and v['txn_min'] > v['txn_max']:
                raise Bad('INVALID_VALUE', 'txn_min > txn_max')
            if v['pricing_model'] == 'PERCENTAGE' and (
                    v['free_units'] is not None or v['pricing_period'] is not None or v['billing_method'] != 'POST_RATE'):
                raise Bad('INVALID_VALUE', 'PERCENTAGE')

        def bm(s):
            if s not in ('PRE_RATE', 'POST_RATE', 'ONE_TIME'):
                raise Bad('INVALID_VALUE', 'bm')
            return s

        def cur(s):
            if s not in MINOR:
                raise Bad('INVALID_VALUE', 'cur')
            return s
        svc_path = find(S, 'services')
        self.svc_header = header_of(svc_path) or []
        svc_rows = read_table(svc_path)
        svcs = {}
        self.svc_rows_out = []     # the next state's services: every row parsed and not a duplicate
        for fname, i, raw, v in self.parse('services', svc_rows, [
                ('service_id', p_str, True), ('billing_method', bm, True), ('price', p_dec, True),
                ('currency', cur, True), ('rate_period', p_period, lambda v: v.get('billing_method') == 'PRE_RATE'),
                ('advance_period', p_period, False), ('unit_size', p_dec, False)], lambda r: r.get('service_id', ''), svc_dom,
                late=[('pricing_model', p_model, False), ('free_units', p_dec, False), ('pricing_period', p_period, False),
                      ('txn_fee', p_dec, False), ('txn_min', p_dec, False), ('txn_max', p_dec, False),
                      ('tax_code', p_str, False), ('price_includes_tax', p_bool, False)], late_domain=svc_dom2):
            if v['service_id'] in svcs:
                self.reject('services', fname, i, v['service_id'], 'DUPLICATE_KEY')
                continue
            if v['advance_period'] is None:
                v['advance_period'] = (0, 'day')
            if v['unit_size'] is None:
                v['unit_size'] = Decimal(1)
            v['model'] = v['pricing_model'] or 'PER_UNIT'
            v['free'] = v['free_units'] or Decimal(0)
            v['incl'] = bool(v['price_includes_tax'])
            v['tiers'] = []
            v['fname'], v['row'] = fname, i
            svcs[v['service_id']] = v
            self.svc_rows_out.append(raw)
        # ---- price_tiers (configuration, SPEC §9.1 and R2)
        def tier_dom(v):
            if v['tier_no'] < 1:
                raise Bad('INVALID_VALUE', 'tier_no')
            if v['unit_price'] < 0:
                raise Bad('INVALID_VALUE', 'unit_price')
            if v['flat_fee'] is not None and v['flat_fee'] < 0:
                raise Bad('INVALID_VALUE', 'flat_fee')
        tier_path = find(S, 'price_tiers')
        self.had_tiers = tier_path is not None
        self.tier_rows_out = []
        tiers_by_svc = {}
        seen_t = set()
        for fname, i, raw, v in self.parse('price_tiers', read_table(tier_path), [
                ('service_id', p_str, True), ('tier_no', p_int, True), ('up_to', p_dec, False),
                ('unit_price', p_dec, True), ('flat_fee', p_dec, False)],
                lambda r: f"{r.get('service_id', '')}/{r.get('tier_no', '')}", tier_dom, config=True):
            k = (v['service_id'], v['tier_no'])
            if k in seen_t:
                raise ConfigError(f'price_tiers {fname} row {i}: duplicate key {k[0]}/{k[1]}')
            seen_t.add(k)
            v['fname'], v['row'], v['key'] = fname, i, f"{raw['service_id']}/{raw['tier_no']}"
            self.tier_rows_out.append(raw)
            tiers_by_svc.setdefault(v['service_id'], []).append(v)
        # Tier-set rules: a breach rejects the service and all its tiers (INVALID_TIERS); a
        # tier of an unknown or rejected service is UNKNOWN_SERVICE; a tier of a service of a
        # flat model is INVALID_TIERS, that row only.
        for sid, ts in tiers_by_svc.items():
            svc = svcs.get(sid)
            if svc is None:
                for t in ts:
                    self.reject('price_tiers', t['fname'], t['row'], t['key'], 'UNKNOWN_SERVICE')
            elif svc['model'] not in ('GRADUATED', 'VOLUME'):
                for t in ts:
                    self.reject('price_tiers', t['fname'], t['row'], t['key'], 'INVALID_TIERS')
        for sid, svc in list(svcs.items()):
            if svc['model'] not in ('GRADUATED', 'VOLUME'):
                continue
            ts = sorted(tiers_by_svc.get(sid, []), key=lambda t: t['tier_no'])
            ok = len(ts) > 0
            prev = None
            for j, t in enumerate(ts):
                last = j == len(ts) - 1
                up = t['up_to']
                if last:
                    ok = ok and up is None
                elif up is None or up < 0 or (prev is not None and not up > prev):
                    ok = False
                else:
                    prev = up
            if not ok:
                self.reject('services', svc['fname'], svc['row'], sid, 'INVALID_TIERS')
                for t in ts:
                    self.reject('price_tiers', t['fname'], t['row'], t['key'], 'INVALID_TIERS')
                del svcs[sid]      # treated as rejected; its row is still carried through
                continue
            svc['tiers'] = [(t['up_to'], t['unit_price'], t['flat_fee'] or Decimal(0)) for t in ts]
        # ---- tax_rates (configuration)
        def rate_dom(v):
            if v['rate'] < 0:
                raise Bad('INVALID_VALUE', 'rate')
        rate_path = find(S, 'tax_rates')
        self.had_rates = rate_path is not None
        self.rate_rows_out = []
        self.rates = {}             # code -> [(valid_from, rate)]
        seen_r = set()
        for fname, i, raw, v in self.parse('tax_rates', read_table(rate_path), [
                ('tax_code', p_str, True), ('rate', p_dec, True), ('valid_from', p_date, True)],
                lambda r: f"{r.get('tax_code', '')}/{r.get('valid_from', '')}", rate_dom, config=True):
            k = (v['tax_code'], v['valid_from'])
            if k in seen_r:
                raise ConfigError(f'tax_rates {fname} row {i}: duplicate key {k[0]}/{k[1]}')
            seen_r.add(k)
            self.rate_rows_out.append(raw)
            self.rates.setdefault(v['tax_code'], []).append((v['valid_from'], v['rate']))
        # ---- wallets
        wallets = {}
        wallet_by_acct = {}
        for fname, i, raw, v in self.parse('wallets', read_table(find(S, 'wallets')), [
                ('wallet_id', p_str, True), ('account_id', p_str, True), ('currency', cur, True),
                ('balance', p_dec, True), ('updated_at', p_ts, False)], lambda r: r.get('wallet_id', '')):
            if v['wallet_id'] in wallets or v['account_id'] in wallet_by_acct:
                self.reject('wallets', fname, i, v['wallet_id'], 'DUPLICATE_KEY')
                continue
            v['raw'] = raw
            wallets[v['wallet_id']] = v
            wallet_by_acct[v['account_id']] = v
        # ---- subscriptions
        def status(s):
            if s not in ('ACTIVE', 'DISCONNECTED', 'TERMINATED'):
                raise Bad('INVALID_VALUE', 'status')
            return s
        subs = {}
        bad_subs = set()
        for fname, i, raw, v in self.parse('subscriptions', read_table(find(S, 'subscriptions')), [
                ('subscription_id', p_str, True), ('account_id', p_str, True), ('source', p_str, True),
                ('status', status, True), ('expires_at', p_ts, False)], lambda r: r.get('subscription_id', '')):
            sid = v['subscription_id']
            if sid in subs or sid in bad_subs:
                self.reject('subscriptions', fname, i, sid, 'DUPLICATE_KEY')
                continue
            v['raw'] = raw
            if v['source'] == 'INTERNAL' and v['account_id'] not in wallet_by_acct:
                self.reject('subscriptions', fname, i, sid, 'UNKNOWN_WALLET')
                bad_subs.add(sid)
                self.carried_subs.append(v)
                continue
            subs[sid] = v
        # ---- items
        def item_dom(v):
            if v['item_no'] < 1:
                raise Bad('INVALID_VALUE', 'item_no')
            for c in ('quantity', 'custom_price'):
                if v[c] is not None and v[c] < 0:
                    raise Bad('INVALID_VALUE', c)
        items = {}  # (sid,no) -> v
        post_seen = set()
        item_path = find(S, 'subscription_items')
        self.item_header = header_of(item_path) or []
        for fname, i, raw, v in self.parse('subscription_items', read_table(item_path), [
                ('subscription_id', p_str, True), ('item_no', p_int, True), ('service_id', p_str, True),
                ('quantity', p_dec, False), ('custom_price', p_dec, False), ('start_date', p_date, True),
                ('end_date', p_date, False), ('billed_through', p_date, False)],
                lambda r: f"{r.get('subscription_id', '')}/{r.get('item_no', '')}", item_dom,
                late=[('tax_code', p_str, False), ('period_start', p_date, False), ('period_quantity', p_dec, False),
                      ('period_charged', p_dec, False)]):
            k = (v['subscription_id'], v['item_no'])
            key = f"{k[0]}/{raw['item_no']}"
            svc = svcs.get(v['service_id'])
            if k in self.item_keys:
                self.reject('subscription_items', fname, i, key, 'DUPLICATE_KEY')
                continue
            if svc is not None and svc['billing_method'] == 'POST_RATE':
                pk = (v['subscription_id'], v['service_id'])
                if pk in post_seen:
                    self.reject('subscription_items', fname, i, key, 'DUPLICATE_KEY')
                    continue
                post_seen.add(pk)
            self.item_keys.add(k)
            v['raw'] = raw
            sub = subs.get(v['subscription_id'])
            if sub is None:
                self.reject('subscription_items', fname, i, key, 'UNKNOWN_SUBSCRIPTION')
                self.carried_items.append(v)
                continue
            if svc is None:
                self.reject('subscription_items', fname, i, key, 'UNKNOWN_SERVICE')
                self.carried_items.append(v)
                continue
            # R3: the pricing checks, for INTERNAL subscriptions only (store-managed items are
            # never priced); usage of such an item is rejected with the item's reason.
            reason = None
            if sub['source'] == 'INTERNAL':
                code = v['tax_code'] if v['tax_code'] is not None else svc['tax_code']
                if svc['currency'] != wallet_by_acct[sub['account_id']]['currency']:
                    reason = 'CURRENCY_MISMATCH'
                elif v['custom_price'] is not None and svc['model'] in ('GRADUATED', 'VOLUME'):
                    reason = 'PRICING_MISMATCH'
                elif code is not None and self.rate_of(code) is None:
                    reason = 'UNKNOWN_TAX_CODE'
                v['eff_tax'] = code
            if reason:
                self.reject('subscription_items', fname, i, key, reason)
                self.carried_items.append(v)
                self.mismatch_items[(v['subscription_id'], v['service_id'])] = reason
                continue
            if v['quantity'] is None:
                v['quantity'] = Decimal(1)
            items[k] = v
        self.svcs, self.wallets, self.wallet_by_acct, self.subs, self.items = svcs, wallets, wallet_by_acct, subs, items
        # ---- discounts (SPEC §9.1, R4)
        def kind(s):
            if s not in ('PERCENT', 'AMOUNT'):
                raise Bad('INVALID_VALUE', 'kind')
            return s

        def disc_dom(v):
            if v['item_no'] is not None and v['item_no'] < 1:
                raise Bad('INVALID_VALUE', 'item_no')
            if v['kind'] == 'PERCENT' and not (0 < v['value'] <= 100):
                raise Bad('INVALID_VALUE', 'value')
            if v['kind'] == 'AMOUNT':
                if not v['value'] > 0:
                    raise Bad('INVALID_VALUE', 'value')
                if v['remaining'] is not None and not (0 <= v['remaining'] <= v['value']):
                    raise Bad('INVALID_VALUE', 'remaining')
            if v['end_date'] is not None and not v['start_date'] < v['end_date']:
                raise Bad('INVALID_VALUE', 'dates')
        disc_path = find(S, 'discounts')
        self.had_discounts = disc_path is not None
        self.disc_out = []          # [raw, parsed] of every discount carried to the next state
        self.disc_by_sub = {}       # sid -> the valid discounts in effect at as_of
        self.discounts = {}         # discount_id -> parsed, the valid ones
        seen_d = set()
        for fname, i, raw, v in self.parse('discounts', read_table(disc_path), [
                ('discount_id', p_str, True), ('subscription_id', p_str, True), ('item_no', p_int, False),
                ('kind', kind, True), ('value', p_dec, True), ('remaining', p_dec, False),
                ('start_date', p_date, True), ('end_date', p_date, False)], lambda r: r.get('discount_id', ''), disc_dom):
            did = v['discount_id']
            if did in seen_d:
                self.reject('discounts', fname, i, did, 'DUPLICATE_KEY')
                continue
            seen_d.add(did)
            v['raw'] = raw
            self.disc_out.append(v)
            sub = subs.get(v['subscription_id'])
            if sub is None:
                self.reject('discounts', fname, i, did, 'UNKNOWN_SUBSCRIPTION')
                continue
            if sub['source'] != 'INTERNAL':
                self.reject('discounts', fname, i, did, 'SOURCE_MISMATCH')
                continue
            if v['item_no'] is not None and (v['subscription_id'], v['item_no']) not in self.item_keys:
                self.reject('discounts', fname, i, did, 'UNKNOWN_ITEM')
                continue
            self.discounts[did] = v
            if v['start_date'] <= self.as_of and (v['end_date'] is None or self.as_of < v['end_date']):
                self.disc_by_sub.setdefault(v['subscription_id'], []).append(v)
        # What is left of each AMOUNT budget (null = value); `touched`: drawn on in this run.
        self.remaining = {d: (v['remaining'] if v['remaining'] is not None else v['value'])
                          for d, v in self.discounts.items() if v['kind'] == 'AMOUNT'}
        self.touched = set()
        # ---- usage
        usage_cols = [('usage_id', p_str, True), ('subscription_id', p_str, True), ('service_id', p_str, True),
                      ('event_time', p_ts, True), ('quantity', p_dec, True)]
        need_columns(self.usage_p if self.usage_p != '-' else None, [c for c, _, _ in usage_cols])

        def use_dom(v):
            if v['quantity'] < 0:
                raise Bad('INVALID_VALUE', 'quantity')
        seen_u = set()
        # the POST_RATE item of each (subscription, service)
        self.item_by_svc = {(sid, it['service_id']): it for (sid, _), it in items.items()
                            if svcs[it['service_id']]['billing_method'] == 'POST_RATE'}
        self.usage_rows = {}  # (sid,no) -> [(event_time, quantity)] of the rated usage
        self.deferred_usage = []
        for table, rows in (('deferred_usage', read_table(find(S, 'deferred_usage'))), ('usage', read_table(self.usage_p))):
            for fname, i, raw, v in self.parse(table, rows, usage_cols, lambda r: r.get('usage_id', ''), use_dom):
                uid = v['usage_id']
                if uid in seen_u:
                    self.reject(table, fname, i, uid, 'DUPLICATE_KEY')
                    continue
                seen_u.add(uid)
                r = self.classify_usage(v)
                if r is None:
                    continue
                if r == 'DEFER':
                    self.deferred_usage.append(raw)
                    continue
                self.reject(table, fname, i, uid, r)
        # ---- credits
        def cr_dom(v):
            if v['amount'] <= 0:
                raise Bad('INVALID_VALUE', 'amount')
        self.credits = {}
        seen_c = set()
        for fname, i, raw, v in self.parse('credits', read_table(self.credits_p), [
                ('credit_id', p_str, True), ('wallet_id', p_str, True), ('amount', p_dec, True),
                ('transaction_type', p_str, True), ('received_at', p_ts, True)], lambda r: r.get('credit_id', ''), cr_dom):
            if v['credit_id'] in seen_c:
                self.reject('credits', fname, i, v['credit_id'], 'DUPLICATE_KEY')
                continue
            seen_c.add(v['credit_id'])
            if v['wallet_id'] not in wallets:
                self.reject('credits', fname, i, v['credit_id'], 'UNKNOWN_WALLET')
                continue
            self.credits.setdefault(v['wallet_id'], []).append(v)
        # ---- events
        ETYPES = ('PURCHASED', 'RENEWED', 'REVIVED', 'CANCELLED', 'EXPIRED', 'REVOKED', 'TRANSFERRED')

        def et(s):
            if s not in ETYPES:
                raise Bad('INVALID_VALUE', 'event_type')
            return s

        def ps(s):
            if s not in ('CAPTURED', 'REJECTED', 'REFUNDED'):
                raise Bad('INVALID_VALUE', 'payment_status')
            return s
        ev_cols = [('event_id', p_str, True), ('subscription_id', p_str, True), ('source', p_str, True),
                   ('event_type', et, True), ('event_time', p_ts, True),
                   ('expires_at', p_ts, lambda v: v.get('event_type') in ('PURCHASED', 'RENEWED', 'REVIVED')),
                   ('to_account_id', p_str, lambda v: v.get('event_type') == 'TRANSFERRED'),
                   ('amount', p_dec, False), ('currency', p_str, False), ('payment_status', ps, False)]
        seen_e = set()
        self.events = {}
        for table, rows in (('deferred_events', read_table(find(S, 'deferred_events'))), ('external_events', read_table(self.events_p))):
            for fname, i, raw, v in self.parse(table, rows, ev_cols, lambda r: r.get('event_id', '')):
                if v['event_id'] in seen_e:
                    self.reject(table, fname, i, v['event_id'], 'DUPLICATE_KEY')
                    continue
                seen_e.add(v['event_id'])
                sub = subs.get(v['subscription_id'])
                if sub is None:
                    self.reject(table, fname, i, v['event_id'], 'UNKNOWN_SUBSCRIPTION')
                    continue
                if sub['source'] == 'INTERNAL' or sub['source'] != v['source']:
                    self.reject(table, fname, i, v['event_id'], 'SOURCE_MISMATCH')
                    continue
                v['raw'] = raw
                self.events.setdefault(v['subscription_id'], []).append(v)
        self.rate()

    def classify_usage(self, v):
        sub = self.subs.get(v['subscription_id'])
        if sub is None:
            return 'UNKNOWN_SUBSCRIPTION'
        if sub['source'] != 'INTERNAL':
            return 'EXTERNAL_USAGE'
        svc = self.svcs.get(v['service_id'])
        if svc is None:
            return 'UNKNOWN_SERVICE'
        if svc['billing_method'] != 'POST_RATE':
            return 'NOT_POST_RATE'
        it = self.item_by_svc.get((v['subscription_id'], v['service_id']))
        if it is None:
            # its item is rejected CURRENCY_MISMATCH, PRICING_MISMATCH or UNKNOWN_TAX_CODE (R3)
            return self.mismatch_items.get((v['subscription_id'], v['service_id']), 'UNKNOWN_ITEM')
        if sub['status'] == 'TERMINATED':
            return 'TERMINATED_SUBSCRIPTION'
        t = v['event_time']
        end = it['end_date']
        endt = datetime(end.year, end.month, end.day, tzinfo=timezone.utc) if end else None
        if t >= self.cutoff and (endt is None or t < endt):
            return 'DEFER'
        ws = it['billed_through'] or it['start_date']
        wst = datetime(ws.year, ws.month, ws.day, tzinfo=timezone.utc)
        if t < wst:
            return 'LATE_USAGE'
        if endt is not None and t >= endt:
            return 'ITEM_ENDED'
        k = (it['subscription_id'], it['item_no'])
        self.usage_rows.setdefault(k, []).append((t, v['quantity']))
        return None

    def rate_of(self, code):
        """SPEC §9.1: the rate of a tax code at as_of (the row with the latest valid_from <= as_of),
        or None."""
        rows = [(vf, r) for vf, r in self.rates.get(code, []) if vf <= self.as_of]
        return max(rows)[1] if rows else None

    # ------------------------------------------------------------------ pricing (SPEC §9)
    def item_amount(self, it, svc, q, rows=()):
        """A(q) of an item (§9.2): P = custom_price ?? price; s = the unit size on POST_RATE
        items, and on PRE_RATE/ONE_TIME ones 1 except for PACKAGE."""
        P = it['custom_price'] if it['custom_price'] is not None else svc['price']
        s = svc['unit_size'] if svc['billing_method'] == 'POST_RATE' or svc['model'] == 'PACKAGE' else 1
        return list_amount(svc['model'], q, P, s, svc['free'], svc['tiers'], rows,
                           svc['txn_fee'], svc['txn_min'], svc['txn_max'])

    @staticmethod
    def unit_price(it, svc):
        """R6: a line's unit_price is P on PER_UNIT lines, null for every other model."""
        if svc['model'] != 'PER_UNIT':
            return None
        return it['custom_price'] if it['custom_price'] is not None else svc['price']

    def applicable(self, sid, no):
        """§9.4: the discounts in effect at as_of that apply to item `no` of `sid`, in the order
        they are taken: the item's own by discount_id, then the subscription-wide ones."""
        ds = self.disc_by_sub.get(sid, [])
        by_id = lambda d: d['discount_id'].encode()
        return (sorted((d for d in ds if d['item_no'] == no), key=by_id)
                + sorted((d for d in ds if d['item_no'] is None), key=by_id))

    def price_line(self, cur, it, svc, L, rem):
        """§9.4-9.5 (R5) on a line of signed list amount L (< 0: a usage credit, priced on its
        magnitude). `rem` holds the AMOUNT budgets and is updated. Returns the line's figures
        (magnitudes) and its discount and tax rounding residuals (unsigned)."""
        credit = L < 0
        mag = abs(L)
        left, D, ids, res_d = mag, Decimal(0), [], Fraction(0)
        for d in self.applicable(it['subscription_id'], it['item_no']):
            did = d['discount_id']
            if d['kind'] == 'PERCENT':
                ex = Fraction(left) * Fraction(d['value']) / 100
                x = rnd(ex, cur, self.mode)
                res_d += ex - Fraction(x)
            elif not credit:            # a charge draws on the budget
                x = trunc_minor(min(Fraction(left), Fraction(rem[did])), cur)
                rem[did] = rem[did] - x
            else:                       # a usage credit refills it, up to what was drawn
                x = trunc_minor(min(Fraction(left), Fraction(d['value'] - rem[did])), cur)
                rem[did] = rem[did] + x
            if x != 0:
                ids.append(did)
            left -= x
            D += x
        n = mag - D
        code = it.get('eff_tax')
        r, tax, res_t, amount = None, Decimal(0), Fraction(0), n
        if code is not None:
            r = self.rate_of(code)
            if svc['incl']:             # gross prices: the net is rounded, the tax is the rest
                net = rnd(Fraction(n) * 100 / (100 + Fraction(r)), cur, self.mode)
                tax = n - net
                res_t = Fraction(n) * Fraction(r) / (100 + Fraction(r)) - Fraction(tax)
            else:
                ex = Fraction(n) * Fraction(r) / 100
                tax = rnd(ex, cur, self.mode)
                res_t = ex - Fraction(tax)
                amount = n + tax
        return dict(credit=credit, list=mag, D=D, ids=ids, tax=tax, amount=amount, code=code, rate=r,
                    res_d=res_d, res_t=res_t)

    # ------------------------------------------------------------------ rating
    def rate(self):
        as_of, cutoff = self.as_of, self.cutoff
        txns = []
        disc, reco = [], []
        payments = []
        deferred_events = []
        new_sub = {}
        items_by_sub = {}
        for k, it in sorted(self.items.items()):
            items_by_sub.setdefault(k[0], []).append(it)
        subs_by_acct = {}
        for sid, s in self.subs.items():
            subs_by_acct.setdefault(s['account_id'], []).append(s)
        estimates = []
        # The previous run's cutoff: the state's manifest as_of, else as_of - recurrence.
        mpath = os.path.join(self.state, 'run_manifest.json')
        if os.path.exists(mpath):
            prev_cutoff_date = date.fromisoformat(json.load(open(mpath))['as_of'])
        else:
            n, u = self.recurrence
            prev_cutoff_date = add_period(as_of, (-n, u))
        prev_cutoff = datetime(prev_cutoff_date.year, prev_cutoff_date.month, prev_cutoff_date.day, tzinfo=timezone.utc)
        accounts = sorted(set(list(self.wallet_by_acct) + list(subs_by_acct)))
        for acct in accounts:
            w = self.wallet_by_acct.get(acct)
            asubs = sorted(subs_by_acct.get(acct, []), key=lambda s: s['subscription_id'].encode())
            bal = w['balance'] if w else None
            n = 0
            post_total = Decimal(0)
            had_txn = False

            def add_txn(sub, it, svc, kind, ttype, direction, amount, qty, up, ps, pe, pr=None):
                nonlocal n, bal, had_txn
                n += 1
                had_txn = True
                bal = bal + amount if direction == 'CREDIT' else bal - amount
                # SPEC §9.6: the pricing columns, all null on money received (kind CREDIT).
                txns.append(dict(transaction_id=f"{self.run_id}/{w['wallet_id']}/{n}", run_id=self.run_id, as_of=str(as_of),
                                 wallet_id=w['wallet_id'], account_id=w['account_id'],
                                 subscription_id=sub['subscription_id'] if sub else '',
                                 item_no=str(it['item_no']) if it else '', service_id=it['service_id'] if it else '',
                                 kind=kind, transaction_type=ttype, direction=direction, amount=amount,
                                 list_amount=pr and pr['list'],
                                 discount_amount=pr and pr['D'],
                                 tax_amount=pr and pr['tax'],
                                 net_amount=pr and pr['amount'] - pr['tax'],
                                 tax_code=pr and pr['code'], tax_rate=pr and pr['rate'],
                                 discount_ids=pr and (','.join(pr['ids']) or None),
                                 currency=w['currency'], quantity=qty, unit_price=up,
                                 period_start=str(ps) if ps else '', period_end=str(pe) if pe else '', balance_after=bal))

            def post(sub, it, svc, kind, pr, qty, ps, pe):
                """Books a priced line's totals (signed: a usage credit counts negative) and
                writes it when its amount or its discount is not zero (§9.6)."""
                nonlocal post_total
                sign = -1 if pr['credit'] else 1
                tt['list'] += sign * pr['list']
                tt['discounts'] += sign * pr['D']
                tt['taxes'] += sign * pr['tax']
                if pr['code'] is not None:
                    tt['taxes_by_code'][pr['code']] = tt['taxes_by_code'].get(pr['code'], Decimal(0)) + sign * pr['tax']
                tt['discount_rounding_residual'] += sign * pr['res_d']
                tt['tax_rounding_residual'] += sign * pr['res_t']
                if pr['amount'] == 0 and pr['D'] == 0:
                    return
                for did in pr['ids']:
                    if did in self.remaining:
                        self.touched.add(did)
                up = self.unit_price(it, svc)
                if pr['credit']:
                    add_txn(sub, it, svc, 'POST_RATE', 'USAGE_CREDIT', 'CREDIT', pr['amount'], qty, up, ps, pe, pr)
                    tt['usage_credits'] += pr['amount']
                else:
                    add_txn(sub, it, svc, kind, self.debit_type, 'DEBIT', pr['amount'], qty, up, ps, pe, pr)
                    tt['debits'][kind] = tt['debits'].get(kind, Decimal(0)) + pr['amount']
                    if kind == 'POST_RATE':
                        post_total += pr['amount']
            # 1 credits
            if w:
                cur = w['currency']
                tt = self.tot(cur)
                tt['opening'] += w['balance']
                for c in sorted(self.credits.get(w['wallet_id'], []), key=lambda c: (c['received_at'], c['credit_id'].encode())):
                    add_txn(None, None, None, 'CREDIT', c['transaction_type'], 'CREDIT', c['amount'], None, None, None, None)
                    tt['credits'] += c['amount']
            # 2 external
            for s in asubs:
                if s['source'] == 'INTERNAL':
                    continue
                evs = sorted(self.events.get(s['subscription_id'], []), key=lambda e: (e['event_time'], e['event_id'].encode()))
                st = {'status': s['status'], 'expires_at': s['expires_at'], 'account_id': s['account_id']}
                # SPEC v1.1 §4 step 2: events at or after the cutoff are deferred whatever the
                # status; a TERMINATED subscription's earlier events are consumed (payments
                # reported, nothing applied); the reason is the last event that changed the status.
                cause_on = cause_off = None
                for e in evs:
                    if e['event_time'] >= cutoff:
                        deferred_events.append(e['raw'])
                        continue
                    if s['status'] != 'TERMINATED':
                        t = e['event_type']
                        before = st['status']
                        if t in ('PURCHASED', 'RENEWED', 'REVIVED'):
                            st['expires_at'] = e['expires_at']
                            st['status'] = 'ACTIVE'
                        elif t in ('EXPIRED', 'REVOKED'):
                            st['status'] = 'DISCONNECTED'
                        elif t == 'TRANSFERRED':
                            st['account_id'] = e['to_account_id']
                        if st['status'] != before:
                            if st['status'] == 'ACTIVE':
                                cause_on = 'EXTERNAL_' + t
                            else:
                                cause_off = 'EXTERNAL_' + t
                    if e['amount'] is not None or e['payment_status'] is not None:
                        payments.append((e, st['account_id']))
                if s['status'] == 'TERMINATED':
                    new_sub[s['subscription_id']] = st
                    continue
                if st['status'] == 'ACTIVE' and st['expires_at'] is not None and st['expires_at'] <= cutoff:
                    st['status'] = 'DISCONNECTED'
                    cause_off = 'EXTERNAL_EXPIRED'
                if s['status'] == 'ACTIVE' and st['status'] == 'DISCONNECTED':
                    disc.append(dict(subscription_id=s['subscription_id'], account_id=st['account_id'], wallet_id='', source=s['source'], reason=cause_off, balance=None))
                if s['status'] == 'DISCONNECTED' and st['status'] == 'ACTIVE':
                    reco.append(dict(subscription_id=s['subscription_id'], account_id=st['account_id'], wallet_id='', source=s['source'], reason=cause_on, balance=None))
                new_sub[s['subscription_id']] = st
            if w is None:
                continue
            isubs = [s for s in asubs if s['source'] == 'INTERNAL']
            for s in isubs:
                new_sub[s['subscription_id']] = {'status': s['status'], 'expires_at': s['expires_at'], 'account_id': s['account_id']}
            # 3 post-rate
            for s in isubs:
                if s['status'] not in ('ACTIVE', 'DISCONNECTED'):
                    continue
                for it in items_by_sub.get(s['subscription_id'], []):
                    svc = self.svcs[it['service_id']]
                    if svc['billing_method'] != 'POST_RATE':
                        continue
                    ws = it['billed_through'] or it['start_date']
                    we = min(as_of, it['end_date']) if it['end_date'] else as_of
                    if not ws < we:
                        continue
                    rows = self.usage_rows.get((it['subscription_id'], it['item_no']), [])
                    if svc['pricing_period'] is None:
                        # §9.3 / R11: one line for the window when it has a usage row (of any
                        # quantity); none without (tier flat fees need a pricing period).
                        if rows:
                            q = sum((r[1] for r in rows), Decimal(0))
                            exact = self.item_amount(it, svc, q, [r[1] for r in rows])
                            L = rnd(exact, cur, self.mode)
                            tt['rounding_residual'] += exact - Fraction(L)
                            post(s, it, svc, 'POST_RATE', self.price_line(cur, it, svc, L, self.remaining), q, ws, we)
                    else:
                        # §9.3 / R10: the window split at the grid's boundaries, one line a part.
                        # Every part is matched against the item's period state as read ("before
                        # = the item's period_quantity if period_start = ps"), not as an earlier
                        # part of this window left it: the two differ only for a state whose
                        # period_start lies after the window start's period, which no run writes.
                        pst, pq, pc = it['period_start'], it['period_quantity'], it['period_charged']
                        last = None
                        for ps, pe, a, b in window_parts(it['start_date'], svc['pricing_period'], ws, we):
                            at = datetime(a.year, a.month, a.day, tzinfo=timezone.utc)
                            bt = datetime(b.year, b.month, b.day, tzinfo=timezone.utc)
                            used = sum((q for t_, q in rows if at <= t_ < bt), Decimal(0))
                            matched = pst == ps
                            before = (pq or Decimal(0)) if matched else Decimal(0)
                            charged = (pc or Decimal(0)) if matched else Decimal(0)
                            after = before + used
                            a_after = self.item_amount(it, svc, after)
                            r_after = rnd(a_after, cur, self.mode)
                            L = r_after - charged
                            exact = a_after - (self.item_amount(it, svc, before) if matched else 0)
                            tt['rounding_residual'] += exact - Fraction(L)
                            post(s, it, svc, 'POST_RATE', self.price_line(cur, it, svc, L, self.remaining), used, a, b)
                            last = (ps, after, r_after)
                        it['new_period'] = last
                    it['new_bt'] = we
            # 4 one-time
            for s in isubs:
                if s['status'] != 'ACTIVE':
                    continue
                for it in items_by_sub.get(s['subscription_id'], []):
                    svc = self.svcs[it['service_id']]
                    if svc['billing_method'] != 'ONE_TIME':
                        continue
                    if it['billed_through'] is None and it['start_date'] <= as_of and (it['end_date'] is None or it['end_date'] > as_of):
                        exact = self.item_amount(it, svc, it['quantity'])      # p = A(quantity)
                        L = rnd(exact, cur, self.mode)
                        tt['rounding_residual'] += exact - Fraction(L)
                        post(s, it, svc, 'ONE_TIME', self.price_line(cur, it, svc, L, self.remaining), it['quantity'], None, None)
                        it['new_bt'] = as_of
            # 5 start step
            cand = set()
            if self.start_on:
                for s in isubs:
                    if s['status'] == 'DISCONNECTED' and bal > self.rec_thr:
                        cand.add(s['subscription_id'])
            # 6 pre-rate
            covered = {}
            owed_paid_to_today = {}
            for s in isubs:
                sid = s['subscription_id']
                if not (s['status'] == 'ACTIVE' or sid in cand):
                    continue
                lines = []
                rem = dict(self.remaining)      # the budgets as these charges would leave them (R8)
                for it in items_by_sub.get(sid, []):
                    svc = self.svcs[it['service_id']]
                    if svc['billing_method'] != 'PRE_RATE':
                        continue
                    frm = it['billed_through'] or it['start_date']
                    if sid in cand:
                        frm = max(frm, as_of)
                    to = add_period(as_of, svc['advance_period'])
                    if it['end_date'] is not None:
                        to = min(to, it['end_date'])
                    if frm < to:
                        p = self.item_amount(it, svc, it['quantity'])          # p = A(quantity)
                        exact = charge_exact(frm, to, svc['rate_period'], p)
                        L = rnd(exact, cur, self.mode)
                        lines.append((it, svc, frm, to, exact, L, self.price_line(cur, it, svc, L, rem)))
                # §9.4: T is the sum of the lines' final amounts, discounts and taxes included.
                T = sum((l[6]['amount'] for l in lines), Decimal(0))
                if self.stop_on:
                    taken = T == 0 or bal - T > self.dis_thr
                else:
                    taken = T == 0 or bal >= T
                if taken:
                    self.remaining = rem
                    for it, svc, frm, to, exact, L, pr in lines:
                        tt['rounding_residual'] += exact - Fraction(L)
                        post(s, it, svc, 'PRE_RATE', pr, it['quantity'], frm, to)
                        it['new_bt'] = to
                    covered[sid] = True
                else:
                    covered[sid] = False
                    owed_paid_to_today[sid] = any((l[0]['billed_through'] or l[0]['start_date']) <= as_of for l in lines)
            # 7 stop step
            for s in isubs:
                sid = s['subscription_id']
                if self.stop_on and s['status'] == 'ACTIVE':
                    reason = None
                    if bal <= self.dis_thr:
                        reason = 'BALANCE_AT_OR_BELOW_THRESHOLD'
                    elif covered.get(sid) is False and owed_paid_to_today.get(sid):
                        reason = 'PREPAID_PERIOD_NOT_COVERED'
                    if reason:
                        new_sub[sid]['status'] = 'DISCONNECTED'
                        disc.append(dict(subscription_id=sid, account_id=acct, wallet_id=w['wallet_id'], source='INTERNAL', reason=reason, balance=bal))
                if sid in cand and covered.get(sid) and (not self.stop_on or bal > self.dis_thr):
                    new_sub[sid]['status'] = 'ACTIVE'
                    reco.append(dict(subscription_id=sid, account_id=acct, wallet_id=w['wallet_id'], source='INTERNAL', reason='BALANCE_ABOVE_THRESHOLD', balance=bal))
            w['closing'] = bal
            tt['closing'] += bal
            # 8 estimation
            do = self.est == 'all' or (self.est == 'changed' and (had_txn or (w['updated_at'] is not None and w['updated_at'] >= prev_cutoff)))
            if do:
                daily = Fraction(0)
                for s in isubs:
                    if new_sub[s['subscription_id']]['status'] != 'ACTIVE':
                        continue
                    for it in items_by_sub.get(s['subscription_id'], []):
                        svc = self.svcs[it['service_id']]
                        if svc['billing_method'] != 'PRE_RATE':
                            continue
                        if it['start_date'] <= as_of and (it['end_date'] is None or as_of < it['end_date']):
                            # §9.6 / R9: p after the PERCENT discounts in effect, exclusive tax
                            # added, exact; AMOUNT budgets ignored.
                            p = Fraction(self.item_amount(it, svc, it['quantity']))
                            for d in self.applicable(s['subscription_id'], it['item_no']):
                                if d['kind'] == 'PERCENT':
                                    p *= 1 - Fraction(d['value']) / 100
                            if it.get('eff_tax') is not None and not svc['incl']:
                                p *= 1 + Fraction(self.rate_of(it['eff_tax'])) / 100
                            daily += p / days_of(as_of, svc['rate_period'])
                dr = days_of(as_of, self.recurrence)
                if dr > 0:
                    daily += Fraction(post_total) / dr
                if bal <= 0:
                    days = 0
                elif daily == 0:
                    days = None
                else:
                    days = int(Fraction(bal) / daily // 1)
                dep = None
                if days is not None:
                    try:
                        dep = as_of + timedelta(days=days)
                    except OverflowError:
                        dep = None
                cls = 'DEPLETED' if bal <= self.dis_thr else ('LOW' if days is not None and days < self.low_days else 'OK')
                estimates.append(dict(wallet_id=w['wallet_id'], account_id=acct, balance=bal,
                                      daily_consumption=rnd6(daily),
                                      days_remaining=days, depletion_date=dep, class_=cls))
        self.txns, self.disc, self.reco, self.payments, self.deferred_events, self.new_sub, self.estimates = \
            txns, disc, reco, payments, deferred_events, new_sub, estimates


def norm(v):
    """A reference value as comparable text: decimals by value, timestamps to the µs."""
    if v is None:
        return ''
    if isinstance(v, Decimal):
        return 'D' + str(v.normalize()) if v != 0 else 'D0'
    if isinstance(v, datetime):
        return v.strftime('%Y-%m-%dT%H:%M:%S.%f')
    return str(v)


def normcsv(s, col):
    """billrun's CSV text of column `col` (or an input's raw text) as `norm` renders the same
    value: decimals by value, timestamps as instants, periods and integers canonical."""
    if s == '':
        return ''
    if DEC_RE.match(s) and col in DEC_COLS:
        return norm(Decimal(s))
    if col in INT_COLS and INT_RE.match(s):
        return str(int(s))
    if col in PERIOD_COLS and PER_RE.match(s):
        n, u = p_period(s)
        return f'{n} {u}'
    if TS_RE.match(s):
        return norm(p_ts(s))
    return s


DEC_COLS = {'amount', 'quantity', 'unit_price', 'balance_after', 'balance', 'daily_consumption',
            'list_amount', 'discount_amount', 'tax_amount', 'net_amount', 'tax_rate', 'period_quantity', 'period_charged',
            'price', 'unit_size', 'custom_price', 'free_units', 'txn_fee', 'txn_min', 'txn_max', 'up_to', 'flat_fee',
            'value', 'remaining', 'rate'}
INT_COLS = {'item_no', 'tier_no'}
PERIOD_COLS = {'rate_period', 'advance_period', 'pricing_period'}


def canon(raw, cols):
    """An input row copied through, as comparable text."""
    return {c: normcsv(raw.get(c, ''), c) for c in cols}


def has_out(d, name):
    return os.path.exists(os.path.join(d, name + '.csv'))


def load_out(d, name):
    p = os.path.join(d, name + '.csv')
    with open(p, newline='') as f:
        return list(csv.DictReader(f))


def out_header(d, name):
    with open(os.path.join(d, name + '.csv'), newline='') as f:
        return next(csv.reader(f), [])


def cmp_table(name, mine, theirs, keyf, cols, limit=8):
    A = {keyf(r): r for r in mine}
    B = {keyf(r): r for r in theirs}
    bad = 0
    # A column billrun does not write is a mismatch, not a column of nulls.
    missing = [c for c in cols if theirs and c not in theirs[0]]
    if missing:
        print(f'  {name}: billrun writes no column {missing}')
        bad += 1
    for k in sorted(set(A) | set(B)):
        if k not in A:
            bad += 1
            if bad <= limit: print(f'  {name} {k}: only in billrun: {dict((c, B[k].get(c)) for c in cols)}')
            continue
        if k not in B:
            bad += 1
            if bad <= limit: print(f'  {name} {k}: only in ref: {dict((c, norm(A[k].get(c))) for c in cols)}')
            continue
        diffs = [(c, norm(A[k].get(c)), normcsv(B[k].get(c, ''), c)) for c in cols if norm(A[k].get(c)) != normcsv(B[k].get(c, ''), c)]
        if diffs:
            bad += 1
            if bad <= limit: print(f'  {name} {k}: {diffs}')
    print(f'{name}: ref {len(A)} billrun {len(B)} mismatches {bad}')
    return bad


def cmp_header(name, out, want):
    """The next-state table `name` has exactly the columns `want` (in any order)."""
    got = out_header(out, name)
    if set(got) != set(want):
        print(f'  {name}: columns {sorted(got)}, expected {sorted(want)}')
        return 1
    return 0


def cmp_state_table(name, had, out, mine, keyf, cols):
    """A §9 state table: written when the state had it (even empty), absent otherwise."""
    if not had:
        if has_out(out, name):
            print(f'  {name}: written by billrun, but the state had no {name}')
            return 1
        return 0
    if not has_out(out, name):
        print(f'  {name}: the state had {name}, billrun wrote none')
        return 1
    return cmp_table(name, mine, load_out(out, name), keyf, cols)


def main():
    if sys.argv[1:2] == ['--selftest']:
        selftest()
        return
    job, state, usage, credits, events, as_of, out = sys.argv[1:8]
    r = Ref(job, state, usage, credits, events, as_of)
    try:
        r.run()
    except ConfigError as e:
        print(f'reference: {e}', file=sys.stderr)
        sys.exit(2)
    if out == '-':
        summary(r)
        return
    bad = 0
    tc = ['transaction_id', 'wallet_id', 'account_id', 'subscription_id', 'item_no', 'service_id', 'kind', 'transaction_type',
          'direction', 'amount', 'list_amount', 'discount_amount', 'tax_amount', 'net_amount', 'tax_code', 'tax_rate',
          'discount_ids', 'currency', 'quantity', 'unit_price', 'period_start', 'period_end', 'balance_after']
    bad += cmp_table('wallet_transactions', r.txns, load_out(out, 'wallet_transactions'), lambda x: x['transaction_id'], tc)
    lc = ['subscription_id', 'account_id', 'wallet_id', 'source', 'reason', 'balance']
    bad += cmp_table('disconnections', r.disc, load_out(out, 'disconnections'), lambda x: x['subscription_id'], lc)
    bad += cmp_table('reconnections', r.reco, load_out(out, 'reconnections'), lambda x: x['subscription_id'], lc)
    est = [dict(e, **{'class': e['class_']}) for e in r.estimates]
    bad += cmp_table('wallet_estimates', est, load_out(out, 'wallet_estimates'), lambda x: x['wallet_id'],
                     ['wallet_id', 'account_id', 'balance', 'daily_consumption', 'days_remaining', 'depletion_date', 'class'])
    pays = [dict(event_id=e['event_id'], subscription_id=e['subscription_id'], account_id=a, source=e['source'], event_type=e['event_type'],
                 event_time=e['event_time'], amount=e['amount'], currency=e['currency'], payment_status=e['payment_status']) for e, a in r.payments]
    bad += cmp_table('external_payments', pays, load_out(out, 'external_payments'), lambda x: x['event_id'],
                     ['subscription_id', 'account_id', 'source', 'event_type', 'event_time', 'amount', 'currency', 'payment_status'])
    rj = [dict(table=t, row=str(i), file=f, key=k, reason=re_) for t, i, f, k, re_, d in r.rejects]
    bad += cmp_table('rejects', rj, load_out(out, 'rejects'), lambda x: (x['table'], os.path.splitext(x['file'])[0], int(x['row'])), ['key', 'reason'])
    # next state
    ws = [dict(wallet_id=w['wallet_id'], balance=w.get('closing', w['balance'])) for w in r.wallets.values()]
    bad += cmp_table('wallets', ws, load_out(out, 'wallets'), lambda x: x['wallet_id'], ['balance'])
    ss = []
    for sid, s in r.subs.items():
        st = r.new_sub.get(sid, s)
        ss.append(dict(subscription_id=sid, account_id=st['account_id'], status=st['status'], expires_at=st['expires_at']))
    for s in r.carried_subs:
        ss.append(dict(subscription_id=s['subscription_id'], account_id=s['account_id'], status=s['status'], expires_at=s['expires_at']))
    bad += cmp_table('subscriptions', ss, load_out(out, 'subscriptions'), lambda x: x['subscription_id'], ['account_id', 'status', 'expires_at'])
    # services: copied through (the rows parsed and not duplicates, INVALID_TIERS ones
    # included), the eight §9.1 columns when the input had any of them (R12).
    scols = SVC_V1_COLS + (SVC_V2_COLS if any(c in r.svc_header for c in SVC_V2_COLS) else [])
    bad += cmp_header('services', out, scols)
    bad += cmp_table('services', [canon(raw, scols) for raw in r.svc_rows_out], load_out(out, 'services'),
                     lambda x: x['service_id'], scols)
    # items: billed_through and (with a pricing period, after a rated window) period_* as
    # rated; everything else as read; period_* always, tax_code when the input had it.
    icols = ITEM_V1_COLS + (['tax_code'] if 'tax_code' in r.item_header else []) + ITEM_PERIOD_COLS
    bad += cmp_header('subscription_items', out, icols)
    its = []
    for it in list(r.items.values()) + r.carried_items:
        row = canon(it['raw'], icols)
        row['k'] = f"{it['subscription_id']}/{it['item_no']}"
        if 'new_bt' in it:
            row['billed_through'] = it['new_bt']
        if 'new_period' in it:
            row['period_start'], row['period_quantity'], row['period_charged'] = it['new_period']
        its.append(row)
    bad += cmp_table('subscription_items', its, load_out(out, 'subscription_items'),
                     lambda x: x.get('k') or f"{x['subscription_id']}/{int(x['item_no'])}", icols)
    bad += cmp_table('deferred_usage', [dict(u) for u in r.deferred_usage], load_out(out, 'deferred_usage'), lambda x: x['usage_id'], ['subscription_id', 'service_id'])
    bad += cmp_table('deferred_events', [dict(u) for u in r.deferred_events], load_out(out, 'deferred_events'), lambda x: x['event_id'], ['subscription_id', 'event_type'])
    # §9 state tables
    bad += cmp_state_table('price_tiers', r.had_tiers, out, [canon(raw, TIER_COLS) for raw in r.tier_rows_out],
                           lambda x: (x['service_id'], int(x['tier_no'])), TIER_COLS)
    bad += cmp_state_table('tax_rates', r.had_rates, out, [canon(raw, RATE_COLS) for raw in r.rate_rows_out],
                           lambda x: (x['tax_code'], x['valid_from']), RATE_COLS)
    dl = []
    for d in r.disc_out:
        row = canon(d['raw'], DISC_COLS)
        if d['discount_id'] in r.touched:       # written back only for a budget drawn on
            row['remaining'] = r.remaining[d['discount_id']]
        dl.append(row)
    bad += cmp_state_table('discounts', r.had_discounts, out, dl, lambda x: x['discount_id'], DISC_COLS)
    bad += cmp_totals(r, json.load(open(os.path.join(out, 'run_manifest.json'))))
    print('TOTAL MISMATCHES', bad)
    sys.exit(1 if bad else 0)


def summary(r):
    """OUTDIR `-`: what the reference computed, for checking that a dataset exercises what it
    should (rejects by table and reason, lines by kind and direction, pricing figures, totals)."""
    from collections import Counter
    print('rejects:')
    for (t, why), n in sorted(Counter((x[0], x[4]) for x in r.rejects).items()):
        print(f'  {t:20} {why:24} {n}')
    print('lines:')
    for k, n in sorted(Counter((x['kind'], x['direction'], x['transaction_type']) for x in r.txns).items()):
        print(f'  {k} {n}')
    print('lines with a discount', sum(1 for x in r.txns if x['discount_amount']),
          '| fully discounted', sum(1 for x in r.txns if x['kind'] != 'CREDIT' and x['amount'] == 0),
          '| taxed', sum(1 for x in r.txns if x['tax_code'] is not None),
          '| pricing-period items rated', sum(1 for it in r.items.values() if 'new_period' in it),
          '| budgets drawn on', len(r.touched))
    for c, t in sorted(r.totals.items()):
        print(c, {k: (str(v) if not isinstance(v, Fraction) else float(v)) for k, v in t.items()})


def cmp_totals(r, m):
    """The manifest's totals per currency (§5, §9.6, R12): money exactly, the residuals
    (12 decimals in the manifest) to 1e-11. A currency, kind or tax code absent on one side
    compares as zero (the spec does not say whether zero figures are listed)."""
    bad = 0
    theirs = m.get('totals', {})
    D = lambda x: Decimal(x) if x is not None else Decimal(0)
    for c in sorted(set(r.totals) | set(theirs)):
        mine = r.tot(c)
        t = theirs.get(c, {})
        diffs = []
        for k in ('opening', 'credits', 'closing', 'list', 'discounts', 'taxes', 'usage_credits'):
            if mine[k] != D(t.get(k)):
                diffs.append((k, mine[k], t.get(k)))
        deb = dict(mine['debits'])
        deb['total'] = sum(deb.values(), Decimal(0))
        for k in set(deb) | set(t.get('debits', {})):
            if deb.get(k, Decimal(0)) != D(t.get('debits', {}).get(k)):
                diffs.append(('debits.' + k, deb.get(k, Decimal(0)), t.get('debits', {}).get(k)))
        tb = t.get('taxes_by_code', {})
        for k in set(mine['taxes_by_code']) | set(tb):
            if mine['taxes_by_code'].get(k, Decimal(0)) != D(tb.get(k)):
                diffs.append(('taxes_by_code.' + k, mine['taxes_by_code'].get(k), tb.get(k)))
        for k in ('rounding_residual', 'discount_rounding_residual', 'tax_rounding_residual'):
            v = mine[k]
            if abs(Decimal(v.numerator) / v.denominator - D(t.get(k))) > Decimal('1e-11'):
                diffs.append((k, float(v), t.get(k)))
        if diffs:
            print('  totals', c, diffs)
            bad += len(diffs)
    print(f'totals: mismatches {bad}')
    return bad


# ---------------------------------------------------------------- self-test
def selftest():
    """SPEC §9.2's figures, §9.5's inclusive-tax example, and the §9.3 property that a
    pricing period's charges add up to one charge of its total, daily or monthly."""
    F = Fraction
    grad = [(D_('10'), D_('10'), D_('2')), (D_('20'), D_('5'), D_('3')), (None, D_('5'), D_('3'))]
    for q, want in [(0, 2), (1, 12), (10, 102), (11, 110), (12, 115), (21, 163)]:
        got = list_amount('GRADUATED', D_(q), tiers=grad)
        assert got == want, ('GRADUATED', q, got, want)
    vol = [(D_('100'), D_('2'), D_('10')), (D_('200'), D_('1'), D_('0')), (None, D_('0.5'), D_('50'))]
    for q, want in [('0', 10), ('1', 12), ('100', 210), ('100.5', '100.5'), ('101', 101), ('200', 200), ('300', 200)]:
        got = list_amount('VOLUME', D_(q), tiers=vol)
        assert got == F(D_(want)), ('VOLUME', q, got, want)
    for free, want in [(0, 1300), (10, 1200), (200, 0)]:
        got = list_amount('PACKAGE', D_(121), P=D_(100), s=D_(10), free=D_(free))
        assert got == want, ('PACKAGE', free, got, want)
    rows = [D_('10'), D_('80'), D_('10000')]
    got = list_amount('PERCENTAGE', 0, P=D_('2.99'), rows=rows, lo=D_('1.75'), hi=D_('12'))
    assert got == F(D_('16.142')), ('PERCENTAGE', got)
    got = list_amount('PERCENTAGE', 0, P=D_('2.99'), rows=rows, fee=D_('2'), lo=D_('1.75'), hi=D_('12'))
    assert got == F(D_('18.691')), ('PERCENTAGE fee', got)
    assert list_amount('PERCENTAGE', 0, P=D_('2.99'), rows=[D_(0)], fee=D_(2), lo=D_('1.75')) == 0   # q_r = 0
    assert list_amount('PER_UNIT', D_('1360000'), P=D_('5.75'), s=D_('1000')) == F(D_('7820'))     # §7
    # §9.5: $2.99 at 4 %, prices inclusive of tax: net 2.88, tax 0.11 (both rounding modes).
    for mode in ('half_up', 'half_even'):
        net = rnd(F(D_('2.99')) * 100 / 104, 'USD', mode)
        assert (net, D_('2.99') - net) == (D_('2.88'), D_('0.11')), (mode, net)
    # §9.4: two 10 % discounts on 100.00 take 10.00 + 9.00.
    left, taken = D_('100.00'), []
    for _ in range(2):
        d = rnd(F(left) * 10 / 100, 'USD', 'half_up')
        taken.append(d)
        left -= d
    assert taken == [D_('10.00'), D_('9.00')], taken
    # The pricing grid: months from the start date in one step, clamped; k may be negative.
    assert grid_period(date(2026, 1, 31), (1, 'month'), date(2026, 3, 30)) == (date(2026, 2, 28), date(2026, 3, 31))
    assert grid_period(date(2026, 1, 31), (1, 'month'), date(2025, 12, 31)) == (date(2025, 12, 31), date(2026, 1, 31))
    assert grid_period(date(2026, 1, 31), (1, 'month'), date(2025, 12, 30)) == (date(2025, 11, 30), date(2025, 12, 31))
    assert grid_period(date(2026, 11, 3), (2, 'week'), date(2026, 11, 2)) == (date(2026, 10, 20), date(2026, 11, 3))
    assert window_parts(date(2026, 10, 15), (1, 'month'), date(2026, 11, 10), date(2026, 11, 22)) == [
        (date(2026, 10, 15), date(2026, 11, 15), date(2026, 11, 10), date(2026, 11, 15)),
        (date(2026, 11, 15), date(2026, 12, 15), date(2026, 11, 15), date(2026, 11, 22))]
    selftest_chain()
    print('selftest: ok')


def D_(x):
    return Decimal(str(x))


def selftest_chain():
    """§9.3 end to end on the reference itself: a month of daily runs chained through the
    state (period_*, billed_through, balances, budgets) lists exactly what one monthly run
    lists, for GRADUATED and VOLUME (whose later usage credits back), with free units, a
    PERCENT and an AMOUNT discount and exclusive tax; and each run keeps
    opening + credits + usage_credits - debits = closing."""
    import tempfile
    tmp = tempfile.mkdtemp(prefix='ref-selftest-')
    services = [SVC_V1_COLS + SVC_V2_COLS,
                ['G', 'POST_RATE', '0', 'USD', '', '', '1', 'GRADUATED', '3', '1 month', '', '', '', 'VAT', 'false'],
                ['V', 'POST_RATE', '0', 'USD', '', '', '10', 'VOLUME', '', '1 month', '', '', '', '', '']]
    tiers = [TIER_COLS, ['G', '1', '10', '1.15', '2.50'], ['G', '2', '', '0.7', '1'],
             ['V', '1', '40', '3.33', '0'], ['V', '2', '', '0.5', '1']]
    rates = [RATE_COLS, ['VAT', '19', '2020-01-01']]
    day = lambda k: date(2026, 3, 1) + timedelta(days=k)
    usage = {}   # day index -> [(item_no, qty)]
    import random
    rng = random.Random(7)
    for k in range(31):
        usage[k] = [(no, D_(rng.choice([0, 0, 1, 2.5, 7, 12]))) for no in (1, 2) for _ in range(rng.randrange(3))]

    def write(path, rows):
        with open(path, 'w', newline='') as f:
            csv.writer(f, lineterminator='\n').writerows(rows)

    def run(state, first, last, as_of):
        """Writes `state` (a dict of tables) to a directory, runs the reference with the usage
        of days [first, last) and returns it."""
        d = tempfile.mkdtemp(dir=tmp)
        for name, rows in state.items():
            write(os.path.join(d, name + '.csv'), rows)
        urows = [['usage_id', 'subscription_id', 'service_id', 'event_time', 'quantity']]
        for k in range(first, last):
            for j, (no, q) in enumerate(usage[k]):
                urows.append([f'u{k}-{j}', 'S', 'G' if no == 1 else 'V', f'{day(k)}T12:00:00Z', str(q)])
        write(os.path.join(d, 'usage.csv'), urows)
        with open(os.path.join(d, 'job.toml'), 'w') as f:
            f.write('name = "t"\nrounding = "half_up"\n[steps]\nstop_service = false\nwallet_estimation = "off"\n')
        r = Ref(os.path.join(d, 'job.toml'), d, os.path.join(d, 'usage.csv'), '-', '-', str(as_of))
        r.run()
        return r

    def next_state(r, state):
        st = dict(state)
        w = r.wallets['W']
        st['wallets'] = [state['wallets'][0], ['W', 'A', 'USD', str(w['closing']), '']]
        items = [ITEM_V1_COLS + ITEM_PERIOD_COLS]
        for (sid, no), it in sorted(r.items.items()):
            ps, pq, pc = it.get('new_period', (it['period_start'], it['period_quantity'], it['period_charged']))
            bt = it.get('new_bt', it['billed_through'])
            items.append([sid, str(no), it['service_id'], '', '', str(it['start_date']), '', str(bt or ''),
                          str(ps or ''), str(pq if pq is not None else ''), str(pc if pc is not None else '')])
        st['subscription_items'] = items
        disc = [DISC_COLS]
        for d in r.disc_out:
            rem = r.remaining[d['discount_id']] if d['discount_id'] in r.touched else d['remaining']
            disc.append([d['discount_id'], 'S', str(d['item_no'] or ''), d['kind'], str(d['value']),
                         '' if rem is None else str(rem), str(d['start_date']), ''])
        st['discounts'] = disc
        return st

    state0 = dict(services=services, price_tiers=tiers, tax_rates=rates,
                  wallets=[['wallet_id', 'account_id', 'currency', 'balance', 'updated_at'], ['W', 'A', 'USD', '1000.00', '']],
                  subscriptions=[['subscription_id', 'account_id', 'source', 'status', 'expires_at'], ['S', 'A', 'INTERNAL', 'ACTIVE', '']],
                  subscription_items=[ITEM_V1_COLS + ITEM_PERIOD_COLS,
                                      ['S', '1', 'G', '', '', '2026-03-01', '', '', '', '', ''],
                                      ['S', '2', 'V', '', '', '2026-03-01', '', '', '', '', '']],
                  discounts=[DISC_COLS, ['D1', 'S', '2', 'PERCENT', '12.5', '', '2026-01-01', ''],
                             ['D2', 'S', '', 'AMOUNT', '40', '', '2026-01-01', '']])

    def listed(r):
        out = {}
        for x in r.txns:
            if x['kind'] == 'POST_RATE':
                sign = -1 if x['direction'] == 'CREDIT' else 1
                out[x['item_no']] = out.get(x['item_no'], 0) + sign * x['list_amount']
        return out

    def balanced(r):
        t = r.tot('USD')
        assert t['opening'] + t['credits'] + t['usage_credits'] - sum(t['debits'].values(), Decimal(0)) == t['closing'], t
    monthly = run(state0, 0, 31, day(31))
    balanced(monthly)
    st, daily, credits = state0, {}, 0
    for k in range(31):
        r = run(st, k, k + 1, day(k + 1))
        balanced(r)
        credits += sum(1 for x in r.txns if x['transaction_type'] == 'USAGE_CREDIT')
        for no, v in listed(r).items():
            daily[no] = daily.get(no, 0) + v
        st = next_state(r, st)
    assert daily == listed(monthly), (daily, listed(monthly))
    assert credits > 0, 'the VOLUME plan never credited back'
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__':
    main()
