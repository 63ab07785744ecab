use super::ParseError;

/// An email address, trimmed and lower-cased so uniqueness is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(ParseError("is required".into()));
        }
        if email.len() > Self::MAX_LEN {
            return Err(ParseError(format!(
                "must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(ParseError("must look like name@example.com".into()));
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',');
        // And one the mailer can send to (no `a..b@`, no empty domain label):
        // an address taken here and refused when the email job runs would be
        // an invitation or a confirmation that never arrives.
        let deliverable = email.parse::<lettre::Address>().is_ok();
        if !(domain_ok && local_ok && deliverable) {
            return Err(ParseError("must look like name@example.com".into()));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn lower_cases_and_trims() {
        assert_eq!(
            Email::parse("  Ana@Example.COM ").unwrap().as_str(),
            "ana@example.com"
        );
    }

    #[test]
    fn takes_what_people_really_use() {
        for good in [
            "ana@example.com",
            "ana.maria+shop@mail.example.co.uk",
            "o'brien@example.ie",
            "x_y-z@sub-domain.example",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} should be taken");
        }
    }

    #[test]
    fn refuses_malformed_addresses() {
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a na@example.com",
            "ana@exa_mple.com",
            "<a>@x.io",
            "a..b@example.com",
            ".ana@example.com",
            "ana.@example.com",
            "ana@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
