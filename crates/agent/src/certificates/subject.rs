//! The certificate subject the Connector hands out, e.g.
//! `O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN=<runtime id>`.
//!
//! The Connector signs a CSR only when the CSR's subject carries exactly these
//! values, so parsing must be faithful; it must also never panic on a string a
//! Connector (or a man in the middle) sends.

use std::fmt;

/// The distinguished-name attributes the Connector checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub common_name: String,
    pub country: String,
    pub organization: String,
    pub organizational_unit: String,
    pub locality: String,
    pub province: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubjectError {
    #[error("certificate subject is empty")]
    Empty,
    #[error("certificate subject segment {segment:?} is not of the form KEY=value")]
    MissingEquals { segment: String },
    #[error(
        "certificate subject has an unknown attribute {key:?} (expected CN, C, O, OU, L or ST)"
    )]
    UnknownAttribute { key: String },
    #[error("certificate subject has no common name (CN)")]
    MissingCommonName,
    #[error("certificate subject is {len} bytes long, more than the {max} accepted")]
    TooLong { len: usize, max: usize },
}

/// Far beyond any real subject; keeps a hostile answer from costing much.
const MAX_SUBJECT_LEN: usize = 4096;

impl Subject {
    /// Parses the Connector's subject string. Attributes may come in any order and
    /// may be empty; when one repeats, the first value counts (as the Connector
    /// checks the first value of each). A segment without `=` or an attribute the
    /// Connector does not use is an error.
    pub fn parse(text: &str) -> Result<Subject, SubjectError> {
        if text.len() > MAX_SUBJECT_LEN {
            return Err(SubjectError::TooLong {
                len: text.len(),
                max: MAX_SUBJECT_LEN,
            });
        }
        if text.trim().is_empty() {
            return Err(SubjectError::Empty);
        }
        let mut fields: [Option<String>; 6] = Default::default();
        for segment in text.split(',') {
            let segment = segment.trim();
            if segment.is_empty() {
                continue;
            }
            let (key, value) =
                segment
                    .split_once('=')
                    .ok_or_else(|| SubjectError::MissingEquals {
                        segment: segment.to_string(),
                    })?;
            let slot = match key.trim().to_ascii_uppercase().as_str() {
                "CN" => 0,
                "C" => 1,
                "O" => 2,
                "OU" => 3,
                "L" => 4,
                "ST" => 5,
                _ => {
                    return Err(SubjectError::UnknownAttribute {
                        key: key.trim().to_string(),
                    })
                }
            };
            fields[slot].get_or_insert_with(|| value.trim().to_string());
        }
        let [cn, c, o, ou, l, st] = fields;
        Ok(Subject {
            // The CN is the runtime id: an empty one names nobody.
            common_name: cn
                .filter(|cn| !cn.is_empty())
                .ok_or(SubjectError::MissingCommonName)?,
            country: c.unwrap_or_default(),
            organization: o.unwrap_or_default(),
            organizational_unit: ou.unwrap_or_default(),
            locality: l.unwrap_or_default(),
            province: st.unwrap_or_default(),
        })
    }
}

impl fmt::Display for Subject {
    /// The Connector's own format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "O={},OU={},L={},ST={},C={},CN={}",
            self.organization,
            self.organizational_unit,
            self.locality,
            self.province,
            self.country,
            self.common_name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_common_name_is_missing() {
        assert!(matches!(
            Subject::parse("O=Org,C=PL,CN="),
            Err(SubjectError::MissingCommonName)
        ));
        assert!(matches!(
            Subject::parse("O=Org,C=PL,CN=  "),
            Err(SubjectError::MissingCommonName)
        ));
    }

    fn compass_subject() -> Subject {
        Subject {
            common_name: "runtime-1".into(),
            country: "PL".into(),
            organization: "Org".into(),
            organizational_unit: "OrgUnit".into(),
            locality: "Locality".into(),
            province: "State".into(),
        }
    }

    #[test]
    fn parses_the_subject_compass_sends() {
        let subject = Subject::parse("O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN=runtime-1");
        assert_eq!(subject, Ok(compass_subject()));
    }

    #[test]
    fn attribute_order_and_spaces_do_not_matter() {
        let subject =
            Subject::parse(" CN = runtime-1 , C=PL, ST=State,L=Locality,OU=OrgUnit,O=Org ");
        assert_eq!(subject, Ok(compass_subject()));
    }

    #[test]
    fn display_gives_back_the_connector_format() {
        let text = "O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN=runtime-1";
        assert_eq!(Subject::parse(text).unwrap().to_string(), text);
    }

    #[test]
    fn empty_values_are_kept_empty() {
        let subject = Subject::parse("O=,OU=,L=,ST=,C=,CN=abc").unwrap();
        assert_eq!(subject.common_name, "abc");
        assert_eq!(subject.organization, "");
    }

    #[test]
    fn the_first_of_repeated_attributes_counts() {
        let subject = Subject::parse("CN=first,CN=second,O=a,O=b").unwrap();
        assert_eq!(
            (subject.common_name.as_str(), subject.organization.as_str()),
            ("first", "a")
        );
    }

    #[test]
    fn a_segment_without_equals_is_an_error_not_a_panic() {
        // The original agent indexes past the end of such a segment.
        let error = Subject::parse("O=Org,OrgUnit,CN=x").unwrap_err();
        assert_eq!(
            error,
            SubjectError::MissingEquals {
                segment: "OrgUnit".into()
            }
        );
        assert!(error.to_string().contains("OrgUnit"));
    }

    #[test]
    fn unknown_attributes_and_missing_cn_are_errors() {
        assert_eq!(
            Subject::parse("CN=x,EMAIL=a@b").unwrap_err(),
            SubjectError::UnknownAttribute {
                key: "EMAIL".into()
            }
        );
        assert_eq!(
            Subject::parse("O=Org,C=PL").unwrap_err(),
            SubjectError::MissingCommonName
        );
        assert_eq!(Subject::parse("  ").unwrap_err(), SubjectError::Empty);
    }

    #[test]
    fn values_may_contain_equals_signs() {
        assert_eq!(Subject::parse("CN=a=b").unwrap().common_name, "a=b");
    }

    #[test]
    fn absurdly_long_subjects_are_refused() {
        let text = format!("CN={}", "x".repeat(10_000));
        assert!(matches!(
            Subject::parse(&text),
            Err(SubjectError::TooLong { .. })
        ));
    }
}
