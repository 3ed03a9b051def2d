//! Inputs from inputs: a small deterministic random source and byte-level mutations (flip, set,
//! insert, delete, duplicate, dictionary token, splice), stacked a few at a time.

/// xorshift64*: fast, seedable, reproducible; not for anything but choosing mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// Bytes that tend to matter to parsers: boundaries of numbers and of encodings.
const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'"', b'\\', b'\n', b',', b'=', b'.', b'-'];

/// Applies one to eight mutations to `input`, keeping it at most `max_len` bytes long.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, dictionary: &[&[u8]], other: &[u8], max_len: usize) {
    for _ in 0..1 + rng.below(8) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = if rng.chance(2) {
                    INTERESTING[rng.below(INTERESTING.len())]
                } else {
                    rng.next() as u8
                };
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16.min(len - start))).min(len);
                input.drain(start..end);
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64.min(len - start))).min(len);
                let copy = input[start..end].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, copy);
            }
            5 | 6 => {
                if let Some(token) = rng.pick(dictionary) {
                    let at = rng.below(len + 1);
                    if rng.chance(2) && at < len {
                        // Overwrite rather than insert: keeps the length, moves the structure.
                        let end = (at + token.len()).min(len);
                        input.splice(at..end, token.iter().copied());
                    } else {
                        input.splice(at..at, token.iter().copied());
                    }
                }
            }
            7 if !other.is_empty() => {
                // Splice: our head, another input's tail.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            8 if len > 0 => {
                // Repeat a byte many times: long runs find quadratic paths.
                let i = rng.below(len);
                let byte = input[i];
                let run = 1 + rng.below(256);
                input.splice(i..i, std::iter::repeat_n(byte, run));
            }
            _ => {}
        }
        input.truncate(max_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutations() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut input = b"t=1,v1=00".to_vec();
            for _ in 0..100 {
                mutate(&mut rng, &mut input, &[b"v1="], b"other", 64);
            }
            input
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn inputs_never_outgrow_the_limit() {
        let mut rng = Rng::new(1);
        let mut input = Vec::new();
        for _ in 0..10_000 {
            mutate(&mut rng, &mut input, &[b"0123456789"], b"abcdef", 100);
            assert!(input.len() <= 100);
        }
    }
}
