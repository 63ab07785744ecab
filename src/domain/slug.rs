use super::ParseError;

/// A URL-safe organization or agent handle: `acme`, `acme-support`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    pub const MAX_LEN: usize = 63;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let slug = raw.trim().to_ascii_lowercase();
        if slug.len() < 2 || slug.len() > Self::MAX_LEN {
            return Err(ParseError(format!(
                "must be 2 to {} characters long",
                Self::MAX_LEN
            )));
        }
        if !slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ParseError(
                "may contain only letters, digits and hyphens".into(),
            ));
        }
        if slug.starts_with('-') || slug.ends_with('-') || slug.contains("--") {
            return Err(ParseError(
                "cannot start or end with a hyphen or contain two in a row".into(),
            ));
        }
        Ok(Self(slug))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Slug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Slug;

    #[test]
    fn accepts_and_normalises_handles() {
        assert_eq!(
            Slug::parse(" Acme-Support ").unwrap().as_str(),
            "acme-support"
        );
    }

    #[test]
    fn rejects_unsafe_or_odd_handles() {
        for bad in [
            "",
            "a",
            "-acme",
            "acme-",
            "ac--me",
            "acme/../x",
            "ac me",
            &"x".repeat(64),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
