//! The API server's answers that the agent acts on rather than reports, told
//! by their status code in one place.

/// Whether an error is the API server's 409 (a stale resourceVersion, a
/// create of a name that exists, or a delete whose uid precondition failed).
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Whether an error is the API server's 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Whether an error is the API server's 403.
pub fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("x", "x")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn each_helper_knows_its_code_only() {
        assert!(is_conflict(&answer(409)));
        assert!(is_not_found(&answer(404)));
        assert!(is_forbidden(&answer(403)));
        for code in [400, 401, 410, 422, 429, 500] {
            let error = answer(code);
            assert!(!is_conflict(&error) && !is_not_found(&error) && !is_forbidden(&error));
        }
    }
}
