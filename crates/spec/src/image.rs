//! Docker image references: `[registry[:port]/]name[:tag][@sha256:<64 hex>]`.
//!
//! The grammar is the one of the `distribution/reference` package the Docker Engine uses:
//! a first path component that contains `.` or `:` (or is `localhost`) names a registry;
//! repository components are lower-case letters and digits joined by `.`, `_`, `__` or
//! runs of `-`; a tag is up to 128 word characters, `.` and `-`, not starting with `.` or
//! `-`. Only `sha256` digests are accepted. Nothing is resolved or normalised here
//! (`node:22` stays `node:22`; the engine adds `docker.io/library/`).

/// Longest repository name (registry and path), as in the Docker Engine.
const MAX_NAME_LEN: usize = 255;
/// Longest tag.
const MAX_TAG_LEN: usize = 128;

/// A parsed image reference; the parts are as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host with an optional port, e.g. `ghcr.io` or `localhost:5000`.
    pub registry: Option<String>,
    /// Repository path, e.g. `library/node` or `acme/tools`.
    pub repository: String,
    /// Tag, e.g. `22-slim`.
    pub tag: Option<String>,
    /// Digest, `sha256:` and 64 lower-case hex digits.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference; the error says what is wrong, lower-case, for a diagnostic.
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        if text.is_empty() {
            return Err("it is empty".into());
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(if c == ' ' {
                "it contains a space".to_owned()
            } else {
                format!("it contains `{}`", c.escape_default())
            });
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(check_digest(digest)?)),
            None => (text, None),
        };
        // A `:` after the last `/` starts the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(check_tag(&rest[at + 1..])?))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err("it has no repository name".into());
        }
        if name.len() > MAX_NAME_LEN {
            return Err(format!("the name is longer than {MAX_NAME_LEN} characters"));
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let registry = match parts.first() {
            Some(first)
                if parts.len() > 1
                    && (first.contains('.') || first.contains(':') || *first == "localhost") =>
            {
                let host = check_registry(first)?;
                parts.remove(0);
                Some(host)
            }
            _ => None,
        };
        for part in &parts {
            check_component(part)?;
        }
        Ok(ImageRef {
            registry,
            repository: parts.join("/"),
            tag,
            digest,
        })
    }
}

fn check_digest(digest: &str) -> Result<String, String> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
        format!("the digest `{digest}` is not `sha256:` followed by 64 hexadecimal digits")
    })?;
    if hex.len() == 64
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        Ok(digest.to_owned())
    } else {
        Err(format!(
            "the digest `{digest}` is not `sha256:` followed by 64 lower-case hexadecimal digits"
        ))
    }
}

fn check_tag(tag: &str) -> Result<String, String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    let valid = chars.next().is_some_and(word)
        && chars.all(|c| word(c) || c == '.' || c == '-')
        && tag.len() <= MAX_TAG_LEN;
    if valid {
        Ok(tag.to_owned())
    } else if tag.is_empty() {
        Err("the tag after `:` is empty".into())
    } else {
        Err(format!(
            "the tag `{tag}` is not valid: letters, digits, `_`, `.` and `-`, not starting with `.` or `-`, at most {MAX_TAG_LEN} characters"
        ))
    }
}

/// `host[:port]`: dot-separated labels of letters, digits and inner `-`, or `[IPv6]`.
fn check_registry(registry: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "the registry `{registry}` is not a host name with an optional port, e.g. `ghcr.io` or `localhost:5000`"
        )
    };
    let (host, port) = if let Some(inner) = registry.strip_prefix('[') {
        let (v6, after) = inner.split_once(']').ok_or_else(bad)?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => ("", None),
            p => ("", Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.len() > 5)
    {
        return Err(bad());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !registry.starts_with('[') && !host.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(registry.to_owned())
}

/// One path component: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn check_component(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("the name has an empty path component (`//` or a `/` at an end)".into());
    }
    if part.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "`{part}` has upper-case letters; repository names are lower-case"
        ));
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes: Vec<char> = part.chars().collect();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        let c = bytes[i];
        if alnum(c) {
            expect_alnum = false;
            i += 1;
            continue;
        }
        if expect_alnum {
            break;
        }
        // A separator: `.`, `_`, `__` or one or more `-`.
        let len = match c {
            '.' => 1,
            '_' if bytes.get(i + 1) == Some(&'_') => 2,
            '_' => 1,
            '-' => bytes[i..].iter().take_while(|&&d| d == '-').count(),
            _ => {
                return Err(format!(
                    "`{part}` contains `{}`; repository names are lower-case letters, digits, `.`, `_` and `-`",
                    c.escape_default()
                ));
            }
        };
        i += len;
        expect_alnum = true;
    }
    if expect_alnum {
        return Err(format!(
            "`{part}` must start and end with a letter or digit, with one separator (`.`, `_`, `__` or `-`) between them"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn valid_references() {
        let r = ImageRef::parse("node:22").unwrap();
        assert_eq!(
            (r.registry, r.repository.as_str(), r.tag.as_deref()),
            (None, "node", Some("22"))
        );
        let r = ImageRef::parse("localhost:5000/acme/tool_x__y.z--w:1.2-rc_1").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.repository, "acme/tool_x__y.z--w");
        assert_eq!(r.tag.as_deref(), Some("1.2-rc_1"));
        let digest = format!("sha256:{}", "a1".repeat(32));
        let r = ImageRef::parse(&format!("ghcr.io/acme/api@{digest}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(r.tag, None);
        assert!(ImageRef::parse(&format!("alpine:3.20@{digest}")).is_ok());
        assert!(ImageRef::parse("[::1]:5000/x").is_ok());
        assert!(ImageRef::parse("registry.example.com/a/b/c").is_ok());
        // Without `.`, `:` or `localhost`, the first component is part of the path.
        let r = ImageRef::parse("acme/api").unwrap();
        assert_eq!((r.registry, r.repository.as_str()), (None, "acme/api"));
    }

    #[test]
    fn invalid_references() {
        for bad in [
            "",
            "Node:22",
            "node:",
            "node:-x",
            "node: 22",
            "node@sha256:abc",
            "node@md5:aaaa",
            &format!("node@sha256:{}", "A".repeat(64)),
            "acme//api",
            "acme/api/",
            "-api",
            "api-",
            "a..b",
            "a___b",
            "a/b$c",
            "ghcr.io:x/a",
            "ghcr-.io/a",
            "[::1/x",
            &format!("x:{}", "1".repeat(129)),
            &"a".repeat(256),
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
