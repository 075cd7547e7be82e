//! The Containerfile (Dockerfile) parser: line continuations, comments, the `escape` directive,
//! shell and exec (JSON) forms, flags (`--from`, `--chown`, `--chmod`, healthcheck options),
//! `KEY=VALUE` lists, and `$VAR` / `${VAR}` / `${VAR:-default}` / `${VAR:+alt}` expansion.

use std::collections::HashMap;

mod words;

pub use words::{expand, split_words};
use words::{json_array, key_values, unquote};

/// A parse failure, with the 1-based line where the instruction starts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Containerfile line {line}: {message}")]
pub struct ParseError {
    /// The line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A command in shell form (run by `/bin/sh -c`) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `RUN echo hi`.
    Shell(String),
    /// `RUN ["echo", "hi"]`.
    Exec(Vec<String>),
}

/// HEALTHCHECK settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Healthcheck {
    /// The test command (`["CMD", …]` or `["CMD-SHELL", …]`), or `["NONE"]`.
    pub test: Vec<String>,
    /// `--interval`.
    pub interval: Option<String>,
    /// `--timeout`.
    pub timeout: Option<String>,
    /// `--start-period`.
    pub start_period: Option<String>,
    /// `--retries`.
    pub retries: Option<u32>,
}

/// COPY/ADD options and operands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySpec {
    /// `--from=STAGE|IMAGE` (COPY only).
    pub from: Option<String>,
    /// `--chown=USER[:GROUP]`.
    pub chown: Option<String>,
    /// `--chmod=OCTAL`.
    pub chmod: Option<u32>,
    /// Sources (context-relative, globs allowed).
    pub sources: Vec<String>,
    /// Destination (relative to WORKDIR unless absolute).
    pub dest: String,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM image [AS name]`.
    From {
        /// Image, `scratch`, or an earlier stage's name.
        image: String,
        /// The stage name.
        alias: Option<String>,
    },
    /// `RUN`.
    Run(Command),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `COPY`.
    Copy(CopySpec),
    /// `ADD`.
    Add(CopySpec),
    /// `ENV k=v …`.
    Env(Vec<(String, String)>),
    /// `ARG name[=default]`.
    Arg(String, Option<String>),
    /// `WORKDIR`.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `EXPOSE 80/tcp …`.
    Expose(Vec<String>),
    /// `LABEL k=v …`.
    Label(Vec<(String, String)>),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL ["/bin/bash", "-c"]`.
    Shell(Vec<String>),
}

/// An instruction with its line and original text (for step output and cache keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line.
    pub line: usize,
    /// The instruction as written (continuations joined).
    pub text: String,
    /// The parsed instruction (before variable expansion of its operands).
    pub instruction: Instruction,
}

/// A parsed Containerfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Containerfile {
    /// `ARG`s before the first FROM (usable in FROM lines).
    pub global_args: Vec<(String, Option<String>)>,
    /// Stages; each begins with its FROM step.
    pub stages: Vec<Vec<Step>>,
}

/// Parses a Containerfile.
pub fn parse(text: &str) -> Result<Containerfile, ParseError> {
    let mut escape = '\\';
    let mut lines = text.lines().enumerate().peekable();
    // Parser directives come first: `# escape=`` ` `.
    while let Some((_, l)) = lines.peek() {
        let t = l.trim();
        let Some(d) = t.strip_prefix('#') else { break };
        let Some((k, v)) = d.split_once('=') else {
            break;
        };
        if k.trim().eq_ignore_ascii_case("escape") {
            escape = match v.trim() {
                "`" => '`',
                "\\" => '\\',
                other => {
                    return Err(ParseError {
                        line: 1,
                        message: format!("bad escape directive {other:?}"),
                    })
                }
            };
            lines.next();
        } else if k.trim().eq_ignore_ascii_case("syntax") {
            lines.next();
        } else {
            break;
        }
    }
    let mut out = Containerfile::default();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in lines {
        let trimmed = raw.trim();
        if pending.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if pending.is_some() && trimmed.starts_with('#') {
            continue;
        }
        let (line_no, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        let continued =
            trimmed.ends_with(escape) && !trimmed.ends_with(&format!("{escape}{escape}"));
        if continued {
            acc.push_str(&trimmed[..trimmed.len() - 1]);
            acc.push(' ');
            pending = Some((line_no, acc));
            continue;
        }
        acc.push_str(trimmed);
        add_step(&mut out, line_no, acc.trim())?;
    }
    if let Some((line, acc)) = pending {
        add_step(&mut out, line, acc.trim())?;
    }
    if out.stages.is_empty() {
        return Err(ParseError {
            line: 1,
            message: "no FROM instruction".into(),
        });
    }
    Ok(out)
}

fn add_step(out: &mut Containerfile, line: usize, text: &str) -> Result<(), ParseError> {
    if text.is_empty() {
        return Ok(());
    }
    let err = |m: String| ParseError { line, message: m };
    let (kw, rest) = match text.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim()),
        None => (text, ""),
    };
    let kw = kw.to_ascii_uppercase();
    let instruction = parse_instruction(&kw, rest).map_err(err)?;
    let step = Step {
        line,
        text: text.to_string(),
        instruction,
    };
    match (&step.instruction, out.stages.last_mut()) {
        (Instruction::From { .. }, _) => out.stages.push(vec![step]),
        (Instruction::Arg(k, v), None) => out.global_args.push((k.clone(), v.clone())),
        (_, Some(stage)) => stage.push(step),
        (_, None) => {
            return Err(ParseError {
                line,
                message: format!("{kw} before the first FROM"),
            })
        }
    }
    Ok(())
}

fn parse_instruction(kw: &str, rest: &str) -> Result<Instruction, String> {
    let need = |what: &str| -> Result<(), String> {
        if rest.is_empty() {
            Err(format!("{kw} needs {what}"))
        } else {
            Ok(())
        }
    };
    Ok(match kw {
        "FROM" => {
            let (_flags, rest) = take_flags(rest, &["platform"])?;
            let w = split_words(&rest)?;
            match w.as_slice() {
                [img] => Instruction::From {
                    image: img.clone(),
                    alias: None,
                },
                [img, as_, name] if as_.eq_ignore_ascii_case("as") => Instruction::From {
                    image: img.clone(),
                    alias: Some(name.to_ascii_lowercase()),
                },
                _ => return Err("FROM takes IMAGE [AS NAME]".into()),
            }
        }
        "RUN" => {
            let (_flags, rest) = take_flags(rest, &["network", "mount", "security"])?;
            if rest.is_empty() {
                return Err("RUN needs a command".into());
            }
            Instruction::Run(command(&rest))
        }
        "CMD" => {
            need("a command")?;
            Instruction::Cmd(command(rest))
        }
        "ENTRYPOINT" => {
            need("a command")?;
            Instruction::Entrypoint(command(rest))
        }
        "COPY" | "ADD" => {
            let allowed: &[&str] = if kw == "COPY" {
                &["from", "chown", "chmod", "link"]
            } else {
                &["chown", "chmod", "link", "checksum"]
            };
            let (flags, rest) = take_flags(rest, allowed)?;
            let words = match json_array(&rest) {
                Some(v) => v,
                None => split_words(&rest)?,
            };
            if words.len() < 2 {
                return Err(format!("{kw} needs at least one source and a destination"));
            }
            let chmod = match flags.get("chmod") {
                Some(m) => Some(
                    u32::from_str_radix(m, 8).map_err(|_| format!("--chmod={m} is not octal"))?,
                ),
                None => None,
            };
            let spec = CopySpec {
                from: flags.get("from").cloned(),
                chown: flags.get("chown").cloned(),
                chmod,
                sources: words[..words.len() - 1].to_vec(),
                dest: words[words.len() - 1].clone(),
            };
            if kw == "COPY" {
                Instruction::Copy(spec)
            } else {
                Instruction::Add(spec)
            }
        }
        "ENV" => {
            need("KEY=VALUE")?;
            Instruction::Env(key_values(rest, true)?)
        }
        "LABEL" => {
            need("KEY=VALUE")?;
            Instruction::Label(key_values(rest, false)?)
        }
        "ARG" => {
            need("a name")?;
            match rest.split_once('=') {
                Some((k, v)) => Instruction::Arg(k.trim().to_string(), Some(unquote(v.trim())?)),
                None => Instruction::Arg(rest.to_string(), None),
            }
        }
        "WORKDIR" => {
            need("a path")?;
            Instruction::Workdir(rest.to_string())
        }
        "USER" => {
            need("a user")?;
            Instruction::User(rest.to_string())
        }
        "EXPOSE" => {
            need("a port")?;
            Instruction::Expose(split_words(rest)?)
        }
        "VOLUME" => {
            need("a path")?;
            Instruction::Volume(match json_array(rest) {
                Some(v) => v,
                None => split_words(rest)?,
            })
        }
        "STOPSIGNAL" => {
            need("a signal")?;
            Instruction::StopSignal(rest.to_string())
        }
        "SHELL" => Instruction::Shell(json_array(rest).ok_or("SHELL needs a JSON array")?),
        "HEALTHCHECK" => {
            need("NONE or CMD")?;
            let (flags, rest) = take_flags(
                rest,
                &[
                    "interval",
                    "timeout",
                    "start-period",
                    "start-interval",
                    "retries",
                ],
            )?;
            let (first, cmd) = match rest.split_once(char::is_whitespace) {
                Some((a, b)) => (a.to_ascii_uppercase(), b.trim().to_string()),
                None => (rest.to_ascii_uppercase(), String::new()),
            };
            let test = match (first.as_str(), command(&cmd)) {
                ("NONE", _) => vec!["NONE".to_string()],
                ("CMD", Command::Exec(v)) if !cmd.is_empty() => {
                    std::iter::once("CMD".to_string()).chain(v).collect()
                }
                ("CMD", Command::Shell(s)) if !cmd.is_empty() => vec!["CMD-SHELL".to_string(), s],
                _ => return Err("HEALTHCHECK takes NONE or [OPTIONS] CMD command".into()),
            };
            let retries = match flags.get("retries") {
                Some(r) => Some(
                    r.parse()
                        .map_err(|_| format!("--retries={r} is not a number"))?,
                ),
                None => None,
            };
            Instruction::Healthcheck(Healthcheck {
                test,
                interval: flags.get("interval").cloned(),
                timeout: flags.get("timeout").cloned(),
                start_period: flags.get("start-period").cloned(),
                retries,
            })
        }
        "MAINTAINER" => Instruction::Label(vec![("maintainer".into(), rest.to_string())]),
        other => return Err(format!("unknown instruction {other}")),
    })
}

/// Splits leading `--name=value` flags off an operand string.
fn take_flags(
    mut rest: &str,
    allowed: &[&str],
) -> Result<(HashMap<String, String>, String), String> {
    let mut flags = HashMap::new();
    while let Some(f) = rest.strip_prefix("--") {
        let (flag, tail) = match f.split_once(char::is_whitespace) {
            Some((a, b)) => (a, b.trim_start()),
            None => (f, ""),
        };
        let (k, v) = flag.split_once('=').unwrap_or((flag, "true"));
        if !allowed.contains(&k) {
            return Err(format!("unknown flag --{k}"));
        }
        flags.insert(k.to_string(), v.to_string());
        rest = tail;
    }
    Ok((flags, rest.to_string()))
}

/// Exec form if the text is a JSON string array, else shell form.
fn command(rest: &str) -> Command {
    match json_array(rest) {
        Some(v) => Command::Exec(v),
        None => Command::Shell(rest.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_multi_stage_file() {
        let f = parse(
            "# syntax=x\nARG BASE=busybox\nFROM $BASE AS build\nRUN echo a \\\n  && echo b\n# c\nCOPY --chown=1:2 a* /x/\n\
             FROM scratch\nCOPY --from=build /x /y\nCMD [\"/y/run\", \"--flag\"]\nENV A=1 B=\"two words\"\nENV LEGACY some value\n\
             HEALTHCHECK --interval=5s CMD wget -q localhost\nEXPOSE 80 443/udp\nLABEL a=b\nVOLUME [\"/data\"]\nSTOPSIGNAL SIGINT\n",
        )
        .unwrap();
        assert_eq!(f.global_args, vec![("BASE".into(), Some("busybox".into()))]);
        assert_eq!(f.stages.len(), 2);
        assert_eq!(
            f.stages[0][0].instruction,
            Instruction::From {
                image: "$BASE".into(),
                alias: Some("build".into())
            }
        );
        assert_eq!(
            f.stages[0][1].instruction,
            Instruction::Run(Command::Shell("echo a  && echo b".into()))
        );
        assert_eq!(f.stages[0][1].line, 4);
        let Instruction::Copy(c) = &f.stages[0][2].instruction else {
            panic!()
        };
        assert_eq!(
            (c.chown.as_deref(), c.sources.clone(), c.dest.as_str()),
            (Some("1:2"), vec!["a*".to_string()], "/x/")
        );
        let Instruction::Copy(c) = &f.stages[1][1].instruction else {
            panic!()
        };
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(
            f.stages[1][2].instruction,
            Instruction::Cmd(Command::Exec(vec!["/y/run".into(), "--flag".into()]))
        );
        assert_eq!(
            f.stages[1][3].instruction,
            Instruction::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into())
            ])
        );
        assert_eq!(
            f.stages[1][4].instruction,
            Instruction::Env(vec![("LEGACY".into(), "some value".into())])
        );
        let Instruction::Healthcheck(h) = &f.stages[1][5].instruction else {
            panic!()
        };
        assert_eq!(
            h.test,
            vec!["CMD-SHELL".to_string(), "wget -q localhost".to_string()]
        );
        assert_eq!(h.interval.as_deref(), Some("5s"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("FROM a\nBOGUS x\n").unwrap_err().line, 2);
        assert!(parse("RUN x\n").is_err());
        assert!(parse("").is_err());
        assert!(parse("FROM a\nCOPY onlyone\n").is_err());
        assert!(parse("FROM a\nCOPY --bogus=1 a b\n").is_err());
    }
}
