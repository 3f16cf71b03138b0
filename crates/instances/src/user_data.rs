//! UserData as the ECS-optimized AMI reads it: the cluster an instance joins and the agent
//! settings it gets, from the lines its UserData writes to `/etc/ecs/ecs.config`.
//!
//! What is recognised (the forms the ECS developer guide and common templates use):
//! * a shell line that writes to `/etc/ecs/ecs.config` (`echo ECS_CLUSTER=web >>
//!   /etc/ecs/ecs.config`, quoted or not, `echo -e "A=1\nB=2" >> ...`, `printf`,
//!   `| tee -a /etc/ecs/ecs.config`): each of its words that is an `ECS_*=` assignment, after
//!   shell quoting is removed (`\n` inside a word separates assignments);
//! * a plain `ECS_NAME=value` line (the ecs.config format itself, as in a heredoc into the
//!   file, a cloud-config `content:` block, or UserData that is just the config): the rest of
//!   the line is the value, one pair of surrounding quotes removed;
//! * comments (`#...`, the `#!/bin/bash` line included) and every other line are ignored.
//!
//! Later assignments win, as in the file. `ECS_CLUSTER` names the cluster (default
//! `default`, as the agent's); `ECS_INSTANCE_ATTRIBUTES` is a JSON object of string values
//! (custom attributes); `ECS_RESERVED_MEMORY` replaces the memory reserve
//! ([`crate::types::RESERVED_MEMORY_MIB`]). Every `ECS_*` variable seen is kept in
//! [`EcsConfig::variables`].
//!
//! Refused as `InvalidParameterValue` naming `UserData` (where EC2 would accept and the
//! instance would then fail to join, Berth refuses up front): UserData that is not base64,
//! more than 16 KiB decoded (EC2's limit), gzip-compressed (not supported), not UTF-8, a
//! cluster name ECS would refuse, attributes that are not a JSON object of strings, a
//! reserve that is not a number of MiB.

use std::collections::BTreeMap;

use base64::Engine;

use crate::InstanceError;

/// The cluster an agent joins when the UserData names none.
pub const DEFAULT_CLUSTER: &str = "default";
/// EC2's limit on UserData, before base64.
pub const MAX_USER_DATA_BYTES: usize = 16 * 1024;
/// The file whose writes are read.
const ECS_CONFIG: &str = "/etc/ecs/ecs.config";

/// What the UserData configures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcsConfig {
    pub cluster: String,
    /// `ECS_INSTANCE_ATTRIBUTES`, sorted by name.
    pub attributes: Vec<(String, String)>,
    /// `ECS_RESERVED_MEMORY`.
    pub reserved_memory_mib: Option<u32>,
    /// Every `ECS_*` assignment, the last of each name.
    pub variables: BTreeMap<String, String>,
}

impl Default for EcsConfig {
    fn default() -> Self {
        Self {
            cluster: DEFAULT_CLUSTER.into(),
            attributes: vec![],
            reserved_memory_mib: None,
            variables: BTreeMap::new(),
        }
    }
}

fn bad(message: impl Into<String>) -> InstanceError {
    InstanceError::invalid("UserData", message)
}

/// Decodes base64 UserData (as RunInstances carries it) and reads it; `None` or empty: the
/// defaults.
pub fn parse_base64(user_data: Option<&str>) -> Result<EcsConfig, InstanceError> {
    let Some(b64) = user_data.filter(|s| !s.trim().is_empty()) else {
        return Ok(EcsConfig::default());
    };
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| bad("Invalid BASE64 encoding of user data."))?;
    parse_bytes(&raw)
}

/// Reads decoded UserData.
pub fn parse_bytes(raw: &[u8]) -> Result<EcsConfig, InstanceError> {
    if raw.len() > MAX_USER_DATA_BYTES {
        return Err(bad(format!(
            "User data is limited to {MAX_USER_DATA_BYTES} bytes; got {}.",
            raw.len()
        )));
    }
    if raw.starts_with(&[0x1f, 0x8b]) {
        return Err(bad("Gzip-compressed user data is not supported by Berth; send it as text."));
    }
    let text = std::str::from_utf8(raw).map_err(|_| bad("User data must be UTF-8 text."))?;
    parse_text(text)
}

/// Reads UserData text.
pub fn parse_text(text: &str) -> Result<EcsConfig, InstanceError> {
    let mut variables = BTreeMap::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = plain_assignment(t) {
            variables.insert(name, value);
        } else if t.contains(ECS_CONFIG) {
            for word in shell_words(t) {
                for piece in word.split("\\n") {
                    if let Some((name, value)) = split_assignment(piece) {
                        variables.insert(name.to_string(), value.to_string());
                    }
                }
            }
        }
    }
    let mut config = EcsConfig::default();
    if let Some(c) = variables.get("ECS_CLUSTER") {
        if !valid_cluster_name(c) {
            return Err(bad(format!(
                "ECS_CLUSTER '{c}' is not a valid cluster name (1-255 letters, digits, hyphens and underscores)."
            )));
        }
        config.cluster = c.clone();
    }
    if let Some(a) = variables.get("ECS_INSTANCE_ATTRIBUTES") {
        let parsed: BTreeMap<String, String> = serde_json::from_str(a).map_err(|e| {
            bad(format!("ECS_INSTANCE_ATTRIBUTES must be a JSON object of strings: {e}."))
        })?;
        if let Some(k) = parsed.keys().find(|k| k.is_empty() || k.len() > 128) {
            return Err(bad(format!(
                "ECS_INSTANCE_ATTRIBUTES: attribute name '{k}' must be 1-128 characters."
            )));
        }
        config.attributes = parsed.into_iter().collect();
    }
    if let Some(r) = variables.get("ECS_RESERVED_MEMORY") {
        config.reserved_memory_mib = Some(r.parse().map_err(|_| {
            bad(format!("ECS_RESERVED_MEMORY '{r}' is not a whole number of MiB."))
        })?);
    }
    config.variables = variables;
    Ok(config)
}

/// ECS's cluster name rule.
fn valid_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `ECS_NAME=value...` (a line of the config file itself): the value is the rest of the line,
/// one pair of surrounding quotes removed.
fn plain_assignment(line: &str) -> Option<(String, String)> {
    let (name, value) = split_assignment(line)?;
    let v = value.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| v.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)))
        .unwrap_or(v);
    Some((name.to_string(), unquoted.to_string()))
}

/// `ECS_NAME=value` with `ECS_NAME` upper case letters, digits and underscores.
fn split_assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    let ok = name.starts_with("ECS_")
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    ok.then_some((name, value))
}

/// The words of a shell line with quoting removed: `'...'` literal, `"..."` with `\"`, `\\`,
/// `\$` and `` \` `` unescaped (other backslashes kept, so `\n` stays two characters),
/// unquoted `\x` is `x`; unquoted whitespace and `>`, `<`, `|`, `;`, `&` end a word.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = vec![];
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&e @ ('"' | '\\' | '$' | '`')) => {
                                cur.push(e);
                                chars.next();
                            }
                            _ => cur.push('\\'),
                        },
                        _ => cur.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(d) = chars.next() {
                    cur.push(d);
                }
            }
            c if c.is_whitespace() || matches!(c, '>' | '<' | '|' | ';' | '&') => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn cluster_from_the_forms_userdata_takes() {
        let table: &[(&str, &str)] = &[
            ("", "default"),
            ("#!/bin/bash\n", "default"),
            ("#!/bin/bash\necho ECS_CLUSTER=web >> /etc/ecs/ecs.config\n", "web"),
            ("#!/bin/bash\necho \"ECS_CLUSTER=web\" >> /etc/ecs/ecs.config", "web"),
            ("#!/bin/bash\necho 'ECS_CLUSTER=web' >> /etc/ecs/ecs.config", "web"),
            ("echo ECS_CLUSTER=web>>/etc/ecs/ecs.config", "web"),
            ("echo ECS_CLUSTER=web | sudo tee -a /etc/ecs/ecs.config", "web"),
            (
                "echo -e \"ECS_CLUSTER=a\\nECS_ENABLE_TASK_IAM_ROLE=true\" >> /etc/ecs/ecs.config",
                "a",
            ),
            ("printf 'ECS_LOGLEVEL=debug\\nECS_CLUSTER=p\\n' >> /etc/ecs/ecs.config", "p"),
            ("ECS_CLUSTER=plain", "plain"),
            ("  ECS_CLUSTER=\"quoted\"  ", "quoted"),
            (
                "#!/bin/bash\ncat <<'EOF' >> /etc/ecs/ecs.config\nECS_CLUSTER=heredoc\nECS_LOGLEVEL=info\nEOF\n",
                "heredoc",
            ),
            (
                "#cloud-config\nwrite_files:\n  - path: /etc/ecs/ecs.config\n    content: |\n      ECS_CLUSTER=cloudinit\n",
                "cloudinit",
            ),
            // Later assignments win, as in the file.
            ("ECS_CLUSTER=one\necho ECS_CLUSTER=two >> /etc/ecs/ecs.config", "two"),
            // Not written to the config file: not the agent's setting.
            ("#!/bin/bash\necho ECS_CLUSTER=elsewhere >> /tmp/x", "default"),
            ("# ECS_CLUSTER=commented", "default"),
            ("#!/bin/bash\nyum update -y\n", "default"),
        ];
        for (text, want) in table {
            let got = parse_base64(Some(&b64(text))).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(got.cluster, *want, "{text:?}");
        }
        assert_eq!(parse_base64(None).unwrap(), EcsConfig::default());
    }

    #[test]
    fn attributes_reserve_and_variables() {
        let text = "#!/bin/bash\n\
            echo 'ECS_INSTANCE_ATTRIBUTES={\"stack\": \"prod\", \"team\":\"a b\"}' >> /etc/ecs/ecs.config\n\
            echo ECS_RESERVED_MEMORY=128 >> /etc/ecs/ecs.config\n\
            echo ECS_CLUSTER=web >> /etc/ecs/ecs.config\n";
        let c = parse_text(text).unwrap();
        assert_eq!(c.cluster, "web");
        assert_eq!(
            c.attributes,
            vec![("stack".into(), "prod".into()), ("team".into(), "a b".into())]
        );
        assert_eq!(c.reserved_memory_mib, Some(128));
        assert_eq!(c.variables.len(), 3);
        let plain = parse_text("ECS_INSTANCE_ATTRIBUTES={\"gpu\": \"none\"}").unwrap();
        assert_eq!(plain.attributes, vec![("gpu".into(), "none".into())]);
    }

    #[test]
    fn refusals_name_userdata() {
        let gz = [0x1f, 0x8b, 8, 0];
        let cases: Vec<(Result<EcsConfig, InstanceError>, &str)> = vec![
            (parse_base64(Some("not base64!")), "BASE64"),
            (parse_base64(Some(&b64(&"x".repeat(16 * 1024 + 1)))), "16384"),
            (parse_bytes(&gz), "Gzip"),
            (parse_bytes(&[0xff, 0xfe, 0x41]), "UTF-8"),
            (parse_text("ECS_CLUSTER=bad name"), "'bad name'"),
            (parse_text("echo ECS_CLUSTER= >> /etc/ecs/ecs.config"), "''"),
            (parse_text("ECS_INSTANCE_ATTRIBUTES=[1,2]"), "JSON object"),
            (parse_text("ECS_INSTANCE_ATTRIBUTES={\"a\": 1}"), "JSON object"),
            (parse_text("ECS_RESERVED_MEMORY=lots"), "'lots'"),
        ];
        for (got, needle) in cases {
            let e = got.expect_err(needle);
            assert_eq!((e.code(), e.field()), ("InvalidParameterValue", "UserData"));
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        }
    }

    #[test]
    fn shell_words_unquote() {
        assert_eq!(
            shell_words(r#"echo "a \"b\" \n" 'c d'>>f x\ y"#),
            vec!["echo", r#"a "b" \n"#, "c d", "f", "x y"]
        );
        assert_eq!(shell_words("a|b;c&&d"), vec!["a", "b", "c", "d"]);
    }
}
