//! Names derived from Director names and ids. They must be exactly the
//! original agent's, so that Applications and Secrets it created are found
//! again and gateway URLs do not change when the agent is swapped.

use sha1::{Digest, Sha1};

/// Longest service name part before the `-<5 hex>` suffix (63 − 6).
const MAX_NORMALIZED_LEN: usize = 57;
/// Longest `<app>-` prefix of a Secret name: 63 minus the 36 of a bundle UUID.
const MAX_SECRET_PREFIX_LEN: usize = 27;

/// Runs of characters other than ASCII letters and digits become one `-`; the
/// result is lower-cased, trailing `-` removed, cut at 57 characters, and
/// leading `-` removed (in that order, as the original does).
pub fn normalize(name: &str) -> String {
    let mut normalized = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            normalized.push(c.to_ascii_lowercase());
            in_run = false;
        } else if !in_run {
            normalized.push('-');
            in_run = true;
        }
    }
    let trimmed_len = normalized.trim_end_matches('-').len();
    normalized.truncate(trimmed_len.min(MAX_NORMALIZED_LEN));
    normalized.trim_start_matches('-').to_string()
}

/// `<normalized bundle name>-<first 5 hex chars of sha1(bundle id)>`.
pub fn service_name(bundle_name: &str, bundle_id: &str) -> String {
    let digest = hex::encode(Sha1::digest(bundle_id.as_bytes()));
    format!("{}-{}", normalize(bundle_name), &digest[..5])
}

/// The credentials Secret of a bundle: `<app>-<bundle id>`, the application
/// name cut so that `<app>-` has at most 27 characters.
pub fn credentials_secret_name(application: &str, bundle_id: &str) -> String {
    format!("{}-{bundle_id}", cut_prefix(application))
}

/// The request parameters Secret of a bundle: `params-<app>-<bundle id>`, with
/// `params-<app>` cut the same way.
pub fn request_parameters_secret_name(application: &str, bundle_id: &str) -> String {
    format!(
        "{}-{bundle_id}",
        cut_prefix(&format!("params-{application}"))
    )
}

fn cut_prefix(prefix: &str) -> &str {
    let max = MAX_SECRET_PREFIX_LEN - 1;
    match prefix.char_indices().nth(max) {
        Some((index, _)) => &prefix[..index],
        None => prefix,
    }
}

/// `<gateway>/<app>/<normalized bundle name>/<normalized API name>`.
pub fn central_gateway_url(
    gateway: &str,
    application: &str,
    bundle_name: &str,
    api_name: &str,
) -> String {
    format!(
        "{}/{application}/{}/{}",
        gateway.trim_end_matches('/'),
        normalize(bundle_name),
        normalize(api_name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_other_characters_become_one_dash_and_letters_go_lower_case() {
        assert_eq!(normalize("My  API / Orders v2"), "my-api-orders-v2");
        assert_eq!(normalize("Orders"), "orders");
    }

    #[test]
    fn dashes_at_the_ends_are_removed() {
        assert_eq!(normalize("--orders!!"), "orders");
        assert_eq!(normalize("(orders)"), "orders");
    }

    #[test]
    fn unicode_letters_are_not_alphanumeric_here() {
        assert_eq!(normalize("Zamówienia"), "zam-wienia");
        assert_eq!(normalize("注文"), "");
        assert_eq!(normalize("café API"), "caf-api");
    }

    #[test]
    fn long_names_are_cut_at_57_characters_after_trimming_the_end() {
        let long = "a".repeat(100);
        assert_eq!(normalize(&long).len(), 57);
        // The cut happens after the trailing trim, so a dash at the cut stays,
        // exactly as in the original.
        let name = format!("{}-{}", "a".repeat(56), "b".repeat(10));
        assert_eq!(normalize(&name), format!("{}-", "a".repeat(56)));
    }

    #[test]
    fn the_leading_trim_comes_after_the_cut() {
        let name = format!("---{}", "x".repeat(60));
        // "-" + 60 x's → cut to 57 ("-" + 56 x's) → leading dash removed.
        assert_eq!(normalize(&name), "x".repeat(56));
    }

    #[test]
    fn service_names_carry_five_hex_chars_of_the_bundle_id_sha1() {
        // sha1("bundle-1") = 0d4c6b8b…
        let expected = format!("orders-{}", &hex::encode(Sha1::digest(b"bundle-1"))[..5]);
        assert_eq!(service_name("Orders", "bundle-1"), expected);
        assert_eq!(
            service_name("Orders", "bundle-1").len(),
            "orders-".len() + 5
        );
    }

    #[test]
    fn names_that_normalize_alike_get_different_service_names_by_id() {
        let a = service_name("Orders API", "id-a");
        let b = service_name("orders_api", "id-b");
        assert_eq!(normalize("Orders API"), normalize("orders_api"));
        assert_ne!(a, b);
    }

    #[test]
    fn secret_names_fit_in_63_characters_with_a_uuid() {
        let bundle = "6f2b6e2e-1b43-4e0a-a1c2-3f1b8a0c9d11";
        let app = "a-very-long-application-name-that-goes-on";
        let name = credentials_secret_name(app, bundle);
        assert_eq!(name, format!("a-very-long-application-na-{bundle}"));
        assert_eq!(name.len(), 63);
        let params = request_parameters_secret_name(app, bundle);
        assert_eq!(params, format!("params-a-very-long-applica-{bundle}"));
        assert_eq!(params.len(), 63);
        assert_eq!(credentials_secret_name("shop", "b1"), "shop-b1");
        assert_eq!(
            request_parameters_secret_name("shop", "b1"),
            "params-shop-b1"
        );
    }

    #[test]
    fn the_central_gateway_url_joins_normalized_parts() {
        assert_eq!(
            central_gateway_url(
                "http://gw.kyma-system.svc:8082/",
                "shop",
                "Orders Bundle",
                "Orders API v1"
            ),
            "http://gw.kyma-system.svc:8082/shop/orders-bundle/orders-api-v1"
        );
    }
}
