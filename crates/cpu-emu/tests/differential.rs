//! Differential tests of instruction semantics: seeded, generated single-instruction
//! snippets run natively on the host CPU (user mode, in a child process) and in the
//! software CPU; registers, flags (minus the architecturally undefined ones), XMM
//! registers, the data page and faults must match.
//!
//! `CORRAL_CPUEMU_SEED` picks the seed (default fixed), `CORRAL_CPUEMU_CASES` the number of
//! cases per group. This binary is also the native runner (`--native IN OUT`).

#[path = "differential/case.rs"]
mod case;
#[path = "differential/emulated.rs"]
mod emulated;
#[path = "differential/gen.rs"]
mod gen;
#[path = "differential/native.rs"]
mod native;

use std::process::Command;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

fn disasm(code: &[u8]) -> String {
    let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut s = String::new();
    let mut f = IntelFormatter::new();
    while d.can_decode() {
        let i = d.decode();
        f.format(&i, &mut s);
        s.push_str("; ");
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--native" {
        let cases = case::decode_cases(&std::fs::read(&args[2]).expect("read cases"));
        let out = native::run_all(&cases);
        std::fs::write(&args[3], case::encode_outcomes(&out)).expect("write outcomes");
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("differential: test");
        return;
    }
    let seed: u64 = std::env::var("CORRAL_CPUEMU_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de);
    let per_group: usize = std::env::var("CORRAL_CPUEMU_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let mut rng = gen::Rng(seed | 1);
    let mut cases = Vec::new();
    let mut groups = Vec::new();
    for g in gen::GROUPS {
        for _ in 0..per_group {
            cases.push(gen::case(&mut rng, g));
            groups.push(*g);
        }
    }
    let dir = std::env::temp_dir().join(format!("cpuemu-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cin, cout) = (dir.join("cases"), dir.join("outcomes"));
    std::fs::write(&cin, case::encode_cases(&cases)).unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .arg("--native")
        .arg(&cin)
        .arg(&cout)
        .status()
        .expect("spawn the native runner");
    let native = std::fs::read(&cout).map(|b| case::decode_outcomes(&b));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "native runner failed: {status}");
    let native = native.expect("native outcomes");
    assert_eq!(native.len(), cases.len());

    let mut m = emulated::Machine::new();
    let mut failures = Vec::new();
    let mut per_group_fail = std::collections::BTreeMap::<&str, usize>::new();
    for (i, c) in cases.iter().enumerate() {
        let want = &native[i];
        let undefined = gen::undefined_flags(&c.code);
        let problem = match m.run(c) {
            Err(e) => Some(format!("emulator error: {e}")),
            Ok(got) => compare(want, &got, undefined, &c.code),
        };
        if let Some(p) = problem {
            *per_group_fail.entry(groups[i]).or_default() += 1;
            if failures.len() < 40 {
                failures.push(format!(
                    "case {i} [{}] {:02x?} `{}`: {p}",
                    groups[i],
                    c.code,
                    disasm(&c.code)
                ));
            }
        }
    }
    println!(
        "differential: {} cases, seed {seed:#x}, failures per group: {per_group_fail:?}",
        cases.len()
    );
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("{f}");
        }
        panic!(
            "{} groups with mismatches: {per_group_fail:?}",
            per_group_fail.len()
        );
    }
}

fn compare(
    want: &case::Outcome,
    got: &case::Outcome,
    undefined: u64,
    code: &[u8],
) -> Option<String> {
    if want.signal != got.signal {
        return Some(format!(
            "fault: native signal {} emulator signal {}",
            want.signal, got.signal
        ));
    }
    if want.data != got.data {
        let i = want
            .data
            .iter()
            .zip(&got.data)
            .position(|(a, b)| a != b)
            .unwrap();
        return Some(format!(
            "memory differs at data+{i:#x}: native {:#04x} emulator {:#04x}",
            want.data[i], got.data[i]
        ));
    }
    if want.signal != 0 {
        return None;
    }
    let mut diffs = Vec::new();
    let bsf_zero = {
        let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
        let m = d.decode().mnemonic();
        matches!(m, iced_x86::Mnemonic::Bsf | iced_x86::Mnemonic::Bsr) && want.rflags & 0x40 != 0
    };
    for r in 0..16 {
        if want.gpr[r] != got.gpr[r] && !bsf_zero {
            diffs.push(format!(
                "{} native {:#x} emulator {:#x}",
                emulated::NAMES[r],
                want.gpr[r],
                got.gpr[r]
            ));
        }
    }
    let mask = !undefined & 0xffff_ffff;
    if want.rflags & mask != got.rflags & mask {
        diffs.push(format!(
            "rflags native {:#x} emulator {:#x} (undefined {undefined:#x})",
            want.rflags, got.rflags
        ));
    }
    for x in 0..16 {
        if want.xmm[x] != got.xmm[x] {
            diffs.push(format!(
                "xmm{x} native {:#034x} emulator {:#034x}",
                want.xmm[x], got.xmm[x]
            ));
        }
    }
    if diffs.is_empty() {
        None
    } else {
        Some(diffs.join(", "))
    }
}
