//! Lines of YAML key paths. serde_yaml parses the documents; this walks yaml-rust2's event
//! stream (which carries positions) once per file so errors and warnings found later, on the
//! interpolated tree, can still name the line they came from.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// Key path (segments joined by `.`) → 1-based line, for each document of a file.
#[derive(Debug, Default)]
pub struct LineIndex {
    docs: Vec<HashMap<String, usize>>,
}

/// The text of a mapping key as it appears in a key path.
pub fn key_text(k: &serde_yaml::Value) -> String {
    match k {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Null => "null".into(),
        _ => "?".into(),
    }
}

impl LineIndex {
    /// Indexes every node of every document of `text` (an unparsable file gives an empty
    /// index; serde_yaml reports its syntax error with a position of its own).
    pub fn build(text: &str) -> Self {
        let mut parser = Parser::new_from_str(text);
        let mut docs = Vec::new();
        loop {
            match parser.next_token() {
                Ok((Event::StreamEnd, _)) | Err(_) => break,
                Ok((Event::DocumentStart, _)) => {
                    let mut map = HashMap::new();
                    let Ok((ev, mark)) = parser.next_token() else {
                        break;
                    };
                    if matches!(ev, Event::DocumentEnd) {
                        docs.push(map);
                        continue;
                    }
                    if walk(
                        &mut parser,
                        ev,
                        mark,
                        &mut Vec::new(),
                        mark.line(),
                        &mut map,
                    )
                    .is_err()
                    {
                        docs.push(map);
                        break;
                    }
                    docs.push(map);
                }
                Ok(_) => {}
            }
        }
        LineIndex { docs }
    }

    /// The line of `path` in document `doc`, or of its closest indexed ancestor.
    pub fn line(&self, doc: usize, path: &[String]) -> Option<usize> {
        let map = self.docs.get(doc)?;
        (0..=path.len())
            .rev()
            .find_map(|n| map.get(&path[..n].join(".")).copied())
    }

    /// Number of documents indexed.
    pub fn documents(&self) -> usize {
        self.docs.len()
    }
}

fn walk(
    parser: &mut Parser<std::str::Chars<'_>>,
    ev: Event,
    _mark: Marker,
    path: &mut Vec<String>,
    line: usize,
    out: &mut HashMap<String, usize>,
) -> Result<(), ()> {
    out.entry(path.join(".")).or_insert(line);
    match ev {
        Event::MappingStart(..) => loop {
            let (k, km) = parser.next_token().map_err(|_| ())?;
            let key = match k {
                Event::MappingEnd => return Ok(()),
                Event::Scalar(ref s, ..) => s.clone(),
                other => {
                    // A complex key: consume it without indexing.
                    walk(
                        parser,
                        other,
                        km,
                        &mut vec!["?".into()],
                        km.line(),
                        &mut HashMap::new(),
                    )?;
                    "?".into()
                }
            };
            let (v, vm) = parser.next_token().map_err(|_| ())?;
            path.push(key);
            walk(parser, v, vm, path, km.line(), out)?;
            path.pop();
        },
        Event::SequenceStart(..) => {
            let mut i = 0usize;
            loop {
                let (e, m) = parser.next_token().map_err(|_| ())?;
                if matches!(e, Event::SequenceEnd) {
                    return Ok(());
                }
                path.push(i.to_string());
                walk(parser, e, m, path, m.line(), out)?;
                path.pop();
                i += 1;
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(String::from).collect()
    }

    #[test]
    fn finds_lines_of_keys_and_items_across_documents() {
        let text =
            "a:\n  b: 1\n  c:\n    - x\n    - y: 2\n---\nkind: Service\nspec:\n  ports: []\n";
        let idx = LineIndex::build(text);
        assert_eq!(idx.documents(), 2);
        assert_eq!(idx.line(0, &p("a")), Some(1));
        assert_eq!(idx.line(0, &p("a.b")), Some(2));
        assert_eq!(idx.line(0, &p("a.c.0")), Some(4));
        assert_eq!(idx.line(0, &p("a.c.1.y")), Some(5));
        // Unknown tails fall back to the closest ancestor.
        assert_eq!(idx.line(0, &p("a.c.1.zzz")), Some(5));
        assert_eq!(idx.line(1, &p("spec.ports")), Some(9));
        assert_eq!(idx.line(2, &p("spec")), None);
    }

    #[test]
    fn flow_style_and_broken_input() {
        let idx = LineIndex::build("labels: {app: web, tier: front}\nports: [80]\n");
        assert_eq!(idx.line(0, &p("labels.tier")), Some(1));
        assert_eq!(idx.line(0, &p("ports.0")), Some(2));
        let broken = LineIndex::build("a: [1, 2\n");
        assert!(broken.line(0, &p("a")).is_some() || broken.documents() <= 1);
    }
}
