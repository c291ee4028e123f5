//! GraphQL answer bodies from the Connector and the Director, decoded into
//! every type the clients read them into.
//!
//! Properties: no panic; an error names what went wrong and quotes at most a
//! bounded excerpt of the body; what the agent parses next (the Connector's
//! subject and key algorithm) does not panic either.
#![no_main]

use compass_runtime_agent::certificates::{KeyAlgorithm, Subject};
use compass_runtime_agent::compass::connector::{
    decode_configuration, decode_revoke_result, decode_sign_result,
};
use compass_runtime_agent::compass::director::{decode_answer, Answer};
use compass_runtime_agent::compass::CompassError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match decode_configuration(body) {
        Ok(configuration) => {
            if let Some(info) = configuration.certificate_signing_request_info {
                let _ = Subject::parse(&info.subject);
                let _ = KeyAlgorithm::parse(&info.key_algorithm);
            }
            let _ = format!("{:?}", configuration.token);
        }
        Err(error) => check(&error),
    }
    match decode_sign_result(body) {
        Ok(result) => {
            let _ = result.certificate_chain.len();
        }
        Err(error) => check(&error),
    }
    if let Err(error) = decode_revoke_result(body) {
        check(&error);
    }
    for answer in Answer::ALL {
        if let Err(error) = decode_answer(answer, body) {
            check(&error);
        }
    }
});

fn check(error: &CompassError) {
    let text = error.to_string();
    assert!(!text.is_empty());
    let _ = error.category();
    if let CompassError::NotJson { excerpt, .. } = error {
        // 200 characters and an ellipsis.
        assert!(excerpt.chars().count() <= 201, "{excerpt:?}");
        assert!(!excerpt.is_empty());
    }
}
