"""The product service, version 1.1, in Python (componentize-py).

A line-for-line port of the Rust product 1.1 (`components/product-v2/src`,
over `components/product/src/{products,stock}.rs`): the same tables and
schema versions, the same SQL, the same results, errors and events, so that
it can be swapped in for the Rust build on the same database and back.

Failures the Rust code answers with a panic (a store error the catalog has no
case for, a row of the wrong shape) raise `Trap` here: componentize-py turns
an exception that is not `Err` into a trap, and the host rolls the unit of
work back, as for a Rust panic.

Nothing runs at import time but definitions: componentize-py runs top-level
code at build time, where there is no host to call.
"""

from typing import List, Optional

import wit_world
from componentize_py_types import Err
from wit_world.exports import catalog as cat
from wit_world.exports.schema import SchemaVersion
from wit_world.imports import publish as pub
from wit_world.imports import shop_order_events as oev
from wit_world.imports import shop_product_events as pev
from wit_world.imports import store
from wit_world.imports.shop_product_types import Product

U32_MAX = (1 << 32) - 1
I64_MAX = (1 << 63) - 1


class Trap(Exception):
    """What a Rust `panic!` is: the call traps and its unit of work rolls back."""


# --- the store, as moat_sdk::sql has it -------------------------------------


def _debug_str(s: str) -> str:
    """Rust's `{:?}` of a string, near enough for messages."""
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\0":
            out.append("\\0")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


_ERROR_NAMES = {
    store.Error_Invalid: "Error::Invalid",
    store.Error_Constraint: "Error::Constraint",
    store.Error_Denied: "Error::Denied",
    store.Error_Limit: "Error::Limit",
    store.Error_Other: "Error::Other",
}


def _debug_error(e) -> str:
    """Rust's `{:?}` of a wit-bindgen `store::Error`: `Error::Constraint("UNIQUE constraint failed: ...")`."""
    return "%s(%s)" % (_ERROR_NAMES.get(type(e), type(e).__name__), _debug_str(str(e.value)))


def _debug_value(v) -> str:
    if isinstance(v, store.Value_Null):
        return "Value::Null"
    if isinstance(v, store.Value_Integer):
        return "Value::Integer(%d)" % v.value
    if isinstance(v, store.Value_Real):
        return "Value::Real(%r)" % v.value
    if isinstance(v, store.Value_Text):
        return "Value::Text(%s)" % _debug_str(v.value)
    return "Value::Blob(%r)" % list(v.value)


class SqlError(Exception):
    """A store error, carried up to where the Rust code decides what it means."""

    def __init__(self, error):
        super().__init__(_debug_error(error))
        self.error = error


def execute(sql: str, params: list) -> int:
    try:
        return store.execute(sql, params)
    except Err as e:
        raise SqlError(e.value) from None


def execute_batch(sql: str) -> None:
    for statement in sql.split(";"):
        statement = statement.strip()
        if statement:
            execute(statement, [])


def query(sql: str, params: list) -> list:
    try:
        return store.query(sql, params)
    except Err as e:
        raise SqlError(e.value) from None


def query_one(sql: str, params: list):
    rows = query(sql, params)
    return rows[0] if rows else None


def exec_or_trap(statement: str, params: list) -> None:
    try:
        execute(statement, params)
    except SqlError as e:
        raise Trap("%s: %s" % (statement, e)) from None


def text(s: str):
    return store.Value_Text(s)


def int_(n: int):
    return store.Value_Integer(n)


def col_text(row, i: int) -> str:
    v = row[i]
    if isinstance(v, store.Value_Text):
        return v.value
    raise Trap("column %d: expected text, found %s" % (i, _debug_value(v)))


def col_int(row, i: int) -> int:
    v = row[i]
    if isinstance(v, store.Value_Integer):
        return v.value
    raise Trap("column %d: expected integer, found %s" % (i, _debug_value(v)))


def col_uint(row, i: int) -> int:
    n = col_int(row, i)
    if n < 0:
        raise Trap("column %d: negative" % i)
    return n


# --- products (products.rs) -------------------------------------------------

TABLES_1_0 = """
    CREATE TABLE products (
        product_id TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        price      INTEGER NOT NULL CHECK (price >= 0),
        stock      INTEGER NOT NULL CHECK (stock >= 0)
    );
    CREATE TABLE reservations (
        order_id TEXT PRIMARY KEY,
        status   TEXT NOT NULL CHECK (status IN ('reserved', 'rejected', 'released'))
    );
    CREATE TABLE reservation_lines (
        order_id   TEXT NOT NULL REFERENCES reservations (order_id),
        product_id TEXT NOT NULL REFERENCES products (product_id),
        quantity   INTEGER NOT NULL CHECK (quantity > 0),
        PRIMARY KEY (order_id, product_id)
    )"""

# Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` strips;
# Python's `str.isspace` also counts U+001C..U+001F, so it is not used.
_RUST_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _blank(s: str) -> bool:
    return all(c in _RUST_WHITESPACE for c in s)


def storage(e: SqlError):
    """A store failure the catalog has no case for: trap, as Rust's `storage` panics."""
    return Trap("product database: %s" % e)


def to_product(row) -> Product:
    stock = col_int(row, 3)
    if not 0 <= stock <= U32_MAX:
        raise Trap("stock fits u32 by the table's CHECK")
    return Product(product_id=col_text(row, 0), name=col_text(row, 1), price=col_uint(row, 2), stock=stock)


def find(product_id: str) -> Optional[Product]:
    """Raises `SqlError`, as Rust's `find` returns it."""
    row = query_one("SELECT product_id, name, price, stock FROM products WHERE product_id = ?", [text(product_id)])
    return None if row is None else to_product(row)


def find_or_trap(product_id: str) -> Optional[Product]:
    try:
        return find(product_id)
    except SqlError as e:
        raise Trap("reading product %s: %s" % (product_id, e)) from None


def existing(product_id: str) -> Product:
    try:
        p = find(product_id)
    except SqlError as e:
        raise storage(e) from None
    if p is None:
        raise Err(cat.CatalogError_NotFound(product_id))
    return p


def update(product_id: str, statement: str, value) -> Product:
    """Sets one column of one product and returns the product as it now is."""
    try:
        changed = execute(statement, [value, text(product_id)])
    except SqlError as e:
        raise storage(e) from None
    if changed == 0:
        raise Err(cat.CatalogError_NotFound(product_id))
    return existing(product_id)


def check_id(product_id: str) -> None:
    if _blank(product_id):
        raise Err(cat.CatalogError_Invalid("product-id must not be empty"))


def check_name(name: str) -> None:
    if _blank(name):
        raise Err(cat.CatalogError_Invalid("name must not be empty"))


def money(amount: int) -> int:
    if amount > I64_MAX:
        raise Err(cat.CatalogError_Invalid("price %d is too large" % amount))
    return amount


def publish(event) -> None:
    pub.publish(event)


# --- stock (stock.rs) -------------------------------------------------------


def reservation_status(order_id: str) -> Optional[str]:
    try:
        row = query_one("SELECT status FROM reservations WHERE order_id = ?", [text(order_id)])
    except SqlError as e:
        raise Trap("reading the reservation of %s: %s" % (order_id, e)) from None
    return None if row is None else col_text(row, 0)


def move_stock(product_id: str, delta: int) -> int:
    """Adds `delta` to a product's stock and returns the new level."""
    exec_or_trap("UPDATE products SET stock = stock + ? WHERE product_id = ?", [int_(delta), text(product_id)])
    try:
        p = find(product_id)
    except SqlError:
        p = None
    if p is None:
        raise Trap("the product was just updated")
    return p.stock


def reserve(order_id: str, lines: list) -> None:
    """Reserves stock for every line of an order, or for none."""
    if reservation_status(order_id) is not None:
        return  # answered already
    wanted = {}
    for line in lines:
        wanted[line.product_id] = wanted.get(line.product_id, 0) + line.quantity
    # A BTreeMap<&str, _> iterates by UTF-8 bytes: the same order as code points.
    ordered = sorted(wanted.items())
    shortfalls = []
    for product_id, quantity in ordered:
        p = find_or_trap(product_id)
        if p is None:
            shortfalls.append("%s is not in the catalog" % product_id)
        elif p.stock < quantity:
            shortfalls.append("%s: %d wanted, %d in stock" % (product_id, quantity, p.stock))
    if not lines:
        shortfalls.append("the order has no lines")
    status = "rejected" if shortfalls else "reserved"
    exec_or_trap("INSERT INTO reservations (order_id, status) VALUES (?, ?)", [text(order_id), text(status)])
    if shortfalls:
        publish(pev.ProductEvent_StockRejected(pev.StockRejection(order_id=order_id, reason="; ".join(shortfalls))))
        return
    for product_id, quantity in ordered:
        exec_or_trap(
            "INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES (?, ?, ?)",
            [text(order_id), text(product_id), int_(quantity)],
        )
        stock = move_stock(product_id, -quantity)
        publish(pev.ProductEvent_StockChanged(pev.StockLevel(product_id=product_id, stock=stock)))
    publish(pev.ProductEvent_StockReserved(order_id))


def release(order_id: str) -> None:
    """Puts back the stock a reserved order held, once."""
    if reservation_status(order_id) != "reserved":
        return
    try:
        lines = query(
            "SELECT product_id, quantity FROM reservation_lines WHERE order_id = ? ORDER BY product_id",
            [text(order_id)],
        )
    except SqlError as e:
        raise Trap("reading the reservation of %s: %s" % (order_id, e)) from None
    for line in lines:
        product_id = col_text(line, 0)
        stock = move_stock(product_id, col_int(line, 1))
        publish(pev.ProductEvent_StockChanged(pev.StockLevel(product_id=product_id, stock=stock)))
    exec_or_trap("UPDATE reservations SET status = 'released' WHERE order_id = ?", [text(order_id)])
    publish(pev.ProductEvent_StockReleased(order_id))


# --- the exports ------------------------------------------------------------

SCHEMA = SchemaVersion(major=1, minor=1)

UPGRADE_1_1 = """
    ALTER TABLE products ADD COLUMN name_folded TEXT GENERATED ALWAYS AS (lower(name)) VIRTUAL;
    CREATE INDEX products_by_name_folded ON products (name_folded)"""


class Schema(wit_world.exports.Schema):
    def migrate(self, found: Optional[SchemaVersion]) -> SchemaVersion:
        def upgrade(frm: str) -> None:
            try:
                execute_batch(UPGRADE_1_1)
            except SqlError as e:
                raise Err("upgrading the product tables %s to 1.1: %s" % (frm, e)) from None

        if found is None:
            try:
                execute_batch(TABLES_1_0)
            except SqlError as e:
                raise Err("creating the product tables: %s" % e) from None
            upgrade("from new")
            return SchemaVersion(SCHEMA.major, SCHEMA.minor)
        if found.major == 1 and found.minor == 0:
            upgrade("from 1.0")
            return SchemaVersion(SCHEMA.major, SCHEMA.minor)
        if found.major == SCHEMA.major:
            return found
        raise Err(
            "the database has product schema %d.%d, which this build (schema %d.x) cannot serve"
            % (found.major, found.minor, SCHEMA.major)
        )


class Catalog(wit_world.exports.Catalog):
    def create_product(self, product: Product) -> Product:
        check_id(product.product_id)
        check_name(product.name)
        price = money(product.price)
        try:
            inserted = execute(
                "INSERT INTO products (product_id, name, price, stock) VALUES (?, ?, ?, ?)\n"
                "         ON CONFLICT (product_id) DO NOTHING",
                [text(product.product_id), text(product.name), int_(price), int_(product.stock)],
            )
        except SqlError as e:
            raise storage(e) from None
        if inserted == 0:
            raise Err(cat.CatalogError_AlreadyExists(product.product_id))
        publish(pev.ProductEvent_Created(Product(product.product_id, product.name, product.price, product.stock)))
        return product

    def get_product(self, product_id: str) -> Optional[Product]:
        return find_or_trap(product_id)

    def list_products(self) -> List[Product]:
        try:
            rows = query("SELECT product_id, name, price, stock FROM products ORDER BY product_id", [])
        except SqlError as e:
            raise Trap("listing products: %s" % e) from None
        return [to_product(r) for r in rows]

    def search_products(self, text_: str) -> List[Product]:
        folded = text_.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        try:
            rows = query(
                "SELECT product_id, name, price, stock FROM products\n"
                "             WHERE name_folded LIKE ? ESCAPE '\\' ORDER BY name_folded, product_id",
                [text("%" + folded + "%")],
            )
        except SqlError as e:
            raise Trap("searching products: %s" % e) from None
        return [to_product(r) for r in rows]

    def set_price(self, product_id: str, price: int) -> Product:
        old = existing(product_id)
        updated = update(product_id, "UPDATE products SET price = ? WHERE product_id = ?", int_(money(price)))
        if old.price != price:
            publish(pev.ProductEvent_PriceUpdated(pev.PriceUpdate(product_id=product_id, old_price=old.price, new_price=price)))
        return updated

    def rename_product(self, product_id: str, name: str) -> Product:
        check_name(name)
        old = existing(product_id)
        updated = update(product_id, "UPDATE products SET name = ? WHERE product_id = ?", text(name))
        if old.name != name:
            publish(pev.ProductEvent_Renamed(pev.Rename(product_id=product_id, old_name=old.name, new_name=name)))
        return updated

    def adjust_stock(self, product_id: str, delta: int) -> Product:
        current = existing(product_id)
        stock = current.stock + delta
        if stock < 0:
            raise Err(cat.CatalogError_InsufficientStock(current.stock))
        if stock > U32_MAX:
            raise Err(cat.CatalogError_Invalid("stock would exceed %d" % U32_MAX))
        updated = update(product_id, "UPDATE products SET stock = ? WHERE product_id = ?", int_(stock))
        if delta != 0:
            publish(pev.ProductEvent_StockChanged(pev.StockLevel(product_id=product_id, stock=updated.stock)))
        return updated


class Handler(wit_world.exports.Handler):
    def handle(self, event: oev.OrderEvent) -> None:
        if isinstance(event, oev.OrderEvent_Submitted):
            reserve(event.value.order_id, event.value.lines)
        elif isinstance(event, oev.OrderEvent_Cancelled):
            release(event.value)
        # placed: nothing to do
