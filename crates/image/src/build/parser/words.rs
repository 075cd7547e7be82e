//! Words and variables of Containerfile operands: quote-aware splitting, `KEY=VALUE` lists,
//! JSON exec arrays and `$VAR` / `${VAR:-default}` / `${VAR:+alt}` expansion.

/// The strings of a JSON string array (exec form), if `s` is one.
pub(super) fn json_array(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// `s` with quotes and escapes removed, words joined by one space.
pub(super) fn unquote(s: &str) -> Result<String, String> {
    let w = split_words(s)?;
    Ok(w.join(" "))
}

/// Splits on unquoted whitespace, removing quotes and backslash escapes.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => cur.push('\\'),
                }
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in {s:?}"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `k=v k2="v 2"`, or (ENV's legacy form) `k value with spaces`.
pub(super) fn key_values(s: &str, legacy: bool) -> Result<Vec<(String, String)>, String> {
    let words = split_words(s)?;
    if words.first().is_some_and(|w| !w.contains('=')) {
        if !legacy {
            return Err(format!("expected KEY=VALUE, got {:?}", words[0]));
        }
        let (k, v) = s
            .split_once(char::is_whitespace)
            .ok_or("ENV needs a value")?;
        return Ok(vec![(k.to_string(), unquote(v.trim())?)]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("expected KEY=VALUE, got {w:?}")),
        })
        .collect()
}

/// Expands `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alt}`; `\$` is a literal `$`.
pub fn expand(s: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' if it.peek() == Some(&'$') => {
                out.push('$');
                it.next();
            }
            '$' => match it.peek() {
                Some('{') => {
                    it.next();
                    let mut inner = String::new();
                    loop {
                        match it.next() {
                            Some('}') => break,
                            Some(ch) => inner.push(ch),
                            None => return Err(format!("missing }} in {s:?}")),
                        }
                    }
                    let (name, op) = match inner.find(":-").or_else(|| inner.find(":+")) {
                        Some(i) => (&inner[..i], Some((&inner[i..i + 2], &inner[i + 2..]))),
                        None => (inner.as_str(), None),
                    };
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!("bad variable name in ${{{inner}}}"));
                    }
                    let val = vars(name).filter(|v| !v.is_empty());
                    match op {
                        None => out.push_str(&val.unwrap_or_default()),
                        Some((":-", d)) => out.push_str(&val.unwrap_or_else(|| d.to_string())),
                        Some((_, alt)) => {
                            if val.is_some() {
                                out.push_str(alt)
                            }
                        }
                    }
                }
                Some(ch) if ch.is_ascii_alphabetic() || *ch == '_' => {
                    let mut name = String::new();
                    while let Some(ch) = it.peek() {
                        if ch.is_ascii_alphanumeric() || *ch == '_' {
                            name.push(*ch);
                            it.next();
                        } else {
                            break;
                        }
                    }
                    out.push_str(&vars(&name).unwrap_or_default());
                }
                _ => out.push('$'),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_handles_defaults_and_escapes() {
        let vars = |n: &str| match n {
            "A" => Some("1".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand("$A-${A}-${B:-d}-${A:+alt}-${B:+alt}-\\$A-$", &vars).unwrap(),
            "1-1-d-alt--$A-$"
        );
        assert_eq!(expand("${EMPTY:-x}", &vars).unwrap(), "x");
        assert!(expand("${A", &vars).is_err());
    }
}
