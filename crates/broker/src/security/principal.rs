//! `ssl.principal.mapping.rules`: turns a client certificate's distinguished name into a
//! principal name. Rules are tried in order; `RULE:pattern/replacement/` applies when the
//! pattern matches the whole name (an `L` or `U` after the last slash lower- or upper-cases the
//! result); `DEFAULT` keeps the name as it is. With no matching rule the name is kept too.

use regex::Regex;

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// Parsed mapping rules.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

/// Reads up to the next unescaped '/'; returns (text, rest after the slash).
fn until_slash(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    if next != '/' {
                        out.push('\\');
                    }
                    out.push(next);
                }
            }
            '/' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

impl PrincipalMapper {
    pub fn parse(rules: &str) -> Result<PrincipalMapper, String> {
        let group_ref = Regex::new(r"\$(\d+)").expect("valid");
        let mut out = Vec::new();
        let mut rest = rules.trim();
        while !rest.is_empty() {
            rest = rest.trim_start_matches([',', ' ', '\t', '\n']);
            if rest.is_empty() {
                break;
            }
            if let Some(r) = rest.strip_prefix("DEFAULT") {
                out.push(Rule::Default);
                rest = r;
                continue;
            }
            let body = rest
                .strip_prefix("RULE:")
                .ok_or_else(|| format!("ssl.principal.mapping.rules: cannot read {rest:?}"))?;
            let (pattern, after) = until_slash(body)
                .ok_or_else(|| format!("ssl.principal.mapping.rules: no '/' after {body:?}"))?;
            let (replacement, after) = until_slash(after).ok_or_else(|| {
                format!("ssl.principal.mapping.rules: no closing '/' in {body:?}")
            })?;
            let case = after.chars().next().filter(|c| *c == 'L' || *c == 'U');
            rest = if case.is_some() { &after[1..] } else { after };
            let pattern = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("ssl.principal.mapping.rules: {e}"))?;
            // $1 in the replacement is a group number, as in Java.
            let replacement = group_ref.replace_all(&replacement, "$${$1}").into_owned();
            out.push(Rule::Replace {
                pattern,
                replacement,
                case,
            });
        }
        Ok(PrincipalMapper { rules: out })
    }

    /// The principal name for a distinguished name.
    pub fn map(&self, dn: &str) -> String {
        for rule in &self.rules {
            match rule {
                Rule::Default => return dn.to_string(),
                Rule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    if pattern.is_match(dn) {
                        let name = pattern.replace(dn, replacement.as_str()).into_owned();
                        return match case {
                            Some('L') => name.to_lowercase(),
                            Some('U') => name.to_uppercase(),
                            _ => name,
                        };
                    }
                }
            }
        }
        dn.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_as_kafka_writes_them() {
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/, RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$2/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(m.map("CN=kafka-svc,OU=ServiceUsers,O=Example"), "kafka-svc");
        assert_eq!(m.map("CN=Alice,OU=Eng,O=Example"), "alice@eng");
        assert_eq!(m.map("CN=bob,O=strom-test"), "CN=bob,O=strom-test");
        let m = PrincipalMapper::parse("RULE:^CN=([a-z]+)\\/x,.*$/$1/U").unwrap();
        assert_eq!(m.map("CN=ab/x,O=y"), "AB");
        assert!(PrincipalMapper::parse("RULE:abc").is_err());
        assert!(PrincipalMapper::parse("nonsense").is_err());
        assert_eq!(
            PrincipalMapper::parse("DEFAULT").unwrap().map("CN=a"),
            "CN=a"
        );
    }
}
