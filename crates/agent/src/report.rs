//! How errors read, in the status, in Events and in the log: an error and
//! its causes on one line, `what failed: why: why that`. Each error type's
//! own text says only its own part and carries its cause as its `source`, so
//! nothing is said twice.

use std::error::Error;
use std::fmt;

/// An error with its causes, for `Display`: `tracing::warn!(error = %Report(&e), …)`.
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut current: Option<&(dyn Error + 'static)> = Some(self.0);
        // What the level above said: some errors of other crates repeat
        // their cause in their own text (kube's `ServiceError: {cause}`,
        // wrapped again by the layers of its client), and a cause it
        // already said is not said again.
        let mut above = String::new();
        while let Some(error) = current {
            let text = match error.downcast_ref::<kube::Error>() {
                // The API server's own message (it names the object and the
                // field it refused), not the Debug dump of its Status; the
                // Status, its source, says the same again.
                Some(kube::Error::Api(status)) => status.message.clone(),
                _ => error.to_string(),
            };
            if above.is_empty() || !above.contains(&text) {
                if !above.is_empty() {
                    f.write_str(": ")?;
                }
                f.write_str(&text)?;
                above = text;
            }
            if matches!(
                error.downcast_ref::<kube::Error>(),
                Some(kube::Error::Api(_))
            ) {
                break;
            }
            current = error.source();
        }
        Ok(())
    }
}

/// The error and its causes as one line.
pub fn report(error: &(dyn Error + 'static)) -> String {
    Report(error).to_string()
}

/// `text`, cut to at most `max` bytes (on a character boundary) with `…`
/// when it was longer: status fields and Event notes have limits.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write Secret shop-1")]
    struct Outer(#[source] kube::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("the sync failed")]
    struct Top(#[source] Outer);

    #[test]
    fn each_level_says_its_own_part_once_and_the_api_servers_message_is_quoted() {
        let status = kube::core::Status::failure("secrets \"shop-1\" is forbidden", "Forbidden")
            .with_code(403);
        let error = Top(Outer(kube::Error::Api(Box::new(status))));
        assert_eq!(
            report(&error),
            "the sync failed: cannot write Secret shop-1: secrets \"shop-1\" is forbidden"
        );
    }

    /// An error whose text repeats its cause's, as kube's `ServiceError`.
    #[derive(Debug)]
    struct Repeating(Box<dyn Error + 'static>);

    impl fmt::Display for Repeating {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "ServiceError: {}", self.0)
        }
    }

    impl Error for Repeating {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Connect(#[source] std::io::Error);

    /// A layer of the client that says its cause's cause's words.
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Layer(#[source] Repeating);

    #[derive(Debug, thiserror::Error)]
    #[error("failed to start watching object")]
    struct WatchStart(#[source] Repeating);

    #[test]
    fn a_cause_the_level_above_already_said_is_not_said_again() {
        // As a refused connection of kube's client reads: ServiceError
        // around ServiceError around the connector's error.
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "Connection reset by peer (os error 104)",
        );
        let error = WatchStart(Repeating(Box::new(Layer(Repeating(Box::new(Connect(
            refused,
        )))))));
        assert_eq!(
            report(&error),
            "failed to start watching object: ServiceError: client error (Connect): Connection reset by peer (os error 104)"
        );
    }

    #[test]
    fn bounded_text_is_cut_on_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("ééé", 3), "é…");
        assert_eq!(bounded(&"x".repeat(20), 5), "xxxxx…");
    }
}
