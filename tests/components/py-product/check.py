"""Checks the Python product outside the host, with the PyPI `wasmtime` package.

Not part of the component (build.sh bundles app.py only). Run it with the
venv's Python after build.sh (`pip install wasmtime` into target/py-venv):

    target/py-venv/bin/python tests/components/py-product/check.py world [--full] [WASM]
    target/py-venv/bin/python tests/components/py-product/check.py compare [WASM]

`world` prints a component's imports and exports with their function types.
`compare` runs one script of catalog calls and order events against the Rust
product 1.1 (product_v2.wasm) and the Python one (py_product.wasm), each on a
fresh SQLite file behind a fake `moat:platform/store` (a transaction per call,
committed on ok, rolled back on err or trap, as the host does), and compares
every result, every published event and the databases they leave; then it
hands databases back and forth between the Rust builds (1.0 and 1.1) and the
Python one to check the migrations.
"""

import os
import sqlite3
import sys
import time

import wasmtime
from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import (
    Component, ComponentInstanceType, EnumType, FuncType, ResourceType, ListType, Linker, OptionType, Record, RecordType, ResultType, TupleType, Variant,
    VariantType,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GUEST = os.path.join(ROOT, "target", "wasm32-wasip2", "guest")
CACHE = os.path.join(ROOT, "target", "py-venv", "cwasm")
MIB = 1 << 20

ENGINE = Engine()


def load(path: str) -> Component:
    """Compiles a component, caching the compiled form beside the venv."""
    os.makedirs(CACHE, exist_ok=True)
    st = os.stat(path)
    key = os.path.join(CACHE, "%s-%d-%d.cwasm" % (os.path.basename(path), st.st_size, st.st_mtime_ns))
    if os.path.exists(key):
        return Component.deserialize_file(ENGINE, key)
    comp = Component.from_file(ENGINE, path)
    with open(key, "wb") as f:
        f.write(comp.serialize())
    return comp


# --- world -------------------------------------------------------------------


def describe(ty) -> str:
    if isinstance(ty, RecordType):
        return "record{%s}" % ", ".join("%s: %s" % (n, describe(t)) for n, t in ty.fields)
    if isinstance(ty, VariantType):
        return "variant{%s}" % ", ".join(n if t is None else "%s(%s)" % (n, describe(t)) for n, t in ty.cases)
    if isinstance(ty, ResultType):
        ok = "_" if ty.ok is None else describe(ty.ok)
        err = "_" if ty.err is None else describe(ty.err)
        return "result<%s, %s>" % (ok, err)
    if isinstance(ty, OptionType):
        return "option<%s>" % describe(ty.payload)
    if isinstance(ty, ListType):
        return "list<%s>" % describe(ty.element)
    if isinstance(ty, TupleType):
        return "tuple<%s>" % ", ".join(describe(t) for t in ty.elements)
    if isinstance(ty, EnumType):
        return "enum{%s}" % ", ".join(ty.names)
    return type(ty).__name__.lower()


def signature(f) -> str:
    params = ", ".join("%s: %s" % (n, describe(t)) for n, t in f.params)
    return "func(%s)%s" % (params, "" if f.result is None else " -> " + describe(f.result))


def world(path: str, full: bool = False) -> None:
    """Prints imports and exports; WASI interfaces by name only unless `full`."""
    comp = load(path)
    ty = comp.type

    def show(kind: str, items) -> None:
        for name, ext in sorted(items.items()):
            item = ext.ty
            if isinstance(item, FuncType):
                print("%s %s: %s" % (kind, name, signature(item)))
                continue
            if not isinstance(item, ComponentInstanceType):
                print("%s %s (%s)" % (kind, name, type(item).__name__))
                continue
            members = sorted(item.exports(ENGINE).items())
            if name.startswith("wasi:") and not full:
                funcs = [n for n, e in members if isinstance(e.ty, FuncType)]
                print("%s %s (%d functions)" % (kind, name, len(funcs)))
                continue
            print("%s %s" % (kind, name))
            for fname, fext in members:
                f = fext.ty
                if isinstance(f, FuncType):
                    print("    %s: %s" % (fname, signature(f)))
                else:
                    print("    %s: type %s" % (fname, describe(f) if not isinstance(f, ResourceType) else "resource"))

    show("import", ty.imports(ENGINE))
    show("export", ty.exports(ENGINE))


# --- a host, in miniature ----------------------------------------------------


def plain(v):
    """A value from wasmtime as plain Python, comparable across components."""
    if isinstance(v, Variant):
        return (v.tag, plain(v.payload))
    if isinstance(v, Record):
        return {k: plain(x) for k, x in sorted(vars(v).items())}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def record(**fields) -> Record:
    """A WIT record: wasmtime names its fields as WIT does (`product-id`)."""
    r = Record()
    for k, v in fields.items():
        setattr(r, k.replace("_", "-"), v)
    return r


def product(pid, name, price, stock) -> Record:
    return record(product_id=pid, name=name, price=price, stock=stock)


def line(pid, qty) -> Record:
    return record(product_id=pid, quantity=qty)


class Trapped(Exception):
    pass


class Host:
    """One component on one database: the store, the log and publish, a unit
    of work per call."""

    def __init__(self, wasm: str, db_path: str, memory_mib: int = 64):
        self.name = os.path.basename(wasm)
        self.db_path = db_path
        self.db = sqlite3.connect(db_path, isolation_level=None)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.events = []  # committed
        self.pending = []  # this unit of work
        self.logs = []
        self.store_calls = 0
        self.memory_mib = memory_mib
        self.comp = load(wasm)
        linker = Linker(ENGINE)
        linker.add_wasip2()
        with linker.root() as root:
            with root.add_instance("moat:platform/store@0.1.0") as s:
                s.add_func("execute", self._execute)
                s.add_func("query", self._query)
            with root.add_instance("moat:platform/log@0.1.0") as lg:
                lg.add_func("log", lambda store, level, msg: self.logs.append((level, msg)))
            for v in ("1.0.0", "1.1.0"):
                with root.add_instance("shop:product/publish@%s" % v) as p:
                    p.add_func("publish", lambda store, ev: self.pending.append(plain(ev)))
        self.linker = linker
        self.instance = None

    # moat:platform/store
    @staticmethod
    def _error(e: sqlite3.Error) -> Variant:
        msg = str(e)
        if isinstance(e, sqlite3.IntegrityError):
            return Variant("constraint", msg)
        if "syntax error" in msg or msg.startswith("no such") or "has no column" in msg:
            return Variant("invalid", msg)
        return Variant("other", msg)

    # `store.value` has no two cases of one Python type, so wasmtime passes it
    # untagged: None, int, float, str or bytes.
    @staticmethod
    def _param(v):
        return v

    def _execute(self, store, sql, params):
        self.store_calls += 1
        try:
            cur = self.db.execute(sql, [self._param(p) for p in params])
        except sqlite3.Error as e:
            return self._error(e)
        return max(cur.rowcount, 0)

    def _query(self, store, sql, params):
        self.store_calls += 1
        try:
            rows = self.db.execute(sql, [self._param(p) for p in params]).fetchall()
        except sqlite3.Error as e:
            return self._error(e)

        return [list(r) for r in rows]

    # instances and calls
    def start(self) -> float:
        """Instantiates (as the host does at load and after a trap); returns seconds."""
        self.store = Store(ENGINE)
        self.store.set_limits(memory_size=self.memory_mib * MIB, table_elements=1 << 20, instances=64, tables=64,
                              memories=4)
        wasi = WasiConfig()  # no preopens, no env, no args
        self.stderr_path = self.db_path + ".stderr"
        wasi.stderr_file = self.stderr_path
        self.store.set_wasi(wasi)
        t = time.perf_counter()
        self.db.execute("BEGIN")
        try:
            self.instance = self.linker.instantiate(self.store, self.comp)
        except Exception:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return time.perf_counter() - t

    def func(self, iface: str, name: str):
        i = self.instance.get_export_index(self.store, iface)
        return self.instance.get_func(self.store, self.instance.get_export_index(self.store, name, i))

    def call(self, iface: str, name: str, *args, is_err=lambda r: False):
        """One unit of work: committed unless the result is an err or the call traps."""
        if self.instance is None:
            self.start()
        f = self.func(iface, name)
        self.pending = []
        self.db.execute("BEGIN")
        try:
            r = f(self.store, *args)
            f.post_return(self.store)
        except Exception as e:  # a trap: roll back, and start a fresh instance next time
            self.db.execute("ROLLBACK")
            self.pending = []
            self.instance = None
            raise Trapped(self.why(e)) from None
        if is_err(r):
            self.db.execute("ROLLBACK")
            self.pending = []
        else:
            self.db.execute("COMMIT")
            self.events.extend(self.pending)
        return r

    def why(self, e: Exception) -> str:
        """A trap in one line: the guest's own message (its stderr) if it left one."""
        lines = [ln.strip() for ln in self.stderr().splitlines() if ln.strip()]
        with open(self.stderr_path, "w"):
            pass
        # Rust: "panicked at src/..: MESSAGE"; Python: a traceback ending in "Trap: MESSAGE".
        for ln in reversed(lines):
            if ln.startswith(("Trap:", "app.Trap:")) or "panicked at" in ln and "runtime/src" not in ln:
                return ln
        return lines[-1] if lines else str(e).splitlines()[0]

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def dump(self):
        """The database as comparable data: its schema and every row."""
        schema = self.db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        rows = {}
        for (t,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            rows[t] = sorted(self.db.execute("SELECT * FROM %s" % t).fetchall(), key=repr)
        return schema, rows


SCHEMA = "moat:platform/schema@0.1.0"
CATALOG = "shop:product/catalog@1.1.0"
CATALOG_1_0 = "shop:product/catalog@1.0.0"
ORDERS = "shop:order/handler@1.0.0"


def migrate(h: Host, found):
    arg = None if found is None else record(major=found[0], minor=found[1])
    r = h.call(SCHEMA, "migrate", arg, is_err=lambda r: isinstance(r, str))
    return plain(r)


def catalog_err(r) -> bool:
    return isinstance(r, Variant)


def handler_err(r) -> bool:
    return isinstance(r, str)


# The script: (interface, function, args, is-err).
def script():
    C, O = CATALOG, ORDERS
    e = catalog_err
    big = 1 << 63
    return [
        (C, "create-product", [product("PROD001", "Wireless Mouse", 2599, 150)], e),
        (C, "create-product", [product("PROD005", "USB-C Hub", 4999, 40)], e),
        (C, "create-product", [product("PROD001", "Another", 1, 1)], e),
        (C, "create-product", [product("  \t", "Blank id", 1, 1)], e),
        (C, "create-product", [product("PROD009", "\u3000\u00a0", 1, 1)], e),
        (C, "create-product", [product("PROD009", "x", big, 1)], e),
        (C, "create-product", [product("PROD010", "\x1c", 1, 1)], e),  # not blank for Rust's trim
        (C, "create-product", [product("PROD007", "100% Cotton_Shirt \\ Wireless", 1999, 3)], e),
        (C, "create-product", [product("PROD008", "ÉCLAIR Σ mouse pad", 599, 4294967295)], e),
        (C, "get-product", ["PROD001"], None),
        (C, "get-product", ["NOPE"], None),
        (C, "list-products", [], None),
        (C, "search-products", ["mouse"], None),
        (C, "search-products", ["MOUSE"], None),
        (C, "search-products", ["%"], None),
        (C, "search-products", ["_"], None),
        (C, "search-products", ["\\"], None),
        (C, "search-products", [""], None),
        (C, "search-products", ["usb-c"], None),
        (C, "search-products", ["éclair"], None),
        (C, "search-products", ["zzz"], None),
        (C, "set-price", ["PROD001", 2499], e),
        (C, "set-price", ["PROD001", 2499], e),
        (C, "set-price", ["NOPE", 1], e),
        (C, "set-price", ["PROD001", big], e),
        (C, "set-price", ["NOPE", big], e),
        (C, "rename-product", ["PROD005", "USB-C Hub Pro"], e),
        (C, "rename-product", ["PROD005", "USB-C Hub Pro"], e),
        (C, "rename-product", ["PROD005", " "], e),
        (C, "rename-product", ["NOPE", " "], e),
        (C, "rename-product", ["NOPE", "x"], e),
        (C, "adjust-stock", ["PROD005", 10], e),
        (C, "adjust-stock", ["PROD005", -1000], e),
        (C, "adjust-stock", ["PROD005", 0], e),
        (C, "adjust-stock", ["PROD008", 1], e),
        (C, "adjust-stock", ["PROD008", -2147483648], e),
        (C, "adjust-stock", ["NOPE", 1], e),
        (O, "handle", [Variant("placed", record(order_id="ORD0", customer_id="C", items=[], status="pending", total=0))], handler_err),
        (O, "handle", [Variant("submitted", record(order_id="ORD1", customer_id="CUST987",
                                                   lines=[line("PROD001", 2), line("PROD005", 1), line("PROD001", 3)]))], handler_err),
        (O, "handle", [Variant("submitted", record(order_id="ORD1", customer_id="CUST987", lines=[line("PROD001", 99)]))], handler_err),
        (O, "handle", [Variant("submitted", record(order_id="ORD2", customer_id="CUST987",
                                                   lines=[line("PROD005", 1000), line("GHOST", 1), line("PROD001", 1)]))], handler_err),
        (O, "handle", [Variant("submitted", record(order_id="ORD3", customer_id="CUST987", lines=[]))], handler_err),
        (O, "handle", [Variant("submitted", record(order_id="ORD4", customer_id="CUST987", lines=[line("PROD001", 0)]))], handler_err),
        (C, "get-product", ["PROD001"], None),
        (O, "handle", [Variant("cancelled", "ORD1")], handler_err),
        (O, "handle", [Variant("cancelled", "ORD1")], handler_err),
        (O, "handle", [Variant("cancelled", "ORD2")], handler_err),
        (O, "handle", [Variant("cancelled", "ORD404")], handler_err),
        (O, "handle", [Variant("submitted", record(order_id="ORD5", customer_id="CUST1",
                                                   lines=[line("PROD008", 10), line("PROD005", 50)]))], handler_err),
        (C, "list-products", [], None),
    ]


def run_script(h: Host):
    out = []
    for iface, fn, args, is_err in script():
        before = len(h.events)
        try:
            r = ("returned", plain(h.call(iface, fn, *args, is_err=is_err or (lambda r: False))))
        except Trapped as t:
            r = ("trapped", t.args[0])
        out.append((fn, args, r, h.events[before:]))
    return out


def fmt_args(args):
    return ", ".join(repr(plain(a)) for a in args)


def compare(py: str) -> int:
    tmp = os.path.join(ROOT, "target", "tmp", "py-product-check")
    os.makedirs(tmp, exist_ok=True)
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    rust_v2 = os.path.join(GUEST, "product_v2.wasm")
    rust_v1 = os.path.join(GUEST, "product.wasm")
    failures = 0

    def check(what, ok, detail=""):
        nonlocal failures
        print("%s  %s%s" % ("ok  " if ok else "FAIL", what, ("  " + detail) if detail else ""))
        if not ok:
            failures += 1

    # 1. The same script on both builds, each on a new database.
    hosts = {}
    results = {}
    for name, wasm in (("rust", rust_v2), ("python", py)):
        h = Host(wasm, os.path.join(tmp, "%s.db" % name))
        t = h.start()
        m = migrate(h, None)
        print("%-6s instantiate %.1f ms, migrate(none) -> %r" % (name, t * 1000, m))
        t = time.perf_counter()
        results[name] = (m, run_script(h))
        print("%-6s %d calls in %.1f ms (%d store calls)" % (name, len(script()), (time.perf_counter() - t) * 1000,
                                                            h.store_calls))
        hosts[name] = h
    (rm, rs), (pm, ps) = results["rust"], results["python"]
    check("migrate(none) gives the same version", rm == pm, repr(pm))
    for (fn, args, rr, rev), (_, _, pr, pev) in zip(rs, ps):
        # Only the reservation of a zero-quantity line traps (a CHECK, as in Rust).
        expect_trap = fn == "handle" and "ORD4" in repr(plain(args))
        same_result = rr == pr or (rr[0] == pr[0] == "trapped" and expect_trap)
        label = "%s(%s)" % (fn, fmt_args(args))
        if len(label) > 90:
            label = label[:87] + "..."
        detail = "-> %s %r" % (pr[0], pr[1]) if pr[0] == "returned" else "-> trapped (rust: %s | python: %s)" % (
            rr[1], pr[1])
        check(label, same_result and rev == pev, detail + ("" if not pev else "  events %r" % (pev,)))
        if not (same_result and rev == pev):
            print("      rust:   %r events %r" % (rr, rev))
            print("      python: %r events %r" % (pr, pev))
    check("all published events are the same, in order", hosts["rust"].events == hosts["python"].events,
          "%d events" % len(hosts["python"].events))
    check("the databases are the same (schema and rows)", hosts["rust"].dump() == hosts["python"].dump())

    # 2. A database the Rust product 1.0 created, upgraded by Python, and the
    # same by the Rust product 1.1.
    dumps = {}
    for name, wasm in (("rust", rust_v2), ("python", py)):
        path = os.path.join(tmp, "from-1.0-%s.db" % name)
        v1 = Host(rust_v1, path)
        check("rust 1.0 creates schema 1.0", migrate(v1, None) == {"major": 1, "minor": 0})
        v1.call(CATALOG_1_0, "create-product", product("PROD001", "Wireless Mouse", 2599, 150), is_err=catalog_err)
        v1.call(CATALOG_1_0, "create-product", product("PROD002", "Mouse Mat", 999, 5), is_err=catalog_err)
        v1.call(ORDERS, "handle", Variant("submitted", record(order_id="ORD1", customer_id="C", lines=[line("PROD001", 2)])),
                is_err=handler_err)
        v1.db.close()
        h = Host(wasm, path)
        m = migrate(h, (1, 0))
        check("%s: migrate(1.0) on rust 1.0's database -> 1.1" % name, m == {"major": 1, "minor": 1}, repr(m))
        found = plain(h.call(CATALOG, "search-products", "MOUSE"))
        check("%s: search-products(\"MOUSE\") on it" % name, [p["product-id"] for p in found] == ["PROD002", "PROD001"],
              repr([p["name"] for p in found]))
        h.call(ORDERS, "handle", Variant("cancelled", "ORD1"), is_err=handler_err)
        check("%s: cancelling rust 1.0's reservation releases it" % name,
              plain(h.call(CATALOG, "get-product", "PROD001"))["stock"] == 150, repr(h.events))
        dumps[name] = (h.dump(), h.events)
    check("rust 1.1 and python leave the upgraded database the same", dumps["rust"] == dumps["python"])

    # 3. A database rust 1.1 created: python serves it as it is.
    path = os.path.join(tmp, "from-1.1.db")
    r = Host(rust_v2, path)
    migrate(r, None)
    r.call(CATALOG, "create-product", product("PROD001", "Wireless Mouse", 2599, 150), is_err=catalog_err)
    before = r.dump()
    r.db.close()
    h = Host(py, path)
    m = migrate(h, (1, 1))
    check("python: migrate(1.1) on rust 1.1's database -> 1.1, nothing changed", m == {"major": 1, "minor": 1}
          and h.dump() == before, repr(m))
    p = plain(h.call(CATALOG, "set-price", "PROD001", 2399, is_err=catalog_err))
    check("python: set-price on it publishes price-updated", h.events == [
        ("price-updated", {"new-price": 2399, "old-price": 2599, "product-id": "PROD001"})], repr(h.events))
    h.db.close()

    # 4. Back again: what python wrote, the Rust builds serve (a swap back, a rollback).
    for name, wasm, iface, found in (("rust 1.0", rust_v1, CATALOG_1_0, (1, 1)), ("rust 1.1", rust_v2, CATALOG, (1, 1))):
        back = Host(wasm, path)
        m = migrate(back, found)
        got = plain(back.call(iface, "get-product", "PROD001"))
        check("%s: serves python's database (migrate(1.1) -> %r)" % (name, m), m == {"major": 1, "minor": 1}
              and got == {"name": "Wireless Mouse", "price": 2399, "product-id": "PROD001", "stock": 150}, repr(got))
        back.db.close()

    # 5. Versions it must pass through or refuse, as rust 1.1 does.
    for found in ((1, 5), (2, 0), (0, 9)):
        answers = []
        for wasm in (rust_v2, py):
            h = Host(wasm, os.path.join(tmp, "v.db"))
            answers.append(migrate(h, found))
            h.db.close()
            os.remove(os.path.join(tmp, "v.db"))
        check("migrate(%d.%d) -> %r" % (found + (answers[1],)), answers[0] == answers[1], repr(answers[0]))

    # 6. A failing upgrade returns err with rust's message (a products table without name).
    answers = []
    for wasm in (rust_v2, py):
        p = os.path.join(tmp, "bad.db")
        db = sqlite3.connect(p)
        db.execute("CREATE TABLE products (product_id TEXT PRIMARY KEY)")
        db.commit()
        db.close()
        h = Host(wasm, p)
        answers.append((migrate(h, (1, 0)), h.dump()))
        h.db.close()
        os.remove(p)
    check("a failing upgrade from 1.0 is the same err, nothing written", answers[0] == answers[1], repr(answers[1][0]))
    if answers[0] != answers[1]:
        print("      rust:   %r\n      python: %r" % tuple(answers))

    # 7. Memory: what the host's default limit (64 MiB) leaves, roughly.
    for mib in (64, 32, 16, 8, 4, 1):
        h = Host(py, os.path.join(tmp, "mem.db"), memory_mib=mib)
        try:
            h.start()
            migrate(h, None)
            h.call(CATALOG, "create-product", product("P", "n", 1, 1), is_err=catalog_err)
            print("      memory limit %d MiB: instantiates and serves" % mib)
        except Exception as e:
            print("      memory limit %d MiB: fails (%s)" % (mib, str(e).splitlines()[0][:100]))
        h.db.close()
        os.remove(os.path.join(tmp, "mem.db"))

    print("%d failure(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "compare"
    if cmd == "world":
        rest = [a for a in sys.argv[2:] if a != "--full"]
        world(rest[0] if rest else os.path.join(GUEST, "py_product.wasm"), "--full" in sys.argv)
    elif cmd == "compare":
        sys.exit(compare(sys.argv[2] if len(sys.argv) > 2 else os.path.join(GUEST, "py_product.wasm")))
    else:
        sys.exit(__doc__)
