//! Small pieces of the sentences people read.

/// The plural ending for `n` of something: "1 minute", "3 minutes".
pub fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(format!("1 minute{}", plural(1)), "1 minute");
        assert_eq!(format!("0 minute{}", plural(0)), "0 minutes");
        assert_eq!(format!("2 minute{}", plural(2)), "2 minutes");
    }
}
