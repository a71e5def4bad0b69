//! Which service answers which public path. The first matching rule wins, so more specific
//! rules come first.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Identity,
    Consent,
    Ledger,
    ObjectStore,
    Audit,
}

/// `*` matches one path segment; a trailing `**` matches any remainder (including none).
const RULES: &[(&str, Upstream)] = &[
    ("/v1/patients/*/records/**", Upstream::ObjectStore),
    ("/v1/records/**", Upstream::ObjectStore),
    ("/v1/admin/keys/**", Upstream::ObjectStore),
    ("/v1/admin/token-keys/**", Upstream::Identity),
    ("/v1/tenants/**", Upstream::Identity),
    ("/v1/institutions/**", Upstream::Identity),
    ("/v1/users/**", Upstream::Identity),
    ("/v1/apps/**", Upstream::Identity),
    ("/v1/oauth/**", Upstream::Identity),
    ("/v1/auth/**", Upstream::Identity),
    ("/v1/patients/**", Upstream::Identity),
    ("/v1/certificates/**", Upstream::Identity),
    ("/.well-known/**", Upstream::Identity),
    ("/v1/policy/**", Upstream::Consent),
    ("/v1/grants/**", Upstream::Consent),
    ("/v1/referrals/**", Upstream::Consent),
    ("/v1/decisions/**", Upstream::Consent),
    ("/v1/break-glass/**", Upstream::Consent),
    ("/v1/ledger/**", Upstream::Ledger),
    ("/v1/audit/**", Upstream::Audit),
];

/// Everything needs a valid access token except getting one and the key discovery.
pub fn requires_token(method: &actix_web::http::Method, path: &str) -> bool {
    use actix_web::http::Method;
    let public = matches!(
        (method, path),
        (&Method::POST, "/v1/oauth/token")
            | (&Method::GET, "/.well-known/jwks.json")
            | (&Method::GET, "/.well-known/openid-configuration")
            | (&Method::POST, "/v1/auth/login")
            | (&Method::POST, "/v1/auth/refresh")
            | (&Method::POST, "/v1/auth/password-reset")
    );
    !public
}

/// The endpoints where an anonymous caller makes a service verify a password, a refresh
/// token or a password-reset token: throttled per client address at the gateway, before
/// anything is forwarded.
pub fn is_credential_check(method: &actix_web::http::Method, path: &str) -> bool {
    method == actix_web::http::Method::POST
        && matches!(
            path,
            "/v1/auth/login" | "/v1/auth/refresh" | "/v1/auth/password-reset"
        )
}

/// Largest body of a request that needs no token (credentials, a token request): a few
/// hundred bytes in practice; anything larger is refused before it is read or forwarded.
pub const ANONYMOUS_BODY_LIMIT: u64 = 16 * 1024;

pub fn route(path: &str) -> Option<Upstream> {
    // Refuse paths that could confuse an upstream's router.
    if path.contains("/../") || path.ends_with("/..") || path.contains("//") {
        return None;
    }
    RULES
        .iter()
        .find(|(pattern, _)| matches(pattern, path))
        .map(|(_, upstream)| *upstream)
}

fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.trim_start_matches('/').split('/');
    let mut s = path.trim_start_matches('/').split('/').peekable();
    loop {
        match (p.next(), s.peek()) {
            (Some("**"), _) => return true,
            (None, None) => return true,
            (None, Some(_)) => return false,
            (Some(_), None) => return false,
            (Some("*"), Some(seg)) if !seg.is_empty() => {}
            (Some(lit), Some(seg)) if lit == *seg => {}
            _ => return false,
        }
        s.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/v1/patients/pat_1/records"),
            Some(Upstream::ObjectStore)
        );
        assert_eq!(route("/v1/patients/pat_1"), Some(Upstream::Identity));
        assert_eq!(route("/v1/patients"), Some(Upstream::Identity));
        assert_eq!(
            route("/v1/records/rec_1/content"),
            Some(Upstream::ObjectStore)
        );
        assert_eq!(route("/v1/grants"), Some(Upstream::Consent));
        assert_eq!(route("/v1/ledger/ten_1/checkpoint"), Some(Upstream::Ledger));
        assert_eq!(route("/v1/audit/events"), Some(Upstream::Audit));
        assert_eq!(route("/.well-known/jwks.json"), Some(Upstream::Identity));
        assert_eq!(route("/v1/recordsX"), None);
        assert_eq!(route("/v2/records"), None);
        assert_eq!(route("/internal/info"), None);
        assert_eq!(route("/v1/records/../internal"), None);
        assert_eq!(route("/v1//records"), None);
    }
}

/// The methods the public document declares for each path template, so that the gateway
/// answers an undeclared method with `405` and the `Allow` header RFC 9110 requires —
/// before the token is checked or anything is forwarded.
#[derive(Debug, Clone, Default)]
pub struct DocumentedMethods {
    templates: Vec<(Vec<String>, Vec<String>)>,
}

impl DocumentedMethods {
    /// From the OpenAPI document's `paths`.
    pub fn from_document(doc: &serde_json::Value) -> Self {
        const METHODS: [&str; 8] = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        let mut templates = Vec::new();
        if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
            for (path, item) in paths {
                let segments = path
                    .trim_start_matches('/')
                    .split('/')
                    .map(str::to_string)
                    .collect();
                let methods = METHODS
                    .iter()
                    .filter(|m| item.get(**m).is_some())
                    .map(|m| m.to_uppercase())
                    .collect();
                templates.push((segments, methods));
            }
        }
        Self { templates }
    }

    /// The methods declared for `path` (`HEAD` wherever `GET` is), or `None` when no
    /// documented template matches it.
    pub fn allowed(&self, path: &str) -> Option<Vec<String>> {
        let mut allowed: Vec<String> = Vec::new();
        let mut matched = false;
        for (template, methods) in &self.templates {
            if fits(template, path) {
                matched = true;
                for m in methods {
                    if !allowed.contains(m) {
                        allowed.push(m.clone());
                    }
                }
            }
        }
        if allowed.iter().any(|m| m == "GET") && !allowed.iter().any(|m| m == "HEAD") {
            allowed.push("HEAD".into());
        }
        matched.then_some(allowed)
    }

    /// The `Allow` header's value when `path` is documented and `method` is not declared for
    /// it; `None` otherwise. Every request passes here: it allocates only to refuse.
    pub fn refusal(&self, path: &str, method: &str) -> Option<String> {
        let mut matched = false;
        for (template, methods) in &self.templates {
            if fits(template, path) {
                matched = true;
                let declared = |m: &str| methods.iter().any(|d| d == m);
                if declared(method) || (method == "HEAD" && declared("GET")) {
                    return None;
                }
            }
        }
        if !matched {
            return None;
        }
        self.allowed(path).map(|a| a.join(", "))
    }
}

/// Whether `path` fits `template` (a `{name}` segment matches any non-empty segment).
fn fits(template: &[String], path: &str) -> bool {
    let mut parts = path.trim_start_matches('/').split('/');
    for t in template {
        match parts.next() {
            Some(p) if t == p => {}
            Some(p) if t.starts_with('{') && t.ends_with('}') && !p.is_empty() => {}
            _ => return false,
        }
    }
    parts.next().is_none()
}

#[cfg(test)]
mod documented_tests {
    #![allow(clippy::unwrap_used)]
    use super::DocumentedMethods;

    #[test]
    fn undeclared_methods_are_known_per_template() {
        let doc = serde_json::json!({"paths": {
            "/v1/records": {"post": {}},
            "/v1/records/{record_id}": {"get": {}, "delete": {}},
            "/v1/records/{record_id}/content": {"get": {}},
        }});
        let d = DocumentedMethods::from_document(&doc);
        assert_eq!(d.allowed("/v1/records").unwrap(), vec!["POST"]);
        assert_eq!(
            d.allowed("/v1/records/rec_1").unwrap(),
            vec!["GET", "DELETE", "HEAD"]
        );
        assert_eq!(
            d.allowed("/v1/records/rec_1/content").unwrap(),
            vec!["GET", "HEAD"]
        );
        assert!(d.allowed("/v1/records/rec_1/other").is_none());
        assert!(d.allowed("/v1/records//content").is_none());
        assert_eq!(d.refusal("/v1/records/rec_1", "GET"), None);
        assert_eq!(d.refusal("/v1/records/rec_1", "HEAD"), None);
        assert_eq!(d.refusal("/v1/records/rec_1/other", "PUT"), None);
        assert_eq!(
            d.refusal("/v1/records/rec_1", "PUT").as_deref(),
            Some("GET, DELETE, HEAD")
        );
    }
}
