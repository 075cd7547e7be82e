//! Shapes both formats share: a value that is a string or a list, a map or a `K=V` list, a
//! scalar of any type.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A YAML scalar read as text (`8080`, `true` and `"x"` all become strings).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl Scalar {
    /// The scalar's text.
    pub fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// A command: a string (split like a shell would, without expansion) or a list.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    /// `command: echo hi`.
    Str(String),
    /// `command: [echo, hi]`.
    List(Vec<Scalar>),
}

impl StringOrList {
    /// The argv.
    pub fn argv(&self) -> Vec<String> {
        match self {
            StringOrList::Str(s) => split_shell_words(s),
            StringOrList::List(l) => l.iter().map(Scalar::text).collect(),
        }
    }

    /// The items as given (a string is one item).
    pub fn items(&self) -> Vec<String> {
        match self {
            StringOrList::Str(s) => vec![s.clone()],
            StringOrList::List(l) => l.iter().map(Scalar::text).collect(),
        }
    }
}

/// `{K: V}` or `[K=V, K]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum MapOrList {
    /// The map form; a null value means "take it from the environment".
    Map(BTreeMap<String, Option<Scalar>>),
    /// The list form.
    List(Vec<String>),
}

impl MapOrList {
    /// Key → value, `None` for a key without a value.
    pub fn entries(&self) -> Vec<(String, Option<String>)> {
        match self {
            MapOrList::Map(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map(Scalar::text)))
                .collect(),
            MapOrList::List(l) => l
                .iter()
                .map(|item| match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (item.clone(), None),
                })
                .collect(),
        }
    }
}

/// Splits a command line into words: whitespace separates, single and double quotes group,
/// backslash escapes (no variable or glob expansion).
pub fn split_shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
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

    #[test]
    fn shell_words() {
        assert_eq!(
            split_shell_words(r#"sh -c "echo 'hi there'" a\ b ''"#),
            vec!["sh", "-c", "echo 'hi there'", "a b", ""]
        );
        assert!(split_shell_words("   ").is_empty());
    }

    #[test]
    fn map_or_list_entries() {
        let m: MapOrList = serde_yaml::from_str("{A: 1, B: null, C: x}").unwrap();
        assert_eq!(
            m.entries(),
            vec![
                ("A".into(), Some("1".into())),
                ("B".into(), None),
                ("C".into(), Some("x".into()))
            ]
        );
        let l: MapOrList = serde_yaml::from_str("[A=1, B, C=x=y]").unwrap();
        assert_eq!(
            l.entries(),
            vec![
                ("A".into(), Some("1".into())),
                ("B".into(), None),
                ("C".into(), Some("x=y".into()))
            ]
        );
    }
}
