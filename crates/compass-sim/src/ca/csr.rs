//! A CSR checked the way the Connector checks it: base64 → PEM → PKCS#10,
//! its signature, then CN, C, O, OU, L, ST (and the key, in strict mode).

use base64::Engine as _;
use x509_parser::prelude::{FromDer, X509CertificationRequest};
use x509_parser::public_key::PublicKey;

use super::Subject;

/// A CSR that passed every check; only its public key is used for signing.
pub struct ValidCsr {
    pub(super) spki: rcgen::SubjectPublicKeyInfo,
}

/// Decodes and checks a CSR the way the Connector does (base64 → PEM → PKCS#10,
/// signature, then CN, C, O, OU, L, ST), plus the key algorithm when `strict`.
/// The error text is what the Connector answers.
pub fn validate_csr(
    csr_base64: &str,
    expected: &Subject,
    key_algorithm: &str,
    strict: bool,
) -> Result<ValidCsr, String> {
    let pem_bytes = base64::engine::general_purpose::STANDARD
        .decode(csr_base64.trim())
        .map_err(|_| "Error while parsing base64 content. Incorrect value provided.".to_string())?;
    let block =
        pem::parse(&pem_bytes).map_err(|_| "Error while decoding pem block.".to_string())?;
    let (_, csr) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| format!("Error while parsing CSR: {e}"))?;
    csr.verify_signature()
        .map_err(|e| format!("CSR signature invalid: {e}"))?;
    check_subject(&csr, expected)?;
    let info = &csr.certification_request_info;
    if strict {
        check_key_algorithm(&info.subject_pki, key_algorithm)?;
    }
    let spki = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
        .map_err(|e| format!("CSR: unsupported public key: {e}"))?;
    Ok(ValidCsr { spki })
}

fn check_subject(csr: &X509CertificationRequest<'_>, expected: &Subject) -> Result<(), String> {
    let name = &csr.certification_request_info.subject;
    fn first<'a>(
        mut it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
    ) -> Option<String> {
        it.next().map(|a| a.as_str().unwrap_or("").to_string())
    }
    if first(name.iter_common_name()).unwrap_or_default() != expected.common_name {
        return Err("CSR: Invalid common name provided.".into());
    }
    let checks: [(Option<String>, &str, &str); 5] = [
        (first(name.iter_country()), &expected.country, "country"),
        (
            first(name.iter_organization()),
            &expected.organization,
            "organization",
        ),
        (
            first(name.iter_organizational_unit()),
            &expected.organizational_unit,
            "organizational unit",
        ),
        (first(name.iter_locality()), &expected.locality, "locality"),
        (
            first(name.iter_state_or_province()),
            &expected.province,
            "province",
        ),
    ];
    for (found, want, what) in checks {
        match found {
            None => return Err(format!("CSR: No {what} provided.")),
            Some(v) if v != want => return Err(format!("CSR: Invalid {what} provided.")),
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_key_algorithm(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
    key_algorithm: &str,
) -> Result<(), String> {
    let wanted_bits = match key_algorithm {
        "rsa2048" => 2048,
        "rsa4096" => 4096,
        other => {
            return Err(format!(
                "CSR: compass-sim (strict) cannot check key algorithm {other:?}"
            ))
        }
    };
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = modulus_bits(rsa.modulus);
            if bits != wanted_bits {
                return Err(format!(
                    "CSR: Invalid key: {key_algorithm} was asked for, the CSR has a {bits}-bit RSA key."
                ));
            }
            Ok(())
        }
        Ok(_) | Err(_) => Err(format!(
            "CSR: Invalid key: {key_algorithm} was asked for, the CSR's key is not RSA."
        )),
    }
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let trimmed: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(i) => &modulus[i..],
        None => return 0,
    };
    trimmed.len() * 8 - trimmed[0].leading_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::base64_pem;
    use crate::ca::tests::{csr_b64, subject};
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    #[test]
    fn a_csr_with_the_handed_out_subject_passes() {
        let key = KeyPair::generate().unwrap();
        let s = subject("rt-1");
        assert!(validate_csr(&csr_b64(&s, &key), &s, "rsa2048", false).is_ok());
    }

    #[test]
    fn each_wrong_subject_field_is_named() {
        let key = KeyPair::generate().unwrap();
        let want = subject("rt-1");
        let cases = [
            ("CN", "CSR: Invalid common name provided."),
            ("C", "CSR: Invalid country provided."),
            ("O", "CSR: Invalid organization provided."),
            ("OU", "CSR: Invalid organizational unit provided."),
            ("L", "CSR: Invalid locality provided."),
            ("ST", "CSR: Invalid province provided."),
        ];
        for (field, message) in cases {
            let mut wrong = want.clone();
            match field {
                "CN" => wrong.common_name = "other".into(),
                "C" => wrong.country = "DE".into(),
                "O" => wrong.organization = "x".into(),
                "OU" => wrong.organizational_unit = "x".into(),
                "L" => wrong.locality = "x".into(),
                _ => wrong.province = "x".into(),
            }
            let err = validate_csr(&csr_b64(&wrong, &key), &want, "rsa2048", false)
                .err()
                .unwrap();
            assert_eq!(err, message, "field {field}");
        }
    }

    #[test]
    fn a_missing_country_is_reported_as_missing() {
        let key = KeyPair::generate().unwrap();
        let want = subject("rt-1");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "rt-1");
        params.distinguished_name = dn;
        let csr = base64_pem(&params.serialize_request(&key).unwrap().pem().unwrap());
        let err = validate_csr(&csr, &want, "rsa2048", false).err().unwrap();
        assert_eq!(err, "CSR: No country provided.");
    }

    #[test]
    fn garbage_is_refused_at_the_right_step() {
        let want = subject("rt-1");
        let not_b64 = validate_csr("%%%", &want, "rsa2048", false).err().unwrap();
        assert!(not_b64.contains("base64"), "{not_b64}");
        let not_pem = validate_csr(&base64_pem("hello"), &want, "rsa2048", false)
            .err()
            .unwrap();
        assert!(not_pem.contains("pem block"), "{not_pem}");
        let not_csr = validate_csr(
            &base64_pem(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            ),
            &want,
            "rsa2048",
            false,
        )
        .err()
        .unwrap();
        assert!(not_csr.contains("parsing CSR"), "{not_csr}");
    }

    #[test]
    fn strict_mode_checks_the_key_algorithm() {
        let ec = KeyPair::generate().unwrap();
        let s = subject("rt-1");
        let err = validate_csr(&csr_b64(&s, &ec), &s, "rsa2048", true)
            .err()
            .unwrap();
        assert!(err.contains("not RSA"), "{err}");
        let rsa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        assert!(validate_csr(&csr_b64(&s, &rsa), &s, "rsa2048", true).is_ok());
        let err = validate_csr(&csr_b64(&s, &rsa), &s, "rsa4096", true)
            .err()
            .unwrap();
        assert!(err.contains("2048-bit"), "{err}");
    }

    #[test]
    fn modulus_bits_ignore_the_sign_byte() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0x00]), 9);
        assert_eq!(modulus_bits(&[]), 0);
    }
}
