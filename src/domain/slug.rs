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

    /// A slug made from a name the user typed: ASCII letters and digits
    /// kept, each run of anything else one hyphen, cut to 40 characters
    /// without a hyphen at either end; `fallback` when too little is left.
    pub fn from_name(name: &str, fallback: &'static str) -> Self {
        let words: Vec<String> = name
            .to_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        let joined: String = words.join("-").chars().take(40).collect();
        Self::parse(joined.trim_end_matches('-')).unwrap_or_else(|_| Self(fallback.into()))
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
    fn names_become_slugs_that_parse() {
        for (name, slug) in [
            ("Harbor Bikes", "harbor-bikes"),
            ("  Café & Co.  ", "caf-co"),
            ("--Support--", "support"),
            ("!", "agent"),
            ("é", "agent"),
        ] {
            assert_eq!(Slug::from_name(name, "agent").as_str(), slug, "{name:?}");
        }
        // Cut at 40 characters right after a word: no hyphen left at the end.
        let long = format!("{} b", "a".repeat(39));
        let slug = Slug::from_name(&long, "agent");
        assert_eq!(slug.as_str(), "a".repeat(39));
        assert!(Slug::parse(slug.as_str()).is_ok());
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
