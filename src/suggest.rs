//! "Did you mean" suggestions for mistyped names (tasks, jobs), by edit distance.

/// Levenshtein distance between two strings, by characters.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// `"; did you mean `x`? known: a, b"`-style tail for an unknown-name error.
pub fn hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> String {
    let known: Vec<&str> = candidates.clone().into_iter().collect();
    let mut s = String::new();
    if let Some(c) = closest(name, candidates) {
        s.push_str(&format!("; did you mean `{c}`?"));
    }
    if known.is_empty() {
        s.push_str("; no tasks are registered");
    } else {
        s.push_str(&format!(" (known: {})", known.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_close_names_only() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(
            closest("sync_emial", ["sync_emails", "daily_report"]),
            Some("sync_emails")
        );
        assert_eq!(closest("zzz", ["sync_emails", "daily_report"]), None);
    }
}
