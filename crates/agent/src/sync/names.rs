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

/// The runtime label that says whether the Director's application names are
/// used as they are.
pub const IS_NORMALIZED_LABEL: &str = "isNormalized";

/// What today's Kyma agent does: Application names are normalized unless the
/// runtime's `isNormalized` label is exactly the JSON string `"true"` (a
/// missing label, `"false"`, `"True"` or a JSON boolean all mean: normalize).
pub fn normalizes_application_names(
    runtime_labels: &std::collections::BTreeMap<String, serde_json::Value>,
) -> bool {
    runtime_labels
        .get(IS_NORMALIZED_LABEL)
        .and_then(|value| value.as_str())
        != Some("true")
}

const APPLICATION_PREFIX: &str = "mp-";

/// The Application name today's Kyma agent derives from a Director name: a
/// name that starts with `mp-` and is already in normal form stays; any other
/// gets the prefix `mp-` and is put in normal form. No length cut.
pub fn normalize_application_name(name: &str) -> String {
    if name.starts_with(APPLICATION_PREFIX) && normal_form(name) == name {
        return name.to_string();
    }
    normal_form(&format!("{APPLICATION_PREFIX}{name}"))
}

/// Lower case (one character for one, as Go's `strings.ToLower`), every
/// character outside `[-a-z0-9]` → `-`, runs of `-` → one, one trailing `-`
/// removed.
fn normal_form(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = simple_lowercase(c);
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    if out.ends_with('-') {
        out.pop();
    }
    out
}

/// Unicode's simple lower-case mapping, as Go's `unicode.ToLower`: one
/// character for one. Rust's `to_lowercase` is the full mapping, which turns
/// `İ` into two characters (`i` and a combining dot); its first is the
/// simple mapping, for every character with a one-character simple mapping.
fn simple_lowercase(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    c.to_lowercase().next().unwrap_or(c)
}

/// Why `name` cannot be an Application's name (a DNS-1123 subdomain), or, when
/// its credential Secrets carry it as their `app` label, a label value.
pub fn check_application_name(name: &str, labels_secrets: bool) -> Result<(), String> {
    use crate::crd::names::{check_name, NameForm};
    if check_name(name, NameForm::Subdomain).is_err() {
        return Err(format!(
            "{name:?} is not a valid Kubernetes object name (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters); the runtime label {IS_NORMALIZED_LABEL}=\"true\" makes the agent use the Director's names as they are"
        ));
    }
    if labels_secrets && name.len() > 63 {
        return Err(format!(
            "the name {name:?} is {} characters long; its credential Secrets carry it as their `app` label, which allows at most 63",
            name.len()
        ));
    }
    Ok(())
}

/// `<normalized bundle name>-<first 5 hex chars of sha1(bundle id)>`.
pub fn service_name(bundle_name: &str, bundle_id: &str) -> String {
    let digest = hex::encode(Sha1::digest(bundle_id.as_bytes()));
    let normalized = normalize(bundle_name);
    // The original trims one leading `-` off the whole name: a name with no
    // ASCII letter or digit (`日本語`) gives the five hex characters alone.
    if normalized.is_empty() {
        digest[..5].to_string()
    } else {
        format!("{normalized}-{}", &digest[..5])
    }
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
    use std::collections::BTreeMap;

    #[test]
    fn application_names_are_normalized_as_the_spec_shows() {
        for (name, expected) in [
            ("Café Orders", "mp-caf-orders"),
            ("my_app", "mp-my-app"),
            ("MP-Already", "mp-mp-already"),
            ("mp-ok", "mp-ok"),
            ("Some  App--", "mp-some-app"),
            ("", "mp"),
        ] {
            assert_eq!(normalize_application_name(name), expected, "{name:?}");
        }
    }

    #[test]
    fn each_rule_of_the_normal_form_holds() {
        // Prefix, lower case, other characters, runs, one trailing dash, no cut.
        assert_eq!(normalize_application_name("Shop"), "mp-shop");
        assert_eq!(normalize_application_name("a.b/c:d"), "mp-a-b-c-d");
        assert_eq!(normalize_application_name("a---b"), "mp-a-b");
        assert_eq!(normalize_application_name("ab-"), "mp-ab");
        assert_eq!(normalize_application_name("---"), "mp");
        let long = "x".repeat(300);
        assert_eq!(normalize_application_name(&long).len(), 303);
        // `mp-` is kept only when the rest is in normal form already.
        assert_eq!(normalize_application_name("mp-a-b"), "mp-a-b");
        assert_eq!(normalize_application_name("mp-A"), "mp-mp-a");
        assert_eq!(normalize_application_name("mp-a_b"), "mp-mp-a-b");
        assert_eq!(normalize_application_name("mp-ab-"), "mp-mp-ab");
        assert_eq!(normalize_application_name("mp-"), "mp-mp");
        assert_eq!(normalize_application_name("MP-x"), "mp-mp-x");
        // Normalizing a normalized name changes nothing (but for "mp", which
        // has no `mp-` prefix: the original gives "mp-mp" for it, so do we).
        assert_eq!(normalize_application_name("mp"), "mp-mp");
        for name in ["Café Orders", "my_app", "x", "mp-ok"] {
            let once = normalize_application_name(name);
            assert_eq!(normalize_application_name(&once), once, "{name:?}");
        }
    }

    #[test]
    fn lower_case_is_one_character_for_one_as_in_go() {
        // Go: strings.ToLower("İ") == "i" (Rust's full mapping gives "i̇").
        assert_eq!(normalize_application_name("İstanbul"), "mp-istanbul");
        // The Kelvin sign's lower case is the ASCII k.
        assert_eq!(normalize_application_name("\u{212A}elvin"), "mp-kelvin");
        assert_eq!(normalize_application_name("ÄÖÜ-Straße"), "mp-stra-e");
        assert_eq!(normalize_application_name("注文"), "mp");
    }

    #[test]
    fn the_fixtures_of_the_go_agent_all_give_one_name() {
        for name in [
            "tEsT-ApPlIcAtIoN",
            "test.application",
            "test$application",
            "test&application",
            "test@application",
            "test%.-&application",
            "!test-application",
            "!@#$%test-application",
            "test-application%",
            "test-application&*^%",
            "[test@application]",
            "test---application",
            "---test-application",
            "test-application---",
            "---test---application---",
            "test-application-",
            "test-application&--*^-%",
            "---tEsT@ApPlIcAtIoN.!$",
            "test-application",
            "mp-test-application",
        ] {
            assert_eq!(
                normalize_application_name(name),
                "mp-test-application",
                "{name:?}"
            );
        }
    }

    #[test]
    fn only_the_json_string_true_keeps_the_directors_names() {
        let labels = |value: Option<serde_json::Value>| -> BTreeMap<String, serde_json::Value> {
            value
                .map(|v| BTreeMap::from([(IS_NORMALIZED_LABEL.to_string(), v)]))
                .unwrap_or_default()
        };
        assert!(normalizes_application_names(&labels(None)));
        assert!(normalizes_application_names(&labels(Some("false".into()))));
        assert!(normalizes_application_names(&labels(Some("True".into()))));
        assert!(normalizes_application_names(&labels(Some(true.into()))));
        assert!(normalizes_application_names(&labels(Some(
            serde_json::json!(["true"])
        ))));
        assert!(!normalizes_application_names(&labels(Some("true".into()))));
    }

    #[test]
    fn names_that_kubernetes_refuses_are_refused_with_the_reason() {
        assert!(check_application_name("mp-shop", true).is_ok());
        assert!(check_application_name("shop.v1", false).is_ok());
        for bad in ["My App", "", "-shop", "shop-", "a..b", "Shop"] {
            let error = check_application_name(bad, false).unwrap_err();
            assert!(
                error.contains("not a valid Kubernetes object name"),
                "{bad:?}: {error}"
            );
        }
        let long = format!("mp-{}", "a".repeat(70));
        assert!(check_application_name(&long, false).is_ok());
        let error = check_application_name(&long, true).unwrap_err();
        assert!(error.contains("at most 63"), "{error}");
        assert!(check_application_name(&"a".repeat(254), false).is_err());
    }

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
