//! Counting one text with cl100k's BPE within a bound on the work: overlong runs are cut
//! before tiktoken sees them, and text past a byte cap is not encoded at all.
//!
//! tiktoken splits text with a regex into pieces and merges each piece pair by pair, rescanning
//! the piece after every merge: quadratic in the length of one piece (20 KB of one letter took
//! 0.24 s, 80 KB 3.7 s). A piece is a run of whitespace, or at most one character and a run of
//! characters that are neither whitespace nor digits, followed by line breaks (digits come in
//! pieces of at most three). So no piece can be longer than two runs of those kinds, and cutting
//! every such run at [`MAX_RUN_BYTES`] bounds every piece, and so the merge work, per byte. The
//! cut also keeps fancy-regex's backtracking stack small: its `\s+(?!\S)` pushes one entry per
//! whitespace character, and a million of them fail the match (which tiktoken unwraps).

/// The longest run of whitespace, or of characters that are neither whitespace nor digits,
/// handed to tiktoken at once. A longer run is cut, preferably where a letter ends.
pub const MAX_RUN_BYTES: usize = 256;

/// What counting some text found: tokens of the text that was encoded, and what was not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tokens added whatever the text (a chat template's markers), with [`Counter::add`].
    pub fixed: i64,
    /// Tokens of the encoded text.
    pub counted: i64,
    /// Bytes of text encoded.
    pub counted_bytes: i64,
    /// Bytes of text past the cap, not encoded.
    pub uncounted_bytes: i64,
    /// Places where a run was cut (or the cap fell inside a text): each may move the count.
    pub cuts: i64,
}

impl Tally {
    /// At least the tokens of the text: every cut may cost a token, and a token takes at least
    /// one byte, so uncounted bytes are counted as a token each. For reservations.
    pub fn upper_bound(&self) -> i64 {
        self.fixed
            .saturating_add(self.counted)
            .saturating_add(self.cuts)
            .saturating_add(self.uncounted_bytes)
    }

    /// Close to the tokens of the text: uncounted bytes are taken at the rate of the counted
    /// ones (four bytes a token when nothing was counted). For billing estimates.
    pub fn estimate(&self) -> i64 {
        let counted = self.fixed.saturating_add(self.counted);
        if self.uncounted_bytes == 0 {
            return counted;
        }
        let (tokens, bytes) = if self.counted_bytes > 0 {
            (i128::from(self.counted), i128::from(self.counted_bytes))
        } else {
            (1, 4)
        };
        // Both are positive: rounds up.
        let rest = (i128::from(self.uncounted_bytes) * tokens + bytes - 1) / bytes;
        counted.saturating_add(i64::try_from(rest).unwrap_or(i64::MAX))
    }
}

/// Counts texts one after another, encoding at most `exact_bytes` bytes of them in all.
#[derive(Debug)]
pub struct Counter {
    remaining: usize,
    tally: Tally,
}

impl Counter {
    pub fn new(exact_bytes: usize) -> Self {
        Counter {
            remaining: exact_bytes,
            tally: Tally::default(),
        }
    }

    /// Adds fixed tokens (a chat template's markers).
    pub fn add(&mut self, tokens: i64) {
        self.tally.fixed = self.tally.fixed.saturating_add(tokens);
    }

    /// Counts `text`: encodes what fits under the cap, and notes the bytes past it.
    pub fn text(&mut self, text: &str) {
        let bpe = tiktoken_rs::cl100k_base_singleton();
        self.text_with(text, |segment| bpe.encode_ordinary(segment).len());
    }

    /// [`Counter::text`] with the encoder given: `encode` is handed every segment to count.
    pub(crate) fn text_with(&mut self, text: &str, mut encode: impl FnMut(&str) -> usize) {
        let mut take = self.remaining.min(text.len());
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        let (head, tail) = text.split_at(take);
        self.remaining -= take;
        let mut segments = Segments::new(head);
        for segment in segments.by_ref() {
            let tokens = i64::try_from(encode(segment)).unwrap_or(i64::MAX);
            self.tally.counted = self.tally.counted.saturating_add(tokens);
        }
        let cut_at_cap = i64::from(!head.is_empty() && !tail.is_empty());
        self.tally.cuts = self
            .tally
            .cuts
            .saturating_add(segments.cuts)
            .saturating_add(cut_at_cap);
        self.tally.counted_bytes = self.tally.counted_bytes.saturating_add(len(head));
        self.tally.uncounted_bytes = self.tally.uncounted_bytes.saturating_add(len(tail));
    }

    /// True once the cap is reached: further text is only measured.
    pub fn is_full(&self) -> bool {
        self.remaining == 0
    }

    /// Notes `bytes` of text left uncounted.
    pub fn skip(&mut self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.tally.uncounted_bytes = self.tally.uncounted_bytes.saturating_add(bytes);
    }

    pub fn tally(&self) -> Tally {
        self.tally
    }
}

fn len(text: &str) -> i64 {
    i64::try_from(text.len()).unwrap_or(i64::MAX)
}

/// What a character is to tiktoken's pre-split: runs of `Space` or of `Solid` characters may
/// form one piece; digits never form pieces longer than three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Space,
    Digit,
    Solid,
}

impl Kind {
    fn of(c: char) -> Kind {
        if c.is_whitespace() {
            Kind::Space
        } else if c.is_numeric() {
            Kind::Digit
        } else {
            Kind::Solid
        }
    }
}

/// `text` in consecutive segments, none holding a run of `Space` or `Solid` characters longer
/// than [`MAX_RUN_BYTES`]. Text without such runs is one segment, counted exactly.
pub(crate) struct Segments<'a> {
    text: &'a str,
    start: usize,
    /// Runs cut so far.
    pub cuts: i64,
}

impl<'a> Segments<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Segments {
            text,
            start: 0,
            cuts: 0,
        }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self
            .text
            .get(self.start..)
            .filter(|rest| !rest.is_empty())?;
        let mut run = (Kind::Digit, 0);
        for (at, c) in rest.char_indices() {
            let kind = Kind::of(c);
            if kind != run.0 {
                run = (kind, at);
            } else if kind != Kind::Digit && at + c.len_utf8() - run.1 > MAX_RUN_BYTES {
                let cut = cut_in(rest, run.1, at);
                self.start += cut;
                self.cuts += 1;
                return Some(&rest[..cut]);
            }
        }
        self.start = self.text.len();
        Some(rest)
    }
}

/// Where to cut the run `text[start..end]` (which `end`'s character would make too long): after
/// the last letter followed by a non-letter in the run's second half, where tiktoken splits too
/// (so the count does not change), or else at `end`.
fn cut_in(text: &str, start: usize, end: usize) -> usize {
    let half = start + (end - start) / 2;
    let mut best = end;
    let mut after_letter = false;
    for (at, c) in text[start..end].char_indices() {
        let letter = c.is_alphabetic();
        if after_letter && !letter && start + at > half {
            best = start + at;
        }
        after_letter = letter;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// tiktoken-rs 0.7's cl100k pre-split pattern: the pieces it hands to BPE.
    const CL100K_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// The longest piece BPE can be handed once runs are cut: a character before a run, the
    /// run, and a run of line breaks after it.
    const MAX_PIECE_BYTES: usize = 4 + 2 * MAX_RUN_BYTES;

    /// Inputs that were the slowest to count, each 4 MiB: one piece each (quadratic merges,
    /// hours for the letter), a whitespace run (a million spaces overflow fancy-regex's stack),
    /// and the most pieces per byte (the regex's own cost, ~1 µs a piece).
    pub(crate) fn worst_texts() -> Vec<(&'static str, String)> {
        const SIZE: usize = 4 * 1024 * 1024;
        vec![
            ("one letter", "a".repeat(SIZE)),
            ("one emoji", "😀".repeat(SIZE / 4)),
            ("one symbol", "=".repeat(SIZE)),
            ("spaces then a letter", " ".repeat(SIZE - 1) + "x"),
            ("spaced line breaks", " \n".repeat(SIZE / 2)),
            ("digits and line breaks", "1\n".repeat(SIZE / 2)),
            ("spaced digits", " 1".repeat(SIZE / 2)),
        ]
    }

    /// The pieces tiktoken's regex makes of `text`.
    fn pieces(regex: &fancy_regex::Regex, text: &str) -> Vec<usize> {
        regex
            .find_iter(text)
            .map(|piece| piece.expect("the regex matches").as_str().len())
            .collect()
    }

    #[test]
    fn the_worst_texts_are_counted_with_bounded_work() {
        let regex = fancy_regex::Regex::new(CL100K_PATTERN).expect("pattern");
        for (name, text) in worst_texts() {
            let mut counter = Counter::new(crate::tokens::RESERVATION_EXACT_BYTES);
            let (mut bytes, mut longest, mut merge_work) = (0, 0, 0);
            counter.text_with(&text, |segment| {
                bytes += segment.len();
                for piece in pieces(&regex, segment) {
                    longest = longest.max(piece);
                    // tiktoken rescans the piece after each of at most `piece - 1` merges.
                    merge_work += piece * piece;
                }
                0
            });
            assert_eq!(bytes, crate::tokens::RESERVATION_EXACT_BYTES, "{name}");
            assert!(longest <= MAX_PIECE_BYTES, "{name}: a piece of {longest} B");
            assert!(
                merge_work <= MAX_PIECE_BYTES * bytes,
                "{name}: {merge_work}"
            );
            let tally = counter.tally();
            assert_eq!(
                tally.counted_bytes + tally.uncounted_bytes,
                len(&text),
                "{name}"
            );
        }
    }

    /// The test above would see it: uncut, each run is one piece of megabytes, or fails
    /// fancy-regex (a million characters overflow its stack), which tiktoken unwraps: a panic.
    #[test]
    fn uncut_the_worst_runs_are_one_piece_or_fail_the_regex() {
        let regex = fancy_regex::Regex::new(CL100K_PATTERN).expect("pattern");
        for (name, text) in worst_texts().iter().take(5) {
            let longest = regex.find_iter(text).try_fold(0, |longest, piece| {
                piece
                    .map(|p| longest.max(p.as_str().len()))
                    .map_err(|error| error.to_string())
            });
            match longest {
                Ok(longest) => assert!(longest >= 1 << 20, "{name}: {longest}"),
                Err(error) => assert!(error.contains("stack"), "{name}: {error}"),
            }
        }
        assert!(regex
            .find_iter(&worst_texts()[0].1)
            .any(|piece| piece.is_err()));
    }

    #[test]
    fn runs_are_cut_where_a_letter_ends_when_they_can_be() {
        let text = format!("{}!{}", "a".repeat(200), "b".repeat(200));
        let segments: Vec<&str> = Segments::new(&text).collect();
        assert_eq!(segments, [&text[..200], &text[200..]]);
        let spaces = " ".repeat(3 * MAX_RUN_BYTES);
        let segments: Vec<usize> = Segments::new(&spaces).map(str::len).collect();
        assert_eq!(segments, [MAX_RUN_BYTES; 3]);
        assert_eq!(Segments::new("").count(), 0);
    }

    #[test]
    fn the_cap_leaves_bytes_to_estimate_or_bound() {
        let mut counter = Counter::new(12);
        counter.add(4);
        counter.text("hello world");
        counter.text("hello world");
        let tally = counter.tally();
        // "hello world" (2 tokens, 11 bytes), then "h" (1 token): the cap fell inside the text.
        assert_eq!(
            tally,
            Tally {
                fixed: 4,
                counted: 3,
                counted_bytes: 12,
                uncounted_bytes: 10,
                cuts: 1,
            }
        );
        assert_eq!(tally.upper_bound(), 4 + 3 + 1 + 10);
        // Fixed tokens do not change the text's rate.
        assert_eq!(
            tally.estimate(),
            4 + 3 + 3,
            "10 bytes at 3 tokens per 12, rounded up"
        );
        // The cap never splits a character.
        let mut counter = Counter::new(2);
        counter.text("中");
        assert_eq!(
            (
                counter.tally().counted_bytes,
                counter.tally().uncounted_bytes
            ),
            (0, 3)
        );
        assert_eq!(
            counter.tally().estimate(),
            1,
            "four bytes a token when none was counted"
        );
    }

    /// Texts made of long runs of the kinds that form long pieces, between ordinary words.
    fn runs() -> impl Strategy<Value = String> {
        let run = (
            prop::sample::select(vec![
                "a", "é", "中", "😀", "=", "!", " ", "\n", " \n", "ab", "1",
            ]),
            1usize..700,
        )
            .prop_map(|(unit, times)| unit.repeat(times));
        let word = prop::sample::select(vec![" the", " cat's", ",", " 42", "\t", "  "]);
        prop::collection::vec(prop_oneof![run, word.prop_map(String::from)], 1..6)
            .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Cutting runs loses at most a token per cut, so the reservation's bound never falls
        /// below the exact count (what billing relies on). The other side is what estimates
        /// rely on: a cut can cost a merge on each side of it ("\t" and 384 spaces count 4
        /// whole, 6 cut once), and a character before a cut run one more ("\t" and 286 line
        /// breaks: 11 whole, 14 cut once). Over 40,000 generated texts of these runs, the
        /// excess never passed two per cut plus one.
        #[test]
        fn cut_counts_are_within_a_token_per_cut(text in runs()) {
            let exact = i64::try_from(
                tiktoken_rs::cl100k_base_singleton().encode_ordinary(&text).len(),
            ).expect("fits");
            let mut counter = Counter::new(usize::MAX);
            counter.text(&text);
            let tally = counter.tally();
            prop_assert!(exact - tally.counted <= tally.cuts, "{tally:?} vs {exact}");
            prop_assert!(tally.counted - exact <= 2 * tally.cuts + 1, "{tally:?} vs {exact}");
            prop_assert!(tally.upper_bound() >= exact);
        }
    }
}
