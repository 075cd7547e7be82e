//! A test case (a snippet with its initial registers and data page), its outcome, and
//! their serialisation between the test and the native runner process.

/// Code page (harness + snippet), the same address natively and in the emulator.
pub const CODE: u64 = 0x1000_0000;
/// Data page the snippet's memory operands and stack point into.
pub const DATA: u64 = 0x1010_0000;
/// Harness-private page: the state block and the harness stack.
pub const HARNESS: u64 = 0x1020_0000;
/// State block: 16 GPRs, RFLAGS, then 16 XMM registers at `XMM_OFF`.
pub const STATE: u64 = HARNESS;
/// Offset of the XMM registers in the state block.
pub const XMM_OFF: u32 = 0x100;
/// Page size.
pub const PAGE: u64 = 4096;

/// One snippet with its inputs.
#[derive(Debug, Clone)]
pub struct Case {
    pub code: Vec<u8>,
    pub gpr: [u64; 16],
    pub rflags: u64,
    pub xmm: [u128; 16],
    pub data: Vec<u8>,
}

/// What running a case produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Host signal number (natively) or the equivalent of the emulator's exception; 0 = none.
    pub signal: u32,
    pub gpr: [u64; 16],
    pub rflags: u64,
    pub xmm: [u128; 16],
    pub data: Vec<u8>,
}

fn put_u64s(out: &mut Vec<u8>, v: &[u64]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

struct Reader<'a>(&'a [u8]);
impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn u128(&mut self) -> u128 {
        u128::from_le_bytes(self.take(16).try_into().unwrap())
    }
}

/// Serialises cases.
pub fn encode_cases(cases: &[Case]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cases {
        out.extend_from_slice(&(c.code.len() as u64).to_le_bytes());
        out.extend_from_slice(&c.code);
        put_u64s(&mut out, &c.gpr);
        put_u64s(&mut out, &[c.rflags]);
        for x in c.xmm {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&c.data);
    }
    out
}

/// Parses cases.
pub fn decode_cases(b: &[u8]) -> Vec<Case> {
    let mut r = Reader(b);
    let mut v = Vec::new();
    while !r.0.is_empty() {
        let n = r.u64() as usize;
        let code = r.take(n).to_vec();
        let mut gpr = [0; 16];
        gpr.iter_mut().for_each(|g| *g = r.u64());
        let rflags = r.u64();
        let mut xmm = [0; 16];
        xmm.iter_mut().for_each(|x| *x = r.u128());
        let data = r.take(PAGE as usize).to_vec();
        v.push(Case {
            code,
            gpr,
            rflags,
            xmm,
            data,
        });
    }
    v
}

/// Serialises outcomes.
pub fn encode_outcomes(os: &[Outcome]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in os {
        put_u64s(&mut out, &[o.signal as u64]);
        put_u64s(&mut out, &o.gpr);
        put_u64s(&mut out, &[o.rflags]);
        for x in o.xmm {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&o.data);
    }
    out
}

/// Parses outcomes.
pub fn decode_outcomes(b: &[u8]) -> Vec<Outcome> {
    let mut r = Reader(b);
    let mut v = Vec::new();
    while !r.0.is_empty() {
        let signal = r.u64() as u32;
        let mut gpr = [0; 16];
        gpr.iter_mut().for_each(|g| *g = r.u64());
        let rflags = r.u64();
        let mut xmm = [0; 16];
        xmm.iter_mut().for_each(|x| *x = r.u128());
        let data = r.take(PAGE as usize).to_vec();
        v.push(Outcome {
            signal,
            gpr,
            rflags,
            xmm,
            data,
        });
    }
    v
}
