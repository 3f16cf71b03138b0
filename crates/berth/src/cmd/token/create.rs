//! `berth token create --expires-in 1h [--description TEXT]`.

use super::Admin;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// How long the token may be used: 90s, 30m, 1h, 7d (1 minute to 30 days).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub expires_in: u64,
    /// A note shown by `berth token list`.
    #[arg(long)]
    pub description: Option<String>,
}

/// `N` followed by `s`, `m`, `h` or `d` (seconds when bare), in seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 =
        num.parse().map_err(|_| format!("'{s}' is not a duration such as 30m, 1h or 7d"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("'{s}': use a unit of s, m, h or d")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too long"))
}

pub async fn run(admin: &Admin, args: Args) -> anyhow::Result<()> {
    let out = admin
        .call(
            berth_server::admin_paths::CREATE_PATH,
            serde_json::json!({"expiresInSeconds": args.expires_in, "description": args.description}),
        )
        .await?;
    let token = out["token"].as_str().unwrap_or_default();
    let t = &out["joinToken"];
    // The token alone on stdout, for scripts.
    println!("{token}");
    eprintln!(
        "join token {} expires {}; it is shown only now. On each host:",
        t["id"].as_str().unwrap_or_default(),
        super::when(&t["expiresAt"])
    );
    let ca = admin.ca_file.as_ref().map(|p| format!(" --ca-file ca.pem   (copy {})", p.display()));
    eprintln!(
        "  berth agent --server {} --join-token {token}{}",
        admin.endpoint,
        ca.unwrap_or_default()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        use super::parse_duration as p;
        assert_eq!(p("90"), Ok(90));
        assert_eq!(p("30m"), Ok(1800));
        assert_eq!(p("1h"), Ok(3600));
        assert_eq!(p("7d"), Ok(604_800));
        assert!(p("1w").is_err() && p("h").is_err() && p("").is_err());
    }
}
