//! The one-time token as the CompassConnection records it: a digest of the
//! token last presented (never the token), so that a new one is recognized.

use crate::crd::compass_connection::CompassConnection;
use crate::crd::labels::PRESENTED_TOKEN_ANNOTATION;

/// A digest of a one-time token: what the CompassConnection records of the
/// token last presented.
pub(super) fn token_digest(token: &str) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(token.as_bytes()))
}

/// The digest of the token last presented, as the CompassConnection records it.
pub(super) fn presented_digest(connection: &CompassConnection) -> Option<&String> {
    connection
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(PRESENTED_TOKEN_ANNOTATION))
}

/// Whether the configured `token` is not the one last presented, as the
/// CompassConnection records its digest (`recorded`): the operator's signal
/// to connect anew. With none recorded, any token counts as new.
pub(super) fn is_new_token(recorded: Option<&str>, token: &str) -> bool {
    recorded != Some(token_digest(token).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_new_unless_its_digest_is_the_one_recorded() {
        let recorded = token_digest("token-1");
        assert!(!is_new_token(Some(&recorded), "token-1"));
        assert!(is_new_token(Some(&recorded), "token-2"));
        // Connected before tokens were recorded: the configured one is tried.
        assert!(is_new_token(None, "token-1"));
        // The digest, never the token, is what the resource holds.
        assert!(is_new_token(Some("token-1"), "token-1"));
    }
}
