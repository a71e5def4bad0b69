//! AMQP topic-exchange matching, for the in-process adapter.

/// Whether `routing_key` matches `pattern` (`*` = exactly one word, `#` = zero or more).
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = routing_key.split('.').collect();
    matches(&p, &k)
}

fn matches(p: &[&str], k: &[&str]) -> bool {
    match (p.first(), k.first()) {
        (None, None) => true,
        (Some(&"#"), _) => matches(&p[1..], k) || (!k.is_empty() && matches(p, &k[1..])),
        (Some(_), None) | (None, Some(_)) => false,
        (Some(&"*"), Some(_)) => matches(&p[1..], &k[1..]),
        (Some(a), Some(b)) => a == b && matches(&p[1..], &k[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches as m;

    #[test]
    fn topic_patterns() {
        assert!(m(
            "ten_a.identity.tenant.created",
            "ten_a.identity.tenant.created"
        ));
        assert!(m("*.identity.#", "ten_a.identity.tenant.created"));
        assert!(m("#", "anything.at.all"));
        assert!(m("ten_a.#", "ten_a"));
        assert!(!m("*.identity.*", "ten_a.identity.tenant.created"));
        assert!(m("*.identity.*.*", "ten_a.identity.tenant.created"));
        assert!(!m("ten_b.#", "ten_a.identity.x"));
        assert!(m("#.created", "ten_a.identity.tenant.created"));
        assert!(!m("*", "a.b"));
    }
}
