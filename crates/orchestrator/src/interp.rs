//! Compose variable interpolation (`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`, `$$`) and `.env` files.

use std::collections::BTreeMap;

/// Variables for interpolation: the process environment over the project's `.env` file.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    vars: BTreeMap<String, String>,
}

impl Vars {
    /// No variables.
    pub fn new() -> Self {
        Vars::default()
    }

    /// The `.env` contents, overridden by the process environment (Compose's precedence).
    pub fn from_env_file_and_process(env_file: Option<&str>) -> Self {
        let mut v = Vars::new();
        if let Some(text) = env_file {
            for (k, val) in parse_env_file(text) {
                v.set(k, val);
            }
        }
        for (k, val) in std::env::vars() {
            v.set(k, val);
        }
        v
    }

    /// Sets one variable.
    pub fn set(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.vars.insert(k.into(), v.into());
    }

    /// Looks one up.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.vars.get(k).map(String::as_str)
    }
}

/// Parses a `.env` file: `KEY=VALUE` lines, `#` comments, optional `export `, single or double
/// quotes (double quotes understand `\n`, `\"`, `\\`).
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if k.is_empty() {
            continue;
        }
        let v = v.trim();
        let v = if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            inner
                .replace("\\n", "\n")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            inner.to_string()
        } else {
            // Unquoted: an inline comment starts at " #".
            match v.find(" #") {
                Some(i) => v[..i].trim_end().to_string(),
                None => v.to_string(),
            }
        };
        out.push((k.to_string(), v));
    }
    out
}

/// Why interpolation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    /// `${VAR:?message}` with VAR unset or empty.
    #[error("required variable {name} is missing a value: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The file's message.
        message: String,
    },
    /// `${` without a closing brace, or a bad name.
    #[error("invalid interpolation format in {0:?}")]
    Syntax(String),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Interpolates one string.
pub fn interpolate(input: &str, vars: &Vars) -> Result<String, InterpError> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = find_closing(body).ok_or_else(|| InterpError::Syntax(input.to_string()))?;
            out.push_str(&expand_braced(&body[..end], vars, input)?);
            rest = &body[end + 1..];
        } else {
            let len = after
                .char_indices()
                .find(|&(_, c)| !is_name_char(c))
                .map_or(after.len(), |(i, _)| i);
            if len == 0 || after.starts_with(|c: char| c.is_ascii_digit()) {
                // A lone `$` stays as it is.
                out.push('$');
                rest = after;
            } else {
                out.push_str(vars.get(&after[..len]).unwrap_or(""));
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing a `${`, allowing nested `${…}` in defaults.
fn find_closing(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn expand_braced(expr: &str, vars: &Vars, whole: &str) -> Result<String, InterpError> {
    let name_len = expr
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(expr.len(), |(i, _)| i);
    let (name, op) = expr.split_at(name_len);
    if name.is_empty() {
        return Err(InterpError::Syntax(whole.to_string()));
    }
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let arg = |skip: usize| interpolate(&op[skip..], vars);
    let required = |skip: usize| -> Result<String, InterpError> {
        Err(InterpError::Required {
            name: name.to_string(),
            message: interpolate(&op[skip..], vars)?,
        })
    };
    match op {
        "" => Ok(value.unwrap_or("").to_string()),
        _ if op.starts_with(":-") => {
            if non_empty {
                Ok(value.unwrap_or("").to_string())
            } else {
                arg(2)
            }
        }
        _ if op.starts_with('-') => {
            if set {
                Ok(value.unwrap_or("").to_string())
            } else {
                arg(1)
            }
        }
        _ if op.starts_with(":?") => {
            if non_empty {
                Ok(value.unwrap_or("").to_string())
            } else {
                required(2)
            }
        }
        _ if op.starts_with('?') => {
            if set {
                Ok(value.unwrap_or("").to_string())
            } else {
                required(1)
            }
        }
        _ if op.starts_with(":+") => {
            if non_empty {
                arg(2)
            } else {
                Ok(String::new())
            }
        }
        _ if op.starts_with('+') => {
            if set {
                arg(1)
            } else {
                Ok(String::new())
            }
        }
        _ => Err(InterpError::Syntax(whole.to_string())),
    }
}

/// Interpolates every string scalar (values, not keys) of a YAML tree in place. A plain scalar
/// that changed is re-read as YAML (so `replicas: ${N}` becomes a number); `path` collects the
/// key path of a failure.
pub fn interpolate_value(
    v: &mut serde_yaml::Value,
    vars: &Vars,
    path: &mut Vec<String>,
) -> Result<(), (String, InterpError)> {
    use serde_yaml::Value;
    match v {
        Value::String(s) => {
            let new = interpolate(s, vars).map_err(|e| (path.join("."), e))?;
            if new != *s {
                *v = match serde_yaml::from_str::<Value>(&new) {
                    Ok(parsed @ (Value::Number(_) | Value::Bool(_))) => parsed,
                    _ => Value::String(new),
                };
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                interpolate_value(item, vars, path)?;
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                path.push(crate::yaml_pos::key_text(k));
                interpolate_value(item, vars, path)?;
                path.pop();
            }
        }
        Value::Tagged(t) => interpolate_value(&mut t.value, vars, path)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set("TAG", "1.2");
        v.set("EMPTY", "");
        v.set("PORT", "8080");
        v
    }

    #[test]
    fn every_form_interpolates() {
        let v = vars();
        for (input, want) in [
            ("plain", "plain"),
            ("img:$TAG", "img:1.2"),
            ("img:${TAG}", "img:1.2"),
            ("${MISSING}", ""),
            ("${MISSING:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${MISSING-def}", "def"),
            ("${TAG:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${MISSING:-${PORT}}", "8080"),
            ("$$HOME", "$HOME"),
            ("cost $5", "cost $5"),
            ("a$", "a$"),
            ("${PORT}:${PORT:-1}/tcp", "8080:8080/tcp"),
        ] {
            assert_eq!(interpolate(input, &v).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn required_and_bad_syntax_fail() {
        let v = vars();
        let err = interpolate("${MISSING:?set MISSING please}", &v).unwrap_err();
        assert_eq!(
            err,
            InterpError::Required {
                name: "MISSING".into(),
                message: "set MISSING please".into()
            }
        );
        assert!(interpolate("${EMPTY:?x}", &v).is_err());
        assert_eq!(interpolate("${EMPTY?x}", &v).unwrap(), "");
        assert!(matches!(
            interpolate("${TAG", &v),
            Err(InterpError::Syntax(_))
        ));
        assert!(matches!(
            interpolate("${}", &v),
            Err(InterpError::Syntax(_))
        ));
        assert!(matches!(
            interpolate("${TAG:x}", &v),
            Err(InterpError::Syntax(_))
        ));
    }

    #[test]
    fn env_file_forms() {
        let text =
            "# comment\nA=1\nexport B = two \nC=\"x\\ny\"\nD='$raw'\nE=v # note\n=bad\nnoeq\n";
        let got = parse_env_file(text);
        assert_eq!(
            got,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two".into()),
                ("C".into(), "x\ny".into()),
                ("D".into(), "$raw".into()),
                ("E".into(), "v".into()),
            ]
        );
    }

    #[test]
    fn process_env_overrides_env_file() {
        // PATH is always set in the process environment.
        let v =
            Vars::from_env_file_and_process(Some("PATH=/nowhere\nCORRAL_APPS_ONLY_IN_FILE=1\n"));
        assert_ne!(v.get("PATH"), Some("/nowhere"));
        assert_eq!(v.get("CORRAL_APPS_ONLY_IN_FILE"), Some("1"));
    }

    #[test]
    fn tree_interpolation_retypes_changed_plain_scalars() {
        let mut doc: serde_yaml::Value =
            serde_yaml::from_str("replicas: ${N:-3}\nimage: app:${TAG}\nflag: ${F:-true}\n")
                .unwrap();
        interpolate_value(&mut doc, &vars(), &mut Vec::new()).unwrap();
        assert_eq!(doc["replicas"], serde_yaml::Value::from(3));
        assert_eq!(doc["image"], serde_yaml::Value::from("app:1.2"));
        assert_eq!(doc["flag"], serde_yaml::Value::from(true));
        let mut bad: serde_yaml::Value =
            serde_yaml::from_str("a:\n  b: [x, '${Q:?need Q}']\n").unwrap();
        let (path, _) = interpolate_value(&mut bad, &vars(), &mut Vec::new()).unwrap_err();
        assert_eq!(path, "a.b.1");
    }
}
