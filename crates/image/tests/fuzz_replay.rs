//! The fuzz targets' entry points on stable in seconds: the checked-in corpus
//! (crates/image/fuzz/corpus) and a few thousand generated inputs (a fixed seed, so a failure
//! reproduces). Generated inputs are built from hostile pieces (`..`, absolute paths, links
//! out of the target, whiteouts, devices, setuid bits, odd entry types, lying sizes) and then
//! mutated (byte flips, truncation, gzip), which reaches far more code than random bytes.
//! The layer cases need root for overlay whiteouts and ownership; as another user those paths
//! report errors, which the entry points accept.

use std::io::Write;
use std::path::Path;

use corral_image::fuzzing::{containerfile, layer_applier};

/// SplitMix64: a tiny deterministic generator (no dependency needed for test inputs).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no corpus in {}", dir.display());
    out
}

/// Flips bytes, truncates or duplicates a span of `data`.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    for _ in 0..=rng.below(4) {
        match rng.below(4) {
            0 => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            1 => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            2 => data.truncate(rng.below(data.len() + 1)),
            _ => {
                let a = rng.below(data.len());
                let b = (a + rng.below(64)).min(data.len());
                let span = data[a..b].to_vec();
                let at = rng.below(data.len() + 1);
                data.splice(at..at, span);
            }
        }
        if data.is_empty() {
            return;
        }
    }
}

const COMPONENTS: &[&str] = &[
    "a",
    "b",
    "etc",
    "dir",
    "keep",
    "escape",
    "root-link",
    "outside",
    "sentinel",
    "..",
    ".",
    "",
    ".wh.a",
    ".wh.keep",
    ".wh.etc",
    ".wh..wh..opq",
    ".wh.",
    ".wh..",
    "x y",
    "é",
];

fn path(rng: &mut Rng) -> String {
    let mut p = String::new();
    if rng.chance(15) {
        p.push('/');
    }
    let n = 1 + rng.below(4);
    for i in 0..n {
        if i > 0 {
            p.push('/');
        }
        p.push_str(rng.pick(COMPONENTS));
    }
    if rng.chance(5) {
        p.push_str(&"long".repeat(30));
    }
    p
}

const LINKS: &[&str] = &[
    "/",
    "..",
    "../outside",
    "../../outside",
    "/outside/sentinel",
    "../outside/sentinel",
    "etc/escape/sentinel",
    "root-link/outside",
    "etc/keep",
    "a",
    "/etc/keep",
    "",
];

/// A tarball of a few hostile entries, built from raw headers.
fn layer(rng: &mut Rng) -> Vec<u8> {
    let kinds = [
        b'0', b'5', b'2', b'1', b'3', b'4', b'6', b'7', b'L', b'K', b'x', b'g', b'S', b'Z',
    ];
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(6) {
        let name = path(rng);
        let link = if rng.chance(50) {
            rng.pick(LINKS).to_string()
        } else {
            path(rng)
        };
        let kind = rng.pick(&kinds);
        let data: Vec<u8> = if matches!(kind, b'L' | b'K') {
            name.clone().into_bytes()
        } else if kind == b'x' {
            format!(
                "30 path={:<20}\n",
                &name.chars().take(20).collect::<String>()
            )
            .into_bytes()
        } else {
            (0..rng.below(700)).map(|i| i as u8).collect()
        };
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            let n = name.len().min(100);
            g.name[..n].copy_from_slice(&name.as_bytes()[..n]);
            let l = link.len().min(100);
            g.linkname[..l].copy_from_slice(&link.as_bytes()[..l]);
        }
        h.set_entry_type(tar::EntryType::new(kind));
        let size = if rng.chance(5) {
            data.len() as u64 + rng.below(5000) as u64
        } else {
            data.len() as u64
        };
        h.set_size(size);
        h.set_mode(rng.pick(&[0o644u32, 0o755, 0o4755, 0o2755, 0o1777, 0o000, 0o7777]));
        h.set_uid(rng.pick(&[0u64, 1000, 65534]));
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        let _ = h.set_device_major(rng.pick(&[0u32, 1, 8]));
        let _ = h.set_device_minor(rng.pick(&[0u32, 3, 5]));
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&data);
        out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

#[test]
fn layer_applier_survives_the_corpus_and_generated_layers() {
    for (name, data) in corpus("extract") {
        eprintln!("corpus {name}");
        layer_applier(&data);
    }
    let mut rng = Rng(0x1a7e_5eed);
    for _ in 0..2000 {
        let mut flags = rng.next() as u8 & !16;
        let mut body = layer(&mut rng);
        if rng.chance(40) {
            mutate(&mut rng, &mut body);
        }
        if rng.chance(10) {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&body).unwrap();
            body = gz.finish().unwrap();
            flags |= 16;
            if rng.chance(30) {
                mutate(&mut rng, &mut body);
            }
        }
        let mut input = vec![flags];
        input.extend_from_slice(&body);
        layer_applier(&input);
    }
}

const INSTRUCTIONS: &[&str] = &[
    "FROM",
    "from",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "LABEL",
    "VOLUME",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "ONBUILD",
    "MAINTAINER",
    "BOGUS",
    "#",
    "",
];

const PIECES: &[&str] = &[
    "busybox",
    "scratch",
    "AS",
    "as",
    "stage",
    "x",
    "\"",
    "'",
    "\\",
    "$",
    "${",
    "}",
    "${A}",
    "${A:-d}",
    "${A:+a}",
    "${A:?e}",
    "$A",
    "=",
    "A=1",
    "B=\"two words\"",
    "[",
    "]",
    ",",
    "[\"/bin/sh\", \"-c\"]",
    "[\"a\"",
    "--from=0",
    "--from=stage",
    "--chown=1:1",
    "--chmod=755",
    "--chmod=9",
    "--interval=1s",
    "--retries=x",
    "NONE",
    "CMD",
    "80/tcp",
    "/dst/",
    "*.txt",
    "é",
    "\t",
    "  ",
    "\\\n",
    "`\n",
    "#",
    "--",
    "-",
    "0",
];

fn dockerfile(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.chance(10) {
        s.push_str(rng.pick(&[
            "# escape=`\n",
            "# escape=\\\n",
            "#escape = x\n",
            "# syntax=x\n",
        ]));
    }
    if rng.chance(80) {
        s.push_str("FROM busybox\n");
    }
    for _ in 0..rng.below(10) {
        s.push_str(rng.pick(INSTRUCTIONS));
        for _ in 0..rng.below(6) {
            s.push(' ');
            s.push_str(rng.pick(PIECES));
        }
        s.push('\n');
    }
    s
}

#[test]
fn containerfile_parser_survives_the_corpus_and_generated_files() {
    for (name, data) in corpus("containerfile") {
        eprintln!("corpus {name}");
        containerfile(&data);
    }
    let mut rng = Rng(0xd0c_4e5f11e);
    for _ in 0..4000 {
        let mut data = dockerfile(&mut rng).into_bytes();
        if rng.chance(30) {
            mutate(&mut rng, &mut data);
        }
        containerfile(&data);
    }
}
