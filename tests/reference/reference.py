#!/usr/bin/env python3
"""A second, independent implementation of SPEC.md, for differential tests.

    reference.py JOB STATE USAGE CREDITS EVENTS AS_OF OUTDIR

Reads a CSV state and CSV inputs (a missing path reads as no rows), computes the run from the
text of SPEC.md (and, where the spec leaves room, the readings in docs/DECISIONS.md), then
compares with billrun's CSV output directory OUTDIR table by table: every row's values
(decimals compared as numbers, timestamps as instants), rejects by (table, file, row) with
their key and reason (the file by its name without extension, so a state written as Parquet
compares with its CSV twin), and the manifest's rounding residual per currency. Prints the
differences and `TOTAL MISMATCHES n`; exits 1 when n > 0.

Written in plain Python (decimal, fractions, datetime) and sharing no code or design with
the Rust engine: day fractions and estimates are exact `Fraction`s, rounded once.
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
        self.item_keys, self.mismatch_items, self.residual = set(), {}, {}
        self.state, self.usage_p, self.credits_p, self.events_p = state, usage, credits, events

    def reject(self, table, fname, row, key, reason, detail=''):
        self.rejects.append((table, row, fname, key, reason, detail))

    def parse(self, table, rows, cols, keyf, domain=None):
        """cols: list of (name, parser, required). Returns list of (fname,row,raw,parsed) accepted."""
        ok = []
        for fname, i, raw in rows:
            vals = {}
            try:
                for name, parser, req in cols:
                    s = raw.get(name, '')
                    if s == '':
                        if req is True or (callable(req) and req(vals)):
                            raise Bad('MISSING_REQUIRED', name)
                        vals[name] = None
                    else:
                        vals[name] = parser(s)
                if domain:
                    domain(vals)
            except Bad as e:
                self.reject(table, fname, i, keyf(raw), e.reason, e.detail)
                continue
            ok.append((fname, i, raw, vals))
        return ok

    def run(self):
        S = self.state
        # ---- services
        def svc_dom(v):
            if v['price'] < 0:
                raise Bad('INVALID_VALUE', 'price')
            if v['billing_method'] == 'PRE_RATE' and v['rate_period'][0] < 1:
                raise Bad('INVALID_VALUE', 'rate_period')
            if v['unit_size'] is not None and v['unit_size'] <= 0:
                raise Bad('INVALID_VALUE', 'unit_size')

        def bm(s):
            if s not in ('PRE_RATE', 'POST_RATE', 'ONE_TIME'):
                raise Bad('INVALID_VALUE', 'bm')
            return s

        def cur(s):
            if s not in MINOR:
                raise Bad('INVALID_VALUE', 'cur')
            return s
        svc_rows = read_table(find(S, 'services'))
        svcs = {}
        self.svc_rows_out = []
        for fname, i, raw, v in self.parse('services', svc_rows, [
                ('service_id', p_str, True), ('billing_method', bm, True), ('price', p_dec, True),
                ('currency', cur, True), ('rate_period', p_period, lambda v: v.get('billing_method') == 'PRE_RATE'),
                ('advance_period', p_period, False), ('unit_size', p_dec, False)], lambda r: r.get('service_id', ''), svc_dom):
            if v['service_id'] in svcs:
                self.reject('services', fname, i, v['service_id'], 'DUPLICATE_KEY')
                continue
            if v['advance_period'] is None:
                v['advance_period'] = (0, 'day')
            if v['unit_size'] is None:
                v['unit_size'] = Decimal(1)
            svcs[v['service_id']] = v
            self.svc_rows_out.append(raw)
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
        for fname, i, raw, v in self.parse('subscription_items', read_table(find(S, 'subscription_items')), [
                ('subscription_id', p_str, True), ('item_no', p_int, True), ('service_id', p_str, True),
                ('quantity', p_dec, False), ('custom_price', p_dec, False), ('start_date', p_date, True),
                ('end_date', p_date, False), ('billed_through', p_date, False)],
                lambda r: f"{r.get('subscription_id', '')}/{r.get('item_no', '')}", item_dom):
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
            if sub['source'] == 'INTERNAL' and svc['currency'] != wallet_by_acct[sub['account_id']]['currency']:
                self.reject('subscription_items', fname, i, key, 'CURRENCY_MISMATCH')
                self.carried_items.append(v)
                self.mismatch_items[(v['subscription_id'], v['service_id'])] = True
                continue
            if v['quantity'] is None:
                v['quantity'] = Decimal(1)
            items[k] = v
        self.svcs, self.wallets, self.wallet_by_acct, self.subs, self.items = svcs, wallets, wallet_by_acct, subs, items
        # ---- usage
        usage_cols = [('usage_id', p_str, True), ('subscription_id', p_str, True), ('service_id', p_str, True),
                      ('event_time', p_ts, True), ('quantity', p_dec, True)]

        def use_dom(v):
            if v['quantity'] < 0:
                raise Bad('INVALID_VALUE', 'quantity')
        seen_u = set()
        # the POST_RATE item of each (subscription, service)
        self.item_by_svc = {(sid, it['service_id']): it for (sid, _), it in items.items()
                            if svcs[it['service_id']]['billing_method'] == 'POST_RATE'}
        self.usage_acc = {}  # (sid,no) -> qty sum
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
            if (v['subscription_id'], v['service_id']) in self.mismatch_items:
                return 'CURRENCY_MISMATCH'
            return 'UNKNOWN_ITEM'
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
        self.usage_acc[k] = self.usage_acc.get(k, Decimal(0)) + v['quantity']
        return None

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

            def add_txn(sub, it, svc, kind, ttype, direction, amount, qty, up, ps, pe):
                nonlocal n, bal, had_txn
                n += 1
                had_txn = True
                bal = bal + amount if direction == 'CREDIT' else bal - amount
                txns.append(dict(transaction_id=f"{self.run_id}/{w['wallet_id']}/{n}", run_id=self.run_id, as_of=str(as_of),
                                 wallet_id=w['wallet_id'], account_id=w['account_id'],
                                 subscription_id=sub['subscription_id'] if sub else '',
                                 item_no=str(it['item_no']) if it else '', service_id=it['service_id'] if it else '',
                                 kind=kind, transaction_type=ttype, direction=direction, amount=amount,
                                 # SPEC v2 §9.6 on v1 data: list = net = amount, no discount or tax;
                                 # all null on money received.
                                 list_amount=None if kind == 'CREDIT' else amount,
                                 discount_amount=None if kind == 'CREDIT' else Decimal(0),
                                 tax_amount=None if kind == 'CREDIT' else Decimal(0),
                                 net_amount=None if kind == 'CREDIT' else amount,
                                 tax_code=None, tax_rate=None, discount_ids=None,
                                 currency=w['currency'], quantity=qty, unit_price=up,
                                 period_start=str(ps) if ps else '', period_end=str(pe) if pe else '', balance_after=bal))
            # 1 credits
            if w:
                for c in sorted(self.credits.get(w['wallet_id'], []), key=lambda c: (c['received_at'], c['credit_id'].encode())):
                    add_txn(None, None, None, 'CREDIT', c['transaction_type'], 'CREDIT', c['amount'], None, None, None, None)
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
                    q = self.usage_acc.get((it['subscription_id'], it['item_no']), Decimal(0))
                    price = it['custom_price'] if it['custom_price'] is not None else svc['price']
                    exact = Fraction(q) * Fraction(price) / Fraction(svc['unit_size'])
                    amt = rnd(exact, w['currency'], self.mode)
                    self.residual[w['currency']] = self.residual.get(w['currency'], 0) + Fraction(amt) - Fraction(exact)
                    if amt != 0:
                        add_txn(s, it, svc, 'POST_RATE', self.debit_type, 'DEBIT', amt, q, price, ws, we)
                        post_total += amt
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
                        price = it['custom_price'] if it['custom_price'] is not None else svc['price']
                        exact = Fraction(price) * Fraction(it['quantity'])
                        amt = rnd(exact, w['currency'], self.mode)
                        self.residual[w['currency']] = self.residual.get(w['currency'], 0) + Fraction(amt) - Fraction(exact)
                        if amt != 0:
                            add_txn(s, it, svc, 'ONE_TIME', self.debit_type, 'DEBIT', amt, it['quantity'], price, None, None)
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
                        price = it['custom_price'] if it['custom_price'] is not None else svc['price']
                        p = price * it['quantity']
                        exact = charge_exact(frm, to, svc['rate_period'], p)
                        amt = rnd(exact, w['currency'], self.mode)
                        lines.append((it, svc, frm, to, exact, amt, price))
                T = sum((l[5] for l in lines), Decimal(0))
                if self.stop_on:
                    taken = T == 0 or bal - T > self.dis_thr
                else:
                    taken = T == 0 or bal >= T
                if taken:
                    for it, svc, frm, to, exact, amt, price in lines:
                        self.residual[w['currency']] = self.residual.get(w['currency'], 0) + Fraction(amt) - Fraction(exact)
                        if amt != 0:
                            add_txn(s, it, svc, 'PRE_RATE', self.debit_type, 'DEBIT', amt, it['quantity'], price, frm, to)
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
                            price = it['custom_price'] if it['custom_price'] is not None else svc['price']
                            daily += Fraction(price * it['quantity']) / days_of(as_of, svc['rate_period'])
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
    """billrun's CSV text of column `col` as `norm` renders the same value."""
    if s == '':
        return ''
    if DEC_RE.match(s) and col in DEC_COLS:
        return norm(Decimal(s))
    if TS_RE.match(s):
        return norm(p_ts(s))
    return s


DEC_COLS = {'amount', 'quantity', 'unit_price', 'balance_after', 'balance', 'daily_consumption',
            'list_amount', 'discount_amount', 'tax_amount', 'net_amount', 'tax_rate', 'period_quantity', 'period_charged'}


def load_out(d, name):
    p = os.path.join(d, name + '.csv')
    with open(p, newline='') as f:
        return list(csv.DictReader(f))


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


def main():
    job, state, usage, credits, events, as_of, out = sys.argv[1:8]
    r = Ref(job, state, usage, credits, events, as_of)
    r.run()
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
    its = []
    for (sid, no), it in r.items.items():
        its.append(dict(k=f'{sid}/{no}', billed_through=it.get('new_bt', it['billed_through'])))
    for it in r.carried_items:
        its.append(dict(k=f"{it['subscription_id']}/{it['item_no']}", billed_through=it['billed_through']))
    # SPEC v2 §9.6: the items' period_* columns always (null without a pricing period).
    its = [dict(i, period_start=None, period_quantity=None, period_charged=None) for i in its]
    bad += cmp_table('subscription_items', its, load_out(out, 'subscription_items'), lambda x: x.get('k') or f"{x['subscription_id']}/{int(x['item_no'])}",
                     ['billed_through', 'period_start', 'period_quantity', 'period_charged'])
    bad += cmp_table('deferred_usage', [dict(u) for u in r.deferred_usage], load_out(out, 'deferred_usage'), lambda x: x['usage_id'], ['subscription_id', 'service_id'])
    bad += cmp_table('deferred_events', [dict(u) for u in r.deferred_events], load_out(out, 'deferred_events'), lambda x: x['event_id'], ['subscription_id', 'event_type'])
    # residual per currency
    m = json.load(open(os.path.join(out, 'run_manifest.json')))
    for c, v in r.residual.items():
        theirs = Decimal(m['totals'][c]['rounding_residual']) if 'totals' in m else None
        if theirs is None or abs(Decimal(-v.numerator) / v.denominator - theirs) > Decimal('1e-11'):
            print('residual', c, float(-v), theirs); bad += 1
    # SPEC v2 §9.6 totals on v1 data: the list is the debits, nothing else moves.
    for c, t in m.get('totals', {}).items():
        lst = sum((x['amount'] for x in r.txns if x['currency'] == c and x['kind'] != 'CREDIT'), Decimal(0))
        want = dict(list=lst, discounts=Decimal(0), taxes=Decimal(0), usage_credits=Decimal(0))
        for k, v in want.items():
            if Decimal(t.get(k, 'NaN')) != v:
                print('totals', c, k, t.get(k), v); bad += 1
    print('TOTAL MISMATCHES', bad)
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
