//! bm25 over one agent's own passages, for the backend whose index mixes
//! organizations (see `db::models::knowledge::Found`): the same formula and
//! weights as SQLite's FTS5 (k1 1.2, b 0.75, a heading counting twice), with
//! every count taken from the agent's passages alone.

use crate::db::models::Passage;

use super::stem;
use super::text::search_fold;

const K1: f64 = 1.2;
const B: f64 = 0.75;
const HEADING_WEIGHT: f64 = 2.0;

/// How often each term occurs in a passage (headings weighed double), and
/// the passage's length in words.
struct Counts {
    hits: Vec<f64>,
    words: usize,
}

fn count(stems: &[&str], passage: &Passage) -> Counts {
    let mut hits = vec![0.0; stems.len()];
    let mut words = 0;
    let heading = passage.heading.as_deref().unwrap_or_default();
    for (text, weight) in [(heading, HEADING_WEIGHT), (passage.content.as_str(), 1.0)] {
        for word in search_fold(text)
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            words += 1;
            for (hit, stem) in hits.iter_mut().zip(stems) {
                if word.starts_with(stem) {
                    *hit += weight;
                }
            }
        }
    }
    Counts { hits, words }
}

/// `passages` best first, their `rank` the bm25 score. `agent_passages` is
/// how many passages the agent has in all, the `N` of the rarity weights.
pub fn bm25(terms: &[String], mut passages: Vec<Passage>, agent_passages: i64) -> Vec<Passage> {
    if passages.is_empty() {
        return passages;
    }
    let stems: Vec<&str> = terms.iter().map(|t| stem(t)).collect();
    let counts: Vec<Counts> = passages.iter().map(|p| count(&stems, p)).collect();
    let total = (agent_passages.max(0) as f64).max(passages.len() as f64);
    let average = counts.iter().map(|c| c.words as f64).sum::<f64>() / counts.len() as f64;
    let average = average.max(1.0);
    // How many of the agent's passages hold each term: the matches are all of
    // them (up to the search's bound).
    let rarity: Vec<f64> = (0..stems.len())
        .map(|i| {
            let holding = counts.iter().filter(|c| c.hits[i] > 0.0).count() as f64;
            let idf = ((total - holding + 0.5) / (holding + 0.5)).ln();
            // As FTS5 does: a word in most passages still counts a little.
            if idf > 0.0 { idf } else { 1e-6 }
        })
        .collect();
    for (passage, counts) in passages.iter_mut().zip(&counts) {
        let norm = K1 * (1.0 - B + B * counts.words as f64 / average);
        passage.rank = counts
            .hits
            .iter()
            .zip(&rarity)
            .map(|(&f, idf)| idf * f * (K1 + 1.0) / (f + norm))
            .sum();
    }
    // Stable: equal scores keep the order the passages were written in.
    passages.sort_by(|a, b| b.rank.total_cmp(&a.rank));
    passages
}

#[cfg(test)]
mod tests {
    use super::bm25;
    use crate::db::models::Passage;
    use crate::domain::DocumentId;

    fn passage(id: i64, heading: &str, content: &str) -> Passage {
        Passage {
            chunk_id: id,
            document_id: DocumentId(id),
            title: format!("Doc {id}"),
            heading: Some(heading.into()),
            content: content.into(),
            rank: 0.0,
        }
    }

    fn order(terms: &[&str], passages: Vec<Passage>, total: i64) -> Vec<i64> {
        let terms: Vec<String> = terms.iter().map(|t| t.to_string()).collect();
        bm25(&terms, passages, total)
            .iter()
            .map(|p| p.chunk_id)
            .collect()
    }

    #[test]
    fn a_rarer_word_weighs_more() {
        // "warranty" is in every passage of the agent, "grinder" in one: the
        // passage that says "warranty" most still comes after it.
        let passages = vec![
            passage(1, "Warranty", "Warranty, warranty: the warranty."),
            passage(2, "Grinders", "The grinder is quiet."),
            passage(3, "Claims", "A warranty claim."),
        ];
        assert_eq!(order(&["warranty", "grinder"], passages, 3)[0], 2);
    }

    #[test]
    fn more_hits_and_headings_count_more() {
        let passages = vec![
            passage(1, "Shipping", "We ship beans weekly."),
            passage(2, "Beans", "Beans, beans and more beans."),
        ];
        assert_eq!(order(&["beans"], passages, 5), vec![2, 1]);
        let passages = vec![
            passage(1, "Returns", "About our policy."),
            passage(2, "Policy", "Returns take a week."),
        ];
        assert_eq!(order(&["returns"], passages, 5), vec![1, 2], "the heading");
    }

    #[test]
    fn a_long_passage_is_weighed_down() {
        let long = format!("Refunds are possible. {}", "More words here. ".repeat(40));
        let passages = vec![
            passage(1, "Money", &long),
            passage(2, "Money", "Refunds are possible."),
        ];
        assert_eq!(order(&["refunds"], passages, 5), vec![2, 1]);
    }

    #[test]
    fn ties_keep_the_written_order() {
        let passages = vec![
            passage(1, "One", "Roast dates on every bag."),
            passage(2, "Two", "Roast dates on every box."),
        ];
        assert_eq!(order(&["roast"], passages, 2), vec![1, 2]);
        assert!(order(&["roast"], Vec::new(), 0).is_empty());
    }
}
