//! The subject the Connector hands out (`O=..,OU=..,L=..,ST=..,C=..,CN=..`)
//! and expects in a CSR.

use rcgen::{DistinguishedName, DnType};

/// The subject the Connector hands out and checks in CSRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub common_name: String,
    pub country: String,
    pub organization: String,
    pub organizational_unit: String,
    pub locality: String,
    pub province: String,
}

impl Subject {
    /// `O=..,OU=..,L=..,ST=..,C=..,CN=..`, the Connector's format and order.
    pub fn to_compass_string(&self) -> String {
        format!(
            "O={},OU={},L={},ST={},C={},CN={}",
            self.organization,
            self.organizational_unit,
            self.locality,
            self.province,
            self.country,
            self.common_name
        )
    }

    /// Parses the Connector's subject string (any order; values may be empty).
    pub fn parse(s: &str) -> Result<Subject, String> {
        let mut subject = Subject {
            common_name: String::new(),
            country: String::new(),
            organization: String::new(),
            organizational_unit: String::new(),
            locality: String::new(),
            province: String::new(),
        };
        for part in s.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("subject segment {part:?} has no '='"))?;
            let slot = match key.trim() {
                "CN" => &mut subject.common_name,
                "C" => &mut subject.country,
                "O" => &mut subject.organization,
                "OU" => &mut subject.organizational_unit,
                "L" => &mut subject.locality,
                "ST" => &mut subject.province,
                other => return Err(format!("unknown subject attribute {other:?}")),
            };
            *slot = value.trim().to_string();
        }
        Ok(subject)
    }

    pub fn distinguished_name(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.organization.as_str());
        dn.push(
            DnType::OrganizationalUnitName,
            self.organizational_unit.as_str(),
        );
        dn.push(DnType::LocalityName, self.locality.as_str());
        dn.push(DnType::StateOrProvinceName, self.province.as_str());
        dn.push(DnType::CountryName, self.country.as_str());
        dn.push(DnType::CommonName, self.common_name.as_str());
        dn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::tests::subject;

    #[test]
    fn subject_string_round_trips_in_the_connectors_order() {
        let s = subject("rt-1");
        assert_eq!(
            s.to_compass_string(),
            "O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN=rt-1"
        );
        assert_eq!(Subject::parse(&s.to_compass_string()).unwrap(), s);
    }

    #[test]
    fn subject_parsing_refuses_segments_without_equals_sign() {
        assert!(Subject::parse("O=Org,OU").unwrap_err().contains("no '='"));
    }
}
