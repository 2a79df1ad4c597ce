//! "Did you mean": the closest of a few known names to one that was not
//! found, for components, functions and record fields.

/// The known name closest to `wanted`, if one is close enough to be a typo:
/// the same name with `_` for `-` or in another case, or within a small
/// edit distance (about a third of its length).
pub fn closest<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let wanted_norm = norm(wanted);
    let bound = (wanted.chars().count() / 3).max(1);
    known
        .into_iter()
        .filter(|k| *k != wanted)
        .map(|k| {
            let distance = if norm(k) == wanted_norm { 0 } else { strsim::damerau_levenshtein(&wanted_norm, &norm(k)) };
            (distance, k)
        })
        .filter(|(d, _)| *d <= bound)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `; did you mean `NAME`?`, or nothing.
pub fn did_you_mean<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(wanted, known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn typos_and_spellings_find_the_name_and_strangers_do_not() {
        let functions = ["get-product", "list-products", "create-product", "set-price", "list-orders"];
        assert_eq!(closest("get-prodcut", functions), Some("get-product"));
        assert_eq!(closest("list_orders", functions), Some("list-orders"));
        assert_eq!(closest("Set-Price", functions), Some("set-price"));
        assert_eq!(closest("prodcut", ["product", "order"]), Some("product"));
        assert_eq!(closest("shipping", ["product", "order"]), None);
        assert_eq!(closest("x", ["product", "order"]), None);
    }
}
