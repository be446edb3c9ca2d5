//! `/etc/hosts`: one line mapping the buildset registry's IP literal to
//! its alias. Other lines are kept; the alias is taken off any line that
//! maps it elsewhere (a previous buildset registry).

use std::convert::Infallible;
use std::net::IpAddr;

/// `/etc/hosts` with `ip` mapped to `alias`; `old` itself when it already is
/// and no other line claims the alias.
pub fn with_alias(old: Option<&str>, ip: IpAddr, alias: &str) -> Result<String, Infallible> {
    let old_text = old.unwrap_or("");
    let mut lines = Vec::new();
    let mut present = false;
    let mut modified = false;
    for line in old_text.lines() {
        let (data, comment) = match line.find('#') {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, ""),
        };
        let mut fields = data.split_whitespace();
        let Some(addr) = fields.next().and_then(|a| a.parse::<IpAddr>().ok()) else {
            lines.push(line.to_string());
            continue;
        };
        let names: Vec<&str> = fields.collect();
        if !names.contains(&alias) {
            lines.push(line.to_string());
        } else if addr == ip && !present {
            present = true;
            lines.push(line.to_string());
        } else {
            modified = true;
            let rest: Vec<&str> = names.into_iter().filter(|n| *n != alias).collect();
            if !rest.is_empty() {
                lines.push(
                    format!("{addr}\t{} {comment}", rest.join(" "))
                        .trim_end()
                        .to_string(),
                );
            }
        }
    }
    if present && !modified {
        return Ok(old_text.to_string());
    }
    if !present {
        lines.push(format!("{ip}\t{alias}"));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "zuul-jobs.buildset-registry";

    #[test]
    fn appends_once() {
        let old = "127.0.0.1 localhost\n# comment\n";
        let text = with_alias(Some(old), "::1".parse().unwrap(), A).unwrap();
        assert_eq!(
            text,
            "127.0.0.1 localhost\n# comment\n::1\tzuul-jobs.buildset-registry\n"
        );
        assert_eq!(
            with_alias(Some(&text), "::1".parse().unwrap(), A).unwrap(),
            text
        );
        assert_eq!(
            with_alias(None, "10.0.0.5".parse().unwrap(), A).unwrap(),
            "10.0.0.5\tzuul-jobs.buildset-registry\n"
        );
    }

    #[test]
    fn moves_the_alias_from_an_older_address() {
        let old = "127.0.0.1 localhost\n10.0.0.9 zuul-jobs.buildset-registry other\n";
        let text = with_alias(Some(old), "10.0.0.5".parse().unwrap(), A).unwrap();
        assert_eq!(
            text,
            "127.0.0.1 localhost\n10.0.0.9\tother\n10.0.0.5\tzuul-jobs.buildset-registry\n"
        );
    }
}
