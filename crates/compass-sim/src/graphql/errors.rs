//! The Director's errors as its error presenter shapes them: HTTP 200, and
//! each entry of `errors` with `extensions: {error, error_code}`. An error of
//! a known type keeps its message (`Invalid data [reason=…]`); any other
//! becomes an `InternalError` whose message carries an error id and the
//! reason.

use async_graphql::{Error, ErrorExtensions};

/// The Director's error types that the simulator answers with, and their codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    InternalError,
    InvalidData,
}

impl ErrorType {
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::InternalError => "InternalError",
            ErrorType::InvalidData => "InvalidData",
        }
    }

    pub fn code(self) -> i32 {
        match self {
            ErrorType::InternalError => 10,
            ErrorType::InvalidData => 22,
        }
    }
}

fn shaped(error_type: ErrorType, message: String) -> Error {
    Error::new(message).extend_with(|_, extensions| {
        extensions.set("error", error_type.name());
        extensions.set("error_code", error_type.code());
    })
}

/// `InvalidData` (22): the request is wrong, e.g. a page size out of range.
pub fn invalid_data(reason: impl std::fmt::Display) -> Error {
    shaped(
        ErrorType::InvalidData,
        format!("Invalid data [reason={reason}]"),
    )
}

/// `InternalError` (10): what the Director does not classify, e.g. a cursor
/// it did not issue or a label it refuses to set.
pub fn internal(reason: impl std::fmt::Display) -> Error {
    shaped(
        ErrorType::InternalError,
        format!(
            "Internal Server Error [errorID={}, reason: {reason}]",
            uuid::Uuid::new_v4()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extensions(error: &Error) -> serde_json::Value {
        serde_json::to_value(error.extensions.as_ref().expect("extensions")).unwrap()
    }

    #[test]
    fn each_error_carries_its_type_and_code() {
        let error = invalid_data("page size must be between 1 and 200");
        assert_eq!(
            error.message,
            "Invalid data [reason=page size must be between 1 and 200]"
        );
        assert_eq!(
            extensions(&error),
            serde_json::json!({"error": "InvalidData", "error_code": 22})
        );
        let error = internal("cursor is not correct");
        assert!(error.message.starts_with("Internal Server Error [errorID="));
        assert!(error.message.ends_with(", reason: cursor is not correct]"));
        assert_eq!(
            extensions(&error),
            serde_json::json!({"error": "InternalError", "error_code": 10})
        );
    }
}
