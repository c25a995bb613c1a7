//! Errors as one line of text, for reports.

/// An error and its causes on one line, each cause once: some errors (kube-rs's) already
/// print their source, which anyhow's `{:#}` would print again.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    for cause in std::iter::successors(error.source(), |e| e.source()) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}
