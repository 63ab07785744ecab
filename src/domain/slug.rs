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
    /// kept, each run of anything else one hyphen, as many whole words as fit
    /// in 40 characters (a first word longer than that is cut); `fallback`
    /// when too little is left.
    pub fn from_name(name: &str, fallback: &'static str) -> Self {
        let folded: String = name.to_lowercase().chars().map(fold_latin).collect();
        let words: Vec<String> = folded
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        // Whole words: "…-of-greater-co" reads as a typo in every link.
        let mut joined = String::new();
        for word in &words {
            let needed = word.len() + usize::from(!joined.is_empty());
            if joined.len() + needed > 40 {
                if joined.is_empty() {
                    joined = word.chars().take(40).collect();
                }
                break;
            }
            if !joined.is_empty() {
                joined.push('-');
            }
            joined.push_str(word);
        }
        Self::parse(&joined).unwrap_or_else(|_| Self(fallback.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This slug, else the first of `…-1`, `…-2`, … that `taken` calls free
    /// (made from a name, which is at most 40 characters, so each parses);
    /// past a thousand, one with a random suffix.
    pub fn first_free<E>(
        &self,
        mut taken: impl FnMut(&Slug) -> Result<bool, E>,
    ) -> Result<Slug, E> {
        for n in 0..1000 {
            let candidate = match n {
                0 => self.clone(),
                n => match Self::parse(&format!("{}-{n}", self.0)) {
                    Ok(slug) => slug,
                    Err(_) => break,
                },
            };
            if !taken(&candidate)? {
                return Ok(candidate);
            }
        }
        let suffix = hex::encode(rand::random::<[u8; 4]>());
        let base: String = self.0.chars().take(Self::MAX_LEN - 9).collect();
        Ok(Self(format!("{}-{suffix}", base.trim_end_matches('-'))))
    }
}

/// A lower-case Latin letter with a diacritic as the plain letters people
/// write it with in an address ("café zürich" → "cafe zurich"); any other
/// character as it is.
fn fold_latin(c: char) -> String {
    let plain = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        other => return other.to_string(),
    };
    plain.to_string()
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
    fn the_first_free_slug_is_numbered_after_the_taken_ones() {
        let base = Slug::parse("harbor").unwrap();
        let taken = ["harbor", "harbor-1", "harbor-2"];
        let free = base
            .first_free(|s| Ok::<_, ()>(taken.contains(&s.as_str())))
            .unwrap();
        assert_eq!(free.as_str(), "harbor-3");
        let free = base.first_free(|_| Ok::<_, ()>(false)).unwrap();
        assert_eq!(free.as_str(), "harbor");
        // All numbered ones taken: a random suffix that still parses.
        let long = Slug::parse(&"a".repeat(63)).unwrap();
        let free = long.first_free(|_| Ok::<_, ()>(true)).unwrap();
        assert!(Slug::parse(free.as_str()).is_ok(), "{free:?}");
        assert_ne!(free, long);
    }

    #[test]
    fn names_become_slugs_that_parse() {
        for (name, slug) in [
            ("Harbor Bikes", "harbor-bikes"),
            ("  Café & Co.  ", "cafe-co"),
            ("Café Zürich", "cafe-zurich"),
            ("Straße Łódź Ørsted Œuvre", "strasse-lodz-orsted-oeuvre"),
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
        assert_eq!(
            Slug::from_name("Nordic Knitwear Collective of Greater Copenhagen", "org").as_str(),
            "nordic-knitwear-collective-of-greater"
        );
        assert_eq!(
            Slug::from_name(&"x".repeat(60), "org").as_str(),
            "x".repeat(40)
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
