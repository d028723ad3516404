//! "Did you mean" suggestions for mistyped names (tasks, jobs, queues, keys, zones),
//! by optimal-string-alignment edit distance: the one implementation the whole crate
//! uses.

/// Optimal-string-alignment edit distance (Levenshtein plus adjacent transpositions).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: i-2, i-1, i.
    let mut prev2 = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `input`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (input.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(input, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` when a candidate is close, else the empty string.
pub(crate) fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    closest(input, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// Names joined with ", ", at most `max` of them and then "and N more".
pub(crate) fn list_names<'a>(names: impl IntoIterator<Item = &'a str>, max: usize) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.len() <= max {
        names.join(", ")
    } else {
        format!(
            "{}, and {} more",
            names[..max].join(", "),
            names.len() - max
        )
    }
}

/// The tail of an unknown-name error: a suggestion if one is close, then the known
/// names (`what` says what they are, e.g. "tasks"), or `none` when there are none.
pub(crate) fn hint(name: &str, known: &[&str], what: &str, none: &str) -> String {
    hint_listing(
        name,
        known,
        &format!("known {what}: {}", list_names(known.iter().copied(), 20)),
        none,
    )
}

/// [`hint`] where the suggestion is picked from more than the list shows (a node is
/// suggested by name or id, but ids are too long to list): a suggestion if one of
/// `candidates` is close, then `listing` as given, or `none` when there are no
/// candidates.
pub(crate) fn hint_listing(name: &str, candidates: &[&str], listing: &str, none: &str) -> String {
    if candidates.is_empty() {
        return format!("; {none}");
    }
    let dym = did_you_mean(name, candidates.iter().copied());
    let sep = if dym.is_empty() { ";" } else { "" };
    format!("{dym}{sep} {listing}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_transpositions_as_one() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("emial", "email"), 1);
        assert_eq!(edit_distance("sync_emial", "sync_emails"), 2);
    }

    #[test]
    fn closest_only_suggests_near_names() {
        let names = ["sync_emails", "daily_report"];
        assert_eq!(closest("sync_emial", names), Some("sync_emails"));
        assert_eq!(closest("daily_reprot", names), Some("daily_report"));
        assert_eq!(closest("cleanup", names), None);
    }

    #[test]
    fn list_names_truncates() {
        assert_eq!(list_names(["a", "b"], 5), "a, b");
        assert_eq!(list_names(["a", "b", "c"], 2), "a, b, and 1 more");
    }

    #[test]
    fn hints() {
        assert_eq!(
            hint("reprot", &["report", "sync"], "jobs", "there are no jobs"),
            "; did you mean `report`? known jobs: report, sync"
        );
        assert_eq!(
            hint("x", &["report"], "jobs", "there are no jobs"),
            "; known jobs: report"
        );
        assert_eq!(
            hint("x", &[], "jobs", "there are no jobs"),
            "; there are no jobs"
        );
        assert_eq!(
            hint_listing("0192a", &["a", "0192b"], "known: a", "none"),
            "; did you mean `0192b`? known: a"
        );
    }
}
