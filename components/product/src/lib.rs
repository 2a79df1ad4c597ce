//! The product service: owns the catalog (`shop:product/catalog@1.0.0`).
//!
//! Layout: `schema` creates the tables; `Catalog` implements the exported
//! interface over the component's own database.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit/moat-platform", "../../wit/shop-product", "world.wit"],
        world: "component:product/product",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

use bindings::exports::moat::platform::schema;
use bindings::exports::shop::product::catalog::{self, CatalogError, Money, Product as Item};
use moat_sdk::sql::{self, int, text, Row};
use moat_sdk::SqlError;

struct Product;

bindings::export!(Product with_types_in bindings);

/// The schema version this build creates and serves.
const SCHEMA_VERSION: u32 = 1;

impl schema::Guest for Product {
    fn migrate(found: u32) -> Result<u32, String> {
        match found {
            0 => {
                sql::execute_batch(
                    "CREATE TABLE products (
                        product_id TEXT PRIMARY KEY,
                        name       TEXT NOT NULL,
                        price      INTEGER NOT NULL CHECK (price >= 0),
                        stock      INTEGER NOT NULL CHECK (stock >= 0)
                    )",
                )
                .map_err(|e| format!("creating the products table: {e:?}"))?;
                Ok(SCHEMA_VERSION)
            }
            SCHEMA_VERSION => Ok(SCHEMA_VERSION),
            newer => Err(format!(
                "the database has product schema {newer}, newer than this build's {SCHEMA_VERSION}"
            )),
        }
    }
}

impl catalog::Guest for Product {
    fn create_product(product: Item) -> Result<Item, CatalogError> {
        check_id(&product.product_id)?;
        check_name(&product.name)?;
        let price = money(product.price)?;
        let inserted = sql::execute(
            "INSERT INTO products (product_id, name, price, stock) VALUES (?, ?, ?, ?)
             ON CONFLICT (product_id) DO NOTHING",
            &[text(&product.product_id), text(&product.name), int(price), int(product.stock)],
        )
        .map_err(storage)?;
        if inserted == 0 {
            return Err(CatalogError::AlreadyExists(product.product_id));
        }
        Ok(product)
    }

    fn get_product(product_id: String) -> Option<Item> {
        find(&product_id).unwrap_or_else(|e| panic!("reading product {product_id}: {e:?}"))
    }

    fn list_products() -> Vec<Item> {
        sql::query("SELECT product_id, name, price, stock FROM products ORDER BY product_id", &[])
            .unwrap_or_else(|e| panic!("listing products: {e:?}"))
            .iter()
            .map(to_product)
            .collect()
    }

    fn set_price(product_id: String, price: Money) -> Result<Item, CatalogError> {
        let price = money(price)?;
        update(&product_id, "UPDATE products SET price = ? WHERE product_id = ?", int(price))
    }

    fn rename_product(product_id: String, name: String) -> Result<Item, CatalogError> {
        check_name(&name)?;
        update(&product_id, "UPDATE products SET name = ? WHERE product_id = ?", text(&name))
    }

    fn adjust_stock(product_id: String, delta: i32) -> Result<Item, CatalogError> {
        let current = find(&product_id).map_err(storage)?.ok_or(CatalogError::NotFound(product_id.clone()))?;
        if i64::from(current.stock) + i64::from(delta) < 0 {
            return Err(CatalogError::InsufficientStock(current.stock));
        }
        let stock = i64::from(current.stock) + i64::from(delta);
        if stock > i64::from(u32::MAX) {
            return Err(CatalogError::Invalid(format!("stock would exceed {}", u32::MAX)));
        }
        update(&product_id, "UPDATE products SET stock = ? WHERE product_id = ?", int(stock))
    }
}

fn find(product_id: &str) -> Result<Option<Item>, SqlError> {
    Ok(sql::query_one(
        "SELECT product_id, name, price, stock FROM products WHERE product_id = ?",
        &[text(product_id)],
    )?
    .as_ref()
    .map(to_product))
}

/// Sets one column of one product and returns the product as it now is.
fn update(product_id: &str, statement: &str, value: moat_sdk::Value) -> Result<Item, CatalogError> {
    let changed = sql::execute(statement, &[value, text(product_id)]).map_err(storage)?;
    if changed == 0 {
        return Err(CatalogError::NotFound(product_id.to_string()));
    }
    Ok(find(product_id).map_err(storage)?.expect("the product was just updated"))
}

fn to_product(row: &Row) -> Item {
    Item {
        product_id: row.text(0),
        name: row.text(1),
        price: row.uint(2),
        stock: u32::try_from(row.int(3)).expect("stock fits u32 by the table's CHECK"),
    }
}

fn check_id(product_id: &str) -> Result<(), CatalogError> {
    if product_id.trim().is_empty() {
        return Err(CatalogError::Invalid("product-id must not be empty".into()));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), CatalogError> {
    if name.trim().is_empty() {
        return Err(CatalogError::Invalid("name must not be empty".into()));
    }
    Ok(())
}

fn money(amount: Money) -> Result<i64, CatalogError> {
    i64::try_from(amount).map_err(|_| CatalogError::Invalid(format!("price {amount} is too large")))
}

/// A store failure the catalog has no case for is a bug or a broken disk:
/// trap, so that the host rolls the unit of work back and reports it.
fn storage(e: SqlError) -> CatalogError {
    panic!("product database: {e:?}")
}
