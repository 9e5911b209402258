//! Words as search sees them: runs of letters and digits, lowercased, with
//! diacritics taken off, the way SQLite's `unicode61 remove_diacritics 2`
//! tokenizer cuts and folds them. The query is cut this way for both
//! stores, and the in-memory store cuts message text this way too.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The words of `text`, in order, folded.
pub(crate) fn words(text: &str) -> Vec<String> {
    let folded: String = text
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fold_case_and_diacritics() {
        assert_eq!(words("Zèbra, CROSSING!  x2"), ["zebra", "crossing", "x2"]);
        assert_eq!(words("plan.png"), ["plan", "png"]);
        assert!(words(" ,.- ").is_empty());
    }
}
