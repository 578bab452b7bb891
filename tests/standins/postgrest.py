"""In-memory stand-in of Supabase's REST endpoint (PostgREST behind the API gateway) for one table."""

from __future__ import annotations

import bisect
import json
import re
from datetime import datetime, timezone

from ._http import HTTPStandin, Response, json_response

DEFAULT_COLUMNS = ("id", "domain", "status_dns", "status_hosting", "doc_root", "matomo_id",
                   "error_message", "updated_at", "hosting_server", "hosting_machine")
STATUS_HOSTING_VALUES = ("pending", "active", "failed")
INTEGER_COLUMNS = {"id": "bigint", "matomo_id": "integer"}
RESERVED_PARAMS = {"select", "order", "limit", "offset", "on_conflict", "columns"}
OPERATORS = {"eq", "neq", "gt", "gte", "lt", "lte", "in", "is", "like", "ilike"}
_COMPARISONS = {"eq", "neq", "gt", "gte", "lt", "lte"}
_INT_RE = re.compile(r"^-?\d+$")


class PgError(Exception):
    def __init__(self, status, code, message, details=None, hint=None):
        super().__init__(message)
        self.status, self.body = status, {"code": code, "details": details, "hint": hint, "message": message}


def _now_iso():
    return datetime.now(timezone.utc).isoformat()


def _id_key(value):
    """Sort key of an id: ints before strings, ints numerically."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (0, value, "")
    s = str(value)
    if _INT_RE.match(s):
        return (0, int(s), "")
    return (1, 0, s)


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_int(value):
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and bool(_INT_RE.match(value)))


def _compare(row_value, literal):
    """-1/0/1 comparing a row value with a filter literal, numerically when both look like integers."""
    if _is_int(row_value) and _is_int(literal):
        a, b = int(row_value), int(literal)
    else:
        a, b = _text(row_value), literal
    return (a > b) - (a < b)


def _parse_in_list(raw, col, full):
    if not (raw.startswith("(") and raw.endswith(")")):
        raise PgError(400, "PGRST100", f'"failed to parse filter ({full})" (line 1, column 4)',
                      "unexpected end of input expecting \"(\"")
    inner, items, cur, quoted, i = raw[1:-1], [], [], False, 0
    while i < len(inner):
        ch = inner[i]
        if quoted:
            if ch == "\\" and i + 1 < len(inner):
                cur.append(inner[i + 1]); i += 1
            elif ch == '"':
                quoted = False
            else:
                cur.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ",":
            items.append("".join(cur)); cur = []
        else:
            cur.append(ch)
        i += 1
    if inner:
        items.append("".join(cur))
    return items


def _like_regex(pattern, flags=0):
    out = []
    for ch in pattern:
        if ch in "*%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("^" + "".join(out) + "$", flags | re.DOTALL)


class _Filter:
    __slots__ = ("col", "op", "value", "negate", "lit_int")

    def __init__(self, col, raw):
        self.col = col
        self.negate = False
        full = raw
        if raw.startswith("not."):
            self.negate, raw = True, raw[4:]
        op, sep, value = raw.partition(".")
        if not sep or op not in OPERATORS:
            raise PgError(400, "PGRST100", f'"failed to parse filter ({full})" (line 1, column 1)',
                          f'unexpected "{op[:1]}" expecting "not" or operator (eq, gt, ...)')
        if op == "in":
            value = _parse_in_list(value, col, full)
        elif op == "is":
            if value.lower() not in ("null", "true", "false", "unknown"):
                raise PgError(400, "PGRST100", f'"failed to parse filter ({full})" (line 1, column 4)',
                              'unexpected "' + value[:1] + '" expecting null or trilean value (unknown, true, false)')
        self._set(op, value)

    @classmethod
    def of(cls, col, op, value, negate=False):
        """A filter from parts already parsed (a logic tree's leaf): `value` unquoted, a list for `in`."""
        f = cls.__new__(cls)
        f.col, f.negate = col, negate
        f._set(op, value)
        return f

    def _set(self, op, value):
        self.op = op
        if op == "is":
            value = value.lower()
        elif op == "like":
            value = _like_regex(value)
        elif op == "ilike":
            value = _like_regex(value, re.IGNORECASE)
        self.value = value
        # the literal as an integer when _compare would compare numerically with an integer-like row value
        self.lit_int = int(value) if op in _COMPARISONS and _is_int(value) else None

    def truth(self, row):
        """SQL's three-valued answer: True, False, or None (NULL: a comparison with a NULL value, negated or not)."""
        if self.op != "is" and row.get(self.col) is None:
            return None
        return self.matches(row)

    def matches(self, row):
        v = row.get(self.col)
        if self.op == "is":
            if self.value == "null" or self.value == "unknown":
                r = v is None
            else:
                r = v is (self.value == "true")
            return r != self.negate
        if v is None:  # SQL: any comparison with NULL is NULL, and NOT NULL is still NULL
            return False
        op, lit = self.op, self.value
        if op == "eq":
            r = _compare(v, lit) == 0
        elif op == "neq":
            r = _compare(v, lit) != 0
        elif op == "gt":
            r = _compare(v, lit) > 0
        elif op == "gte":
            r = _compare(v, lit) >= 0
        elif op == "lt":
            r = _compare(v, lit) < 0
        elif op == "lte":
            r = _compare(v, lit) <= 0
        elif op == "in":
            r = any(_compare(v, item) == 0 for item in lit)
        else:  # like / ilike
            r = bool(lit.match(_text(v)))
        return r != self.negate


# -- logic trees: or=(...), and=(...), not.or=(...), nested and(...)/or(...)/not. --------------------------------------
# PostgREST's grammar (pLogicTree, pLogicSingleVal, pQuotedValue, pListVal in PostgREST.ApiRequest.QueryParams):
#   tree   := field "." ["not."] operation  |  ["not."] ("and" | "or") "(" tree ("," tree)* ")"
#   value  := '"' (char | "\\" char)* '"' followed by "," or ")"  |  "{" ... "}"  |  anything up to "," or ")"
# Whitespace around names, commas and parentheses is skipped. The parameter's value is parsed after its key's
# operator: `or=(a.eq.1)` is the text `or(a.eq.1)`, and error columns count in that text.

_PGRST_OPERATORS = {"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "cs", "cd", "ov", "sl", "sr", "nxr",
                    "nxl", "adj", "match", "imatch", "isdistinct"}
_FTS_OPERATORS = {"fts", "plfts", "phfts", "wfts"}
_SUPPORTED_SINGLE = OPERATORS - {"in", "is"}


class _LogicFail(Exception):
    def __init__(self, pos, details):
        super().__init__(details)
        self.pos, self.details = pos, details


class _LogicNode:
    __slots__ = ("op", "negate", "children")

    def __init__(self, op, negate, children):
        self.op, self.negate, self.children = op, negate, children

    def truth(self, row):
        """Kleene's AND/OR over True/False/None, as SQL evaluates them; NOT None is None."""
        result = self.op == "and"
        for child in self.children:
            r = child.truth(row)
            if r is None:
                result = None
            elif r != (self.op == "and"):  # False decides an AND, True decides an OR
                result = r
                break
        if result is None:
            return None
        return result != self.negate

    def leaves(self):
        for child in self.children:
            if isinstance(child, _LogicNode):
                yield from child.leaves()
            else:
                yield child


class _LogicParser:
    """One logic tree parameter, parsed as PostgREST parses it. `strict` also refuses two things PostgREST accepts
    and silently reads otherwise than a client meant: text after the tree's closing parenthesis (PostgREST ignores
    it) and an unquoted value holding "(" (PostgREST keeps it in the value)."""

    def __init__(self, key, value, strict):
        self.raw, self.strict = value, strict
        self.s, self.pos = key + value, 0
        self.best = None  # the failure furthest into the text, as parsec reports it

    def parse(self):
        try:
            tree = self._tree()
            if self.strict and self.pos < len(self.s):
                self._fail(f'unexpected "{self.s[self.pos]}" expecting end of input'
                           " (stand-in: PostgREST ignores what follows the tree's closing parenthesis)")
        except _LogicFail:
            pos, details = self.best
            raise PgError(400, "PGRST100", f'"failed to parse logic tree ({self.raw})" (line 1, column {pos + 1})',
                          details)
        if isinstance(tree, _Filter):  # `or=.eq.1` is the text `or.eq.1`: a filter on a column named "or"
            return _LogicNode("and", False, [tree])
        return tree

    # -- primitives ---------------------------------------------------------------------------------------------
    def _fail(self, details, pos=None):
        pos = self.pos if pos is None else pos
        if self.best is None or pos >= self.best[0]:
            self.best = (pos, details)
        raise _LogicFail(pos, details)

    def _peek(self):
        return self.s[self.pos] if self.pos < len(self.s) else ""

    def _unexpected(self):
        return f'unexpected "{self._peek()}"' if self._peek() else "unexpected end of input"

    def _ws(self):
        while self._peek() in (" ", "\t") and self._peek():
            self.pos += 1

    def _char(self, ch):
        if self._peek() != ch:
            self._fail(f'{self._unexpected()} expecting "{ch}"')
        self.pos += 1

    def _starts(self, text):
        return self.s.startswith(text, self.pos)

    def _quoted(self):
        self._char('"')
        out = []
        while True:
            ch = self._peek()
            if not ch:
                self._fail('unexpected end of input expecting "\\"" or "\\\\"')
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                if not self._peek():
                    self._fail("unexpected end of input")
                ch = self._peek()
                self.pos += 1
            out.append(ch)

    def _field(self):
        self._ws()
        if self._peek() == '"':
            name = self._quoted()
        else:
            parts = []
            while True:
                start = self.pos
                while self._peek() and (self._peek().isalnum() or self._peek() in "_ $"):
                    self.pos += 1
                if self.pos == start:
                    self._fail(f"{self._unexpected()} expecting field name (* or [a..z0..9_$])")
                parts.append(self.s[start:self.pos].strip())
                if self._starts("-") and not self._starts("->"):
                    self.pos += 1
                    continue
                break
            name = "-".join(parts)
        if self._starts("->"):
            self._fail("JSON paths are not supported by this stand-in")
        self._ws()
        return name

    # -- values ---------------------------------------------------------------------------------------------------
    def _single_value(self):
        start, best = self.pos, self.best
        if self._peek() == '"':
            try:
                value = self._quoted()
                if self._peek() not in ("", ",", ")"):
                    self._fail(f'{self._unexpected()} expecting "," or ")" after a quoted value')
                return value
            except _LogicFail:  # not a quoted value after all: the whole of it, quotes included, is the value
                self.pos, self.best = start, best
        if self._peek() == "{":
            end = self.s.find("}", self.pos + 1)
            if end != -1 and "{" not in self.s[self.pos + 1:end]:
                self.pos = end + 1
                return self.s[start:self.pos]
        while self._peek() not in ("", ",", ")"):
            if self.strict and self._peek() == "(":
                self._fail('unexpected "(" in an unquoted value: quote the value ("...")'
                           " (stand-in: PostgREST keeps it in the value)")
            self.pos += 1
        return self.s[start:self.pos]

    def _list_value(self):
        self._ws()
        self._char("(")
        self._ws()
        items = []
        while True:
            start, best = self.pos, self.best
            item = None
            if self._peek() == '"':
                try:
                    item = self._quoted()
                    if self._peek() not in ("", ",", ")"):
                        self._fail(f'{self._unexpected()} expecting "," or ")"')
                except _LogicFail:
                    self.pos, self.best, item = start, best, None
            if item is None:
                while self._peek() not in ("", ",", ")"):
                    self.pos += 1
                item = self.s[start:self.pos]
            items.append(item)
            if self._peek() != ",":
                break
            self.pos += 1
        self._ws()
        self._char(")")
        self._ws()
        return items

    # -- grammar --------------------------------------------------------------------------------------------------
    def _leaf(self):
        col = self._field()
        self._char(".")
        negate = False
        if self._starts("not."):
            negate = True
            self.pos += 4
        if self._starts("in."):
            self.pos += 3
            return _Filter.of(col, "in", self._list_value(), negate)
        if self._starts("is."):
            self.pos += 3
            for word in ("null", "unknown", "true", "false"):
                if self.s[self.pos:self.pos + len(word)].lower() == word:
                    self.pos += len(word)
                    return _Filter.of(col, "is", word, negate)
            self._fail(f"{self._unexpected()} expecting null or trilean value (unknown, true, false)")
        dot = self.s.find(".", self.pos)
        if dot == -1:
            self.pos = len(self.s)
            self._fail("unexpected end of input expecting delimiter (.)")
        op = self.s[self.pos:dot]
        bare_op = op.split("(", 1)[0]
        if bare_op not in _PGRST_OPERATORS and bare_op not in _FTS_OPERATORS:
            self._fail(f"unknown single value operator {op}", dot + 1)
        if op not in _SUPPORTED_SINGLE:
            self._fail(f"operator {op} is not supported by this stand-in", dot + 1)
        self.pos = dot + 1
        return _Filter.of(col, op, self._single_value(), negate)

    def _tree(self):
        start = self.pos
        try:
            return self._leaf()
        except _LogicFail:
            self.pos = start
        negate = False
        if self._starts("not."):
            negate = True
            self.pos += 4
        if self._starts("and"):
            op = "and"
        elif self._starts("or"):
            op = "or"
        else:
            self._fail(f"{self._unexpected()} expecting field name (* or [a..z0..9_$]), negation operator (not) or "
                       "logic operator (and, or)")
        self.pos += len(op)
        self._ws()
        self._char("(")
        self._ws()
        children = [self._tree()]
        while True:
            self._ws()
            if self._peek() != ",":
                break
            self.pos += 1
            self._ws()
            children.append(self._tree())
        self._ws()
        self._char(")")
        self._ws()
        return _LogicNode(op, negate, children)


def _is_logic_key(key):
    return key.rsplit(".", 1)[-1] in ("and", "or")


_FAST_TESTS = {"eq": lambda c: c == 0, "neq": lambda c: c != 0, "gt": lambda c: c > 0, "gte": lambda c: c >= 0,
               "lt": lambda c: c < 0, "lte": lambda c: c <= 0}


def _predicate(f):
    """f.matches, specialised for the usual case (a comparison, a str or int row value); anything else goes to
    f.matches itself, so the answer is always the same."""
    if f.op not in _COMPARISONS:
        return f.matches
    col, lit, lit_int, negate, slow = f.col, f.value, f.lit_int, f.negate, f.matches
    if f.op in ("eq", "neq"):
        want = (f.op == "eq") != negate  # the answer when the values are equal

        if lit_int is None:
            def check(row):
                v = row.get(col)
                if type(v) is str:
                    return (v == lit) == want
                return slow(row)
        else:
            def check(row):
                v = row.get(col)
                t = type(v)
                if t is int:
                    return (v == lit_int) == want
                if t is str:
                    return ((int(v) == lit_int) if _INT_RE.match(v) else (v == lit)) == want
                return slow(row)
        return check
    test = _FAST_TESTS[f.op]

    def check(row):
        v = row.get(col)
        t = type(v)
        if t is str:
            if lit_int is not None and _INT_RE.match(v):
                a, b = int(v), lit_int
            else:
                a, b = v, lit
        elif t is int and lit_int is not None:
            a, b = v, lit_int
        else:
            return slow(row)
        return test((a > b) - (a < b)) != negate
    return check


def _all_match(filters, trees=()):
    """A predicate row -> bool: every filter matches and every logic tree is true (same order and short-circuit as
    all(); a logic tree that is NULL excludes the row, as in a WHERE clause)."""
    checks = [_predicate(f) for f in filters] + [(lambda row, t=t: t.truth(row) is True) for t in trees]
    if not checks:
        return lambda row: True
    if len(checks) == 1:
        return checks[0]

    def every(row):
        for check in checks:
            if not check(row):
                return False
        return True
    return every


class FakePostgrest(HTTPStandin):
    """Supabase REST (PostgREST) stand-in serving `/rest/v1/<table>` from an in-memory table.

    Thread-safe; rows kept in a dict by id plus a sorted key list, so keyset pages and PATCH by id are cheap.
    """

    name = "postgrest"

    def __init__(self, table="sites", service_key="test-service-key", columns=DEFAULT_COLUMNS, max_rows=1000):
        super().__init__()
        self.table = table
        self.service_key = service_key
        self.columns = list(columns)  # tests may remove one to simulate a missing column
        self.max_rows = max_rows      # hosted Supabase caps one answer at 1,000 rows
        self.auto_updated_at = True   # set updated_at on PATCH when the body does not (like a moddatetime trigger)
        self.strict_logic = True      # refuse logic trees PostgREST would silently read otherwise (see _LogicParser)
        self.patches = []             # (id, body_dict) for every row a PATCH changed, in order
        self.on_patch_applied = None  # callback(row_copy) after a PATCH applied, before answering
        self._rows = {}               # id_key -> row dict
        self._keys = []               # sorted id keys
        self._next_id = 1

    # -- direct access for tests --------------------------------------------------------------------------------
    def insert(self, row):
        """Insert a row (dict); `id` auto-increments when missing. Returns a copy of the stored row."""
        with self.lock:
            return dict(self._insert_locked(dict(row)))

    def _insert_locked(self, row):
        if row.get("id") is None:
            row["id"] = self._next_id
        rid = row["id"]
        if _is_int(rid):
            rid = row["id"] = int(rid)
            self._next_id = max(self._next_id, rid + 1)
        key = _id_key(rid)
        if key in self._rows:
            raise ValueError(f"duplicate id {rid!r}")
        for col in DEFAULT_COLUMNS:
            row.setdefault(col, None)
        if row.get("status_hosting") is None:
            row["status_hosting"] = "pending"
        if row.get("updated_at") is None:
            row["updated_at"] = _now_iso()
        self._rows[key] = row
        bisect.insort(self._keys, key)
        return row

    def rows(self):
        """A copy of every row, sorted by id."""
        with self.lock:
            return [dict(self._rows[k]) for k in self._keys]

    def get(self, row_id):
        with self.lock:
            row = self._rows.get(_id_key(row_id))
            return dict(row) if row is not None else None

    def update_row(self, row_id, **changes):
        """Change a row directly (no HTTP, no checks), e.g. to simulate another writer."""
        with self.lock:
            self._rows[_id_key(row_id)].update(changes)

    def delete(self, row_id):
        with self.lock:
            key = _id_key(row_id)
            if self._rows.pop(key, None) is not None:
                self._keys.pop(bisect.bisect_left(self._keys, key))

    # -- HTTP -----------------------------------------------------------------------------------------------------
    def handle(self, request):
        path = request["path"]
        if not path.startswith("/rest/v1/"):
            return json_response(404, {"message": "no Route matched with those values"})
        h = request["headers"]
        if h.get("apikey") != self.service_key or h.get("authorization") != f"Bearer {self.service_key}":
            return json_response(401, {"message": "Invalid API key",
                                       "hint": "Double check your Supabase `anon` or `service_role` API key."})
        name = path[len("/rest/v1/"):]
        try:
            if name != self.table:
                raise PgError(404, "PGRST205",
                              f"Could not find the table 'public.{name}' in the schema cache")
            method = request["method"]
            if method in ("GET", "HEAD"):
                return self._get(request)
            if method == "PATCH":
                return self._patch(request)
            if method == "POST":
                return self._post(request)
            return json_response(405, {"code": "PGRST117", "details": None, "hint": None,
                                       "message": f"Unsupported HTTP method: {method}"})
        except PgError as err:
            return json_response(err.status, err.body)

    def _missing_column(self, col):
        return PgError(400, "42703", f"column {self.table}.{col} does not exist")

    def _parse_select(self, query):
        raw = query.get("select", ["*"])[-1].strip()
        if raw in ("", "*"):
            return None
        out = []
        for item in raw.split(","):
            item = item.strip()
            col_part = item.split("::")[0]
            alias, _, col = col_part.rpartition(":")
            col = col.strip()
            if col == "*":
                out.extend((c, c) for c in self.columns)
                continue
            if col not in self.columns:
                raise self._missing_column(col)
            out.append((alias.strip() or col, col))
        return out

    def _parse_filters(self, query):
        """(filters, logic trees) of a query; every one must hold for a row to match."""
        filters, trees = [], []
        for col, values in query.items():
            if col in RESERVED_PARAMS:
                continue
            if _is_logic_key(col):
                if col not in ("and", "or", "not.and", "not.or"):
                    raise PgError(400, "PGRST100", f'"failed to parse logic path ({col})"',
                                  "logic trees on embedded resources are not supported by this stand-in")
                for raw in values:
                    tree = _LogicParser(col, raw, self.strict_logic).parse()
                    for leaf in tree.leaves():
                        if leaf.col not in self.columns:
                            raise self._missing_column(leaf.col)
                    trees.append(tree)
                continue
            for raw in values:
                f = _Filter(col, raw)
                if col not in self.columns:
                    raise self._missing_column(col)
                filters.append(f)
        return filters, trees

    def _parse_order(self, query):
        raw = query.get("order", [""])[-1].strip()
        if not raw:
            return [("id", False, None)]
        order = []
        for term in raw.split(","):
            parts = term.strip().split(".")
            col, desc, nulls = parts[0], False, None
            for p in parts[1:]:
                if p == "desc":
                    desc = True
                elif p in ("nullsfirst", "nullslast"):
                    nulls = p
            if col not in self.columns:
                raise self._missing_column(col)
            order.append((col, desc, nulls))
        return order

    @staticmethod
    def _int_param(query, name):
        if name not in query:
            return None
        raw = query[name][-1]
        if not _INT_RE.match(raw or "x") or int(raw) < 0:
            raise PgError(400, "PGRST100", f'"failed to parse {name} ({raw})"')
        return int(raw)

    def _project(self, row, select):
        if select is None:
            return {c: row.get(c) for c in self.columns}
        return {alias: row.get(col) for alias, col in select}

    def _candidate_keys(self, filters):
        """Keys worth scanning, in id order: narrowed by an `id=eq.`, `id=gt.` or `id=gte.` filter. An iterator
        over the sorted key list from the first candidate on (no copy of the rest of the table)."""
        for f in filters:
            if f.col == "id" and not f.negate and f.op == "eq":
                key = _id_key(f.value)
                return [key] if key in self._rows else []
        start = 0
        for f in filters:
            if f.col == "id" and not f.negate and f.op in ("gt", "gte"):
                key = _id_key(f.value)
                pos = (bisect.bisect_right if f.op == "gt" else bisect.bisect_left)(self._keys, key)
                start = max(start, pos)
        keys = self._keys
        return map(keys.__getitem__, range(start, len(keys))) if start else iter(keys)

    def _matching(self, filters, trees, order, limit=None, offset=0, need_total=False):
        """(selected rows, total or None). Stops early when ordered by id and no total is needed."""
        by_id_asc = order == [("id", False, None)] or order == [("id", False, "nullslast")]
        keys = self._candidate_keys(filters)
        match = _all_match(filters, trees)
        rows_by_key = self._rows
        if by_id_asc and not need_total:
            stop = None if limit is None else offset + limit
            out = []
            if stop == 0:
                return out, None
            for k in keys:
                row = rows_by_key[k]
                if match(row):
                    out.append(row)
                    if stop is not None and len(out) >= stop:
                        break
            return out[offset:], None
        rows = [row for row in map(rows_by_key.__getitem__, keys) if match(row)]
        for col, desc, nulls in reversed(order):
            nulls_first = (nulls == "nullsfirst") if nulls else desc  # PostgreSQL: NULLS LAST for ASC
            non_null = [r for r in rows if r.get(col) is not None]
            null = [r for r in rows if r.get(col) is None]
            non_null.sort(key=lambda r: _id_key(r[col]) if _is_int(r[col]) else (1, 0, _text(r[col])),
                          reverse=desc)
            rows = null + non_null if nulls_first else non_null + null
        total = len(rows)
        end = None if limit is None else offset + limit
        return rows[offset:end], total

    def _get(self, request):
        q = request["query"]
        select = self._parse_select(q)
        filters, trees = self._parse_filters(q)
        order = self._parse_order(q)
        limit = self._int_param(q, "limit")
        offset = self._int_param(q, "offset") or 0
        if self.max_rows is not None:
            limit = self.max_rows if limit is None else min(limit, self.max_rows)
        prefer = request["headers"].get("prefer", "")
        need_total = "count=exact" in prefer
        with self.lock:
            rows, total = self._matching(filters, trees, order, limit, offset, need_total)
            data = [self._project(r, select) for r in rows]
        total_s = str(total) if need_total else "*"
        crange = f"{offset}-{offset + len(data) - 1}/{total_s}" if data else f"*/{total_s}"
        return self._answer(request, 200, data, {"Content-Range": crange})

    def _answer(self, request, status, data, headers):
        accept = request["headers"].get("accept", "")
        if "vnd.pgrst.object" in accept:
            if len(data) != 1:
                return json_response(406, {"code": "PGRST116",
                                           "details": f"The result contains {len(data)} rows",
                                           "hint": None,
                                           "message": "JSON object requested, multiple (or no) rows returned"})
            data = data[0]
        return json_response(status, data, headers)

    def _parse_body(self, request):
        try:
            body = json.loads(request["body"]) if request["body"].strip() else None
        except ValueError as exc:
            raise PgError(400, "PGRST102", "Empty or invalid json", str(exc))
        return body

    def _check_body(self, body):
        """Validate a row body (dict): columns exist, types, the CHECK constraint. Returns a normalised copy."""
        if not isinstance(body, dict):
            raise PgError(400, "PGRST102", "Empty or invalid json")
        clean = {}
        for col, value in body.items():
            if col not in self.columns:
                raise PgError(400, "PGRST204", f"Could not find the '{col}' column of '{self.table}' in the schema cache")
            if col in INTEGER_COLUMNS and value is not None:
                if isinstance(value, bool) or not (_is_int(value) or (isinstance(value, float) and value.is_integer())):
                    raise PgError(400, "22P02", f'invalid input syntax for type {INTEGER_COLUMNS[col]}: "{value}"')
                value = int(value)
            clean[col] = value
        return clean

    def _check_constraint(self, row):
        if row.get("status_hosting") not in STATUS_HOSTING_VALUES:
            raise PgError(400, "23514", f'new row for relation "{self.table}" violates check constraint '
                                        f'"{self.table}_status_hosting_check"')

    def _patch(self, request):
        q = request["query"]
        body = self._check_body(self._parse_body(request))
        filters, trees = self._parse_filters(q)
        select = self._parse_select(q)
        if not filters and not trees:
            raise PgError(400, "21000", "UPDATE requires a WHERE clause")
        representation = "return=representation" in request["headers"].get("prefer", "")
        changed = []
        with self.lock:  # match and change in one critical section: a conditional PATCH is atomic, as an UPDATE is
            match = _all_match(filters, trees)
            targets = [row for row in map(self._rows.__getitem__, self._candidate_keys(filters)) if match(row)]
            for row in targets:  # all or nothing, like one UPDATE statement
                self._check_constraint({**row, **body})
            for row in targets:
                row.update(body)
                if self.auto_updated_at and "updated_at" in self.columns and "updated_at" not in body:
                    row["updated_at"] = _now_iso()
                self.patches.append((row["id"], dict(body)))
                changed.append(dict(row))
            data = [self._project(r, select) for r in changed] if representation else None
        callback = self.on_patch_applied
        if callback is not None:
            for row in changed:
                callback(row)
        crange = f"0-{len(changed) - 1}/*" if changed else "*/*"
        if representation:
            return self._answer(request, 200, data, {"Content-Range": crange})
        return Response(204, b"", {"Content-Range": crange})

    def _post(self, request):
        body = self._parse_body(request)
        items = body if isinstance(body, list) else [body]
        clean = [self._check_body(item) for item in items]
        select = self._parse_select(request["query"])
        with self.lock:
            for item in clean:
                self._check_constraint({"status_hosting": "pending", **item})
                if item.get("id") is not None and _id_key(item["id"]) in self._rows:
                    raise PgError(409, "23505", f'duplicate key value violates unique constraint "{self.table}_pkey"',
                                  f"Key (id)=({item['id']}) already exists.")
            inserted = [dict(self._insert_locked(dict(item))) for item in clean]
            data = [self._project(r, select) for r in inserted]
        if "return=representation" in request["headers"].get("prefer", ""):
            return self._answer(request, 201, data, {})
        return Response(201, b"", {})
