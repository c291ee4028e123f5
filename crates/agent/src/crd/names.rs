//! Kubernetes object names (DNS-1123), checked in one place: the settings'
//! `namespace/name` values and the Applications' names both obey them.

/// Which DNS-1123 form a name must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameForm {
    /// A label: at most 63 characters, no `.` (a namespace).
    Label,
    /// A subdomain: at most 253 characters, labels joined by `.` (most
    /// objects, Applications and Secrets among them).
    Subdomain,
}

/// Why a name is not of its form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {max} characters")]
    TooLong { max: usize },
    #[error("it may contain only lower-case letters, digits and '-'{}", if *.dots { " or '.'" } else { "" })]
    Characters { dots: bool },
    #[error("it must start and end with a letter or digit{}", if *.dots { ", also around each '.'" } else { "" })]
    Edges { dots: bool },
}

impl NameForm {
    pub fn max_len(self) -> usize {
        match self {
            NameForm::Label => 63,
            NameForm::Subdomain => 253,
        }
    }

    fn dots(self) -> bool {
        self == NameForm::Subdomain
    }
}

/// Checks `name` against the DNS-1123 rules of `form`.
pub fn check_name(name: &str, form: NameForm) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > form.max_len() {
        return Err(NameProblem::TooLong {
            max: form.max_len(),
        });
    }
    let dots = form.dots();
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (c == '.' && dots);
    if !name.chars().all(allowed) {
        return Err(NameProblem::Characters { dots });
    }
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !name
        .split('.')
        .all(|part| alphanumeric(part.chars().next()) && alphanumeric(part.chars().last()))
    {
        return Err(NameProblem::Edges { dots });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_follow_dns_1123_around_each_dot() {
        for good in ["a", "a.b-c.d", "mp-shop-1", &"a".repeat(253)] {
            assert_eq!(check_name(good, NameForm::Subdomain), Ok(()), "{good}");
        }
        for (bad, problem) in [
            ("", NameProblem::Empty),
            (&*"a".repeat(254), NameProblem::TooLong { max: 253 }),
            ("Shop", NameProblem::Characters { dots: true }),
            ("a_b", NameProblem::Characters { dots: true }),
            ("a..b", NameProblem::Edges { dots: true }),
            ("a.-b", NameProblem::Edges { dots: true }),
            ("-a", NameProblem::Edges { dots: true }),
            ("a.", NameProblem::Edges { dots: true }),
        ] {
            assert_eq!(check_name(bad, NameForm::Subdomain), Err(problem), "{bad}");
        }
    }

    #[test]
    fn labels_take_no_dots_and_63_characters() {
        assert_eq!(check_name("kyma-system", NameForm::Label), Ok(()));
        assert_eq!(
            check_name("a.b", NameForm::Label),
            Err(NameProblem::Characters { dots: false })
        );
        assert_eq!(
            check_name(&"a".repeat(64), NameForm::Label),
            Err(NameProblem::TooLong { max: 63 })
        );
        assert_eq!(
            NameProblem::Characters { dots: false }.to_string(),
            "it may contain only lower-case letters, digits and '-'"
        );
    }
}
